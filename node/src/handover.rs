//! Planned leadership hand-over: a leader told to stop (SIGTERM, a rolling upgrade) makes a
//! caught-up follower the leader before it exits, so a planned restart costs a round trip or
//! two of write unavailability instead of a failover (lease plus election timeout).
//!
//! openraft 0.9 has no leader transfer, but its rules allow one (read from its engine,
//! `handle_vote_req`): a voter refuses a candidate while the lease of the leader it follows
//! runs, yet the leader itself judges a vote request by the lease of its own vote, which started
//! when it was elected. So once it has led for longer than the lease (`election_timeout_max`),
//! it grants a higher-term vote to a candidate whose log is at least as long as its own, and
//! that vote plus the candidate's own is a majority of three. The steps:
//!
//! 1. [`SteppingDown`] is raised: the sequencer proposes no new batch (its entries get
//!    `NotLeader` and their requests retry on the next leader) and the publisher signs and
//!    commits nothing; then we wait for the writes already admitted to finish.
//! 2. The follower with the longest matched log is chosen, and we wait until it holds all of ours.
//! 3. It is asked, on its internal listener ([`CAMPAIGN_PATH`], peers only), to stand for
//!    election now; it checks that the caller is the leader it follows.
//! 4. We wait until another node leads; then the listeners drain and Raft stops as before.
//!
//! Every step has a deadline; if one fails (the leader was elected less than a lease ago, five
//! voters where the third vote is held by a lease, a slow follower) the node logs why and stops
//! anyway, and the cluster fails over as for a crash.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, HttpMessage as _, HttpRequest, HttpResponse};
use rekor_raft::network::SOURCE_NODE_HEADER;
use rekor_raft::{AuthenticatedPeer, PeerClients, Raft};
use tracing::{info, warn};

/// The internal peer route a leader calls on its chosen successor.
pub const CAMPAIGN_PATH: &str = "/internal/v1/campaign";

/// Longest the whole hand-over may take before the node stops regardless.
pub const HANDOVER_BUDGET: Duration = Duration::from_secs(3);

/// The gate every leader write to Raft (sequencer batches, checkpoint commits) passes: closed
/// while this node hands its leadership over, so the successor's log can be complete, and
/// counting the writes in flight, so the hand-over knows when the log stops growing.
#[derive(Debug, Clone, Default)]
pub struct SteppingDown(Arc<GateState>);

#[derive(Debug, Default)]
struct GateState {
    closed: AtomicBool,
    in_flight: AtomicUsize,
    idle: tokio::sync::Notify,
}

/// A write in flight; the count drops with it.
pub struct WriteInFlight(Arc<GateState>);

impl Drop for WriteInFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl SteppingDown {
    /// Admits one write, or `None` once the node is stepping down. Counted before the flag is
    /// read (and the flag raised before the count is read), so no write slips past a hand-over.
    pub fn admit(&self) -> Option<WriteInFlight> {
        self.0.in_flight.fetch_add(1, Ordering::SeqCst);
        let write = WriteInFlight(self.0.clone());
        (!self.is_raised()).then_some(write)
    }

    pub fn raise(&self) {
        self.0.closed.store(true, Ordering::SeqCst);
    }

    pub fn is_raised(&self) -> bool {
        self.0.closed.load(Ordering::SeqCst)
    }

    /// Waits until no admitted write is in flight; false if `deadline` passed first.
    async fn wait_idle(&self, deadline: Instant) -> bool {
        loop {
            let idle = self.0.idle.notified();
            if self.0.in_flight.load(Ordering::SeqCst) == 0 {
                return true;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() || tokio::time::timeout(remaining, idle).await.is_err() {
                return self.0.in_flight.load(Ordering::SeqCst) == 0;
            }
        }
    }
}

/// How a hand-over ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Handover {
    /// This node did not lead: nothing to hand over.
    NotLeader,
    /// No other voter to hand over to.
    Alone,
    /// Node `to` leads now.
    Done { to: u64, took: Duration },
    /// It did not happen in time; the cluster will fail over after the lease.
    Failed(String),
}

/// Hands this node's leadership to a caught-up follower, within [`HANDOVER_BUDGET`].
pub async fn hand_over(
    node_id: u64,
    raft: &Raft,
    peers: &PeerClients,
    stepping_down: &SteppingDown,
) -> Handover {
    let started = Instant::now();
    let deadline = started + HANDOVER_BUDGET;
    let metrics = raft.metrics().borrow().clone();
    if metrics.current_leader != Some(node_id) {
        return Handover::NotLeader;
    }
    let membership = metrics.membership_config.membership().clone();
    if !membership.voter_ids().any(|id| id != node_id) {
        return Handover::Alone;
    }
    stepping_down.raise();
    info!("stepping down: handing leadership over before stopping");
    if !stepping_down.wait_idle(deadline).await {
        return Handover::Failed("writes in flight did not finish in time".into());
    }

    let successor = match wait_for_caught_up_successor(node_id, raft, deadline).await {
        Ok(successor) => successor,
        Err(reason) => return Handover::Failed(reason),
    };
    let Some(node) = membership.get_node(&successor) else {
        return Handover::Failed(format!("node {successor} has no address"));
    };
    let request = match peers.request(
        reqwest::Method::POST,
        successor,
        &node.internal_addr,
        CAMPAIGN_PATH,
    ) {
        Ok(request) => request,
        Err(e) => return Handover::Failed(e.to_string()),
    };
    let remaining = deadline.saturating_duration_since(Instant::now());
    match request.timeout(remaining).send().await {
        Ok(response) if response.status().is_success() => {}
        Ok(response) => {
            let status = response.status();
            let body = rekor_raft::read_answer(response, 4096)
                .await
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_default();
            return Handover::Failed(format!(
                "node {successor} refused to campaign: {status} {body}"
            ));
        }
        Err(e) => return Handover::Failed(format!("asking node {successor} to campaign: {e}")),
    }
    let remaining = deadline.saturating_duration_since(Instant::now());
    let led = raft
        .wait(Some(remaining))
        .metrics(
            |m| m.current_leader.is_some_and(|leader| leader != node_id),
            "another node leads",
        )
        .await;
    match led {
        Ok(metrics) => Handover::Done {
            to: metrics.current_leader.unwrap_or(successor),
            took: started.elapsed(),
        },
        Err(e) => Handover::Failed(format!(
            "no new leader after node {successor} campaigned: {e}"
        )),
    }
}

/// The voter (other than us) whose matched log is longest, once it matches our whole log.
async fn wait_for_caught_up_successor(
    node_id: u64,
    raft: &Raft,
    deadline: Instant,
) -> Result<u64, String> {
    let mut watch = raft.metrics();
    loop {
        let candidate = {
            let metrics = watch.borrow_and_update();
            let last = metrics.last_log_index;
            let voters: Vec<u64> = metrics
                .membership_config
                .membership()
                .voter_ids()
                .filter(|&id| id != node_id)
                .collect();
            let matched = |id: &u64| {
                metrics
                    .replication
                    .as_ref()
                    .and_then(|replication| replication.get(id).cloned().flatten())
                    .map(|log_id| log_id.index)
            };
            let best = voters.iter().max_by_key(|id| matched(id)).copied();
            best.filter(|id| matched(id) >= last)
        };
        if let Some(successor) = candidate {
            return Ok(successor);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero()
            || tokio::time::timeout(remaining, watch.changed())
                .await
                .map_or(true, |changed| changed.is_err())
        {
            return Err("no follower caught up with the log in time".into());
        }
    }
}

/// `POST /internal/v1/campaign`: the leader this node follows asks it to stand for election now.
pub async fn campaign(
    state: web::Data<crate::internal::InternalState>,
    request: HttpRequest,
) -> HttpResponse {
    let raft = &state.raft;
    let authenticated = request.extensions().get::<AuthenticatedPeer>().copied();
    let caller = match authenticated {
        Some(AuthenticatedPeer(id)) => Some(id),
        None => request
            .headers()
            .get(SOURCE_NODE_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok()),
    };
    let leader = raft.metrics().borrow().current_leader;
    if caller.is_none() || caller != leader {
        warn!(
            ?caller,
            ?leader,
            "refused a campaign request from a node that is not our leader"
        );
        return HttpResponse::Conflict().json(serde_json::json!({
            "error": format!("only the leader this node follows ({leader:?}) may ask it to campaign"),
        }));
    }
    info!(?caller, "the leader hands over: standing for election");
    match raft.trigger().elect().await {
        Ok(()) => HttpResponse::Accepted().finish(),
        Err(e) => HttpResponse::ServiceUnavailable().json(serde_json::json!({
            "error": format!("raft stopped: {e}"),
        })),
    }
}
