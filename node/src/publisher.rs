//! The publisher actor (leader only): as soon as the tree grew (or the republish interval
//! passed), sign a checkpoint and commit it through Raft as `Publish`. Without witnesses it signs
//! the state machine's newest applied `(size, root)`, in parallel with this node's integration of
//! those entries: every node serves a checkpoint only once its own tiles hold it, so committing
//! one early shows nothing unreadable, and a remote signer's round trip overlaps the tile writes
//! instead of following them. With witnesses it signs the integrated size, since the consistency
//! proofs it sends them are built from the tiles; with a shared tile store too, since followers
//! serve a committed checkpoint from the objects the leader wrote there (`crate::integrator`).
//!
//! Latency: a POST is answered only once a committed checkpoint covers its entry, so the
//! publisher does not wait for a clock tick. It wakes on every apply (or, with witnesses, every
//! change of what the integrator serves), signs one checkpoint at a time while at most two
//! commits are in flight (changes that arrive meanwhile coalesce into the next one) and leaves
//! at least the checkpoint interval between two publications, which bounds the
//! checkpoints per second under load.
//!
//! Before it signs, the publisher checks what it signs against the committed order as this
//! node's state machine knows it, and that its key is the log's recorded key
//! ([`crate::sign_check`]): a root it cannot confirm is never signed, so never reaches a witness
//! or the Raft log. Safety does not rest on this check alone: every state machine accepts a `Publish` only if its size is
//! at least the last published size and its root is the root the committed order implies at that
//! size (DESIGN.md invariant 2). What this actor adds is liveness and not wasting Raft entries:
//! the first time it signs in a term it confirms leadership with `ensure_linearizable`, which also
//! waits until this node has applied everything committed before, so a new leader does not sign
//! from a stale view.
//!
//! With a witness policy, the signed checkpoint goes to the witnesses between signing and the
//! Raft commit ([`crate::witness`]); their verified cosignature lines are committed with it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use rekor_raft::types::{Command, CommandResponse, Raft};
use rekor_raft::StateReader;
use rekor_signer::LogSigner;
use rekor_storage::checkpoint::Checkpoint;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::metrics::NodeMetrics;
use crate::served::Served;
use crate::sign_check::{self, Refusal};
use crate::witness::Witnessing;

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

pub struct Publisher {
    node_id: u64,
    raft: Raft,
    /// The committed order and the log's key, checked before signing.
    state: StateReader,
    origin: String,
    signer: Arc<LogSigner>,
    served: watch::Receiver<Served>,
    /// Least time between the starts of two publications.
    interval: Duration,
    republish_interval: Duration,
    last_published: Option<(u64, Instant)>,
    /// When the last publication started.
    last_attempt: Option<Instant>,
    /// A `Tick` is already scheduled for when the interval has passed.
    tick_scheduled: bool,
    /// The term in which leadership was last confirmed with `ensure_linearizable`.
    confirmed_term: Option<u64>,
    /// The largest size signed for a commit that has not failed: what is due is measured from
    /// here, so a checkpoint whose commit is in flight is not signed twice.
    signed_size: Option<u64>,
    /// Signed checkpoints whose Raft commit has not finished (at most
    /// [`MAX_COMMITS_IN_FLIGHT`]).
    commits_in_flight: usize,
    metrics: NodeMetrics,
    witnessing: Option<Arc<Witnessing>>,
    /// Raised while this node hands its leadership over ([`crate::handover`]).
    stepping_down: crate::handover::SteppingDown,
    /// Sign the integrated size even without witnesses: the nodes share one tile store, and a
    /// committed checkpoint must name only objects the leader made durable there.
    shared_tile_store: bool,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Tick;

/// Signed checkpoints that may be committing at once. Signing the next checkpoint while the
/// previous one commits hides the signer's round trip (tens of milliseconds for a KMS or HSM)
/// behind Raft's; Raft appends the commits in the order they were issued.
const MAX_COMMITS_IN_FLIGHT: usize = 2;

/// Sign and commit a checkpoint now, with the given extension lines (used by `freeze`).
#[derive(Message)]
#[rtype(result = "Result<u64, String>")]
pub struct PublishNow {
    pub extensions: Vec<String>,
}

impl Publisher {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node_id: u64,
        raft: Raft,
        state: StateReader,
        origin: String,
        signer: Arc<LogSigner>,
        served: watch::Receiver<Served>,
        interval: Duration,
        republish_interval: Duration,
        metrics: NodeMetrics,
    ) -> Self {
        Self {
            node_id,
            raft,
            state,
            origin,
            signer,
            served,
            interval,
            republish_interval,
            last_published: None,
            last_attempt: None,
            tick_scheduled: false,
            confirmed_term: None,
            signed_size: None,
            commits_in_flight: 0,
            metrics,
            witnessing: None,
            stepping_down: Default::default(),
            shared_tile_store: false,
        }
    }

    /// The nodes share one tile store ([`crate::integrator::StoreMode::Shared`]): sign only the
    /// integrated size, whose tiles, bundles and partial objects this leader has made durable
    /// in it, since followers serve a committed checkpoint from what the store holds.
    pub fn with_shared_tile_store(mut self, shared: bool) -> Self {
        self.shared_tile_store = shared;
        self
    }

    /// Whether to sign the integrated size rather than the applied one: with witnesses (their
    /// consistency proofs are built from the tiles) or a shared tile store.
    fn signs_integrated(&self) -> bool {
        self.witnessing.is_some() || self.shared_tile_store
    }

    /// Share the node's hand-over flag: a leader handing over signs nothing more.
    pub fn with_stepping_down(mut self, stepping_down: crate::handover::SteppingDown) -> Self {
        self.stepping_down = stepping_down;
        self
    }

    /// Have each checkpoint cosigned by the policy's witnesses before it is committed.
    pub fn with_witnessing(mut self, witnessing: Option<Arc<Witnessing>>) -> Self {
        self.witnessing = witnessing;
        self
    }

    /// The current term, if this node leads in it.
    fn leader_term(&self) -> Option<u64> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        (metrics.current_leader == Some(self.node_id)
            && metrics.state == openraft::ServerState::Leader
            && !self.stepping_down.is_raised())
        .then_some(metrics.current_term)
    }

    /// What to sign now, if anything, when it is news: without witnesses the newest applied
    /// `(size, root)` of the committed order, so that signing overlaps this node's integration
    /// of the same entries (every node serves a checkpoint only once its own tiles hold it, and
    /// a request is answered only then); with witnesses the integrated size, whose tiles the
    /// consistency proofs for the witnesses are built from, and with a shared tile store the
    /// integrated size, whose objects the followers read from the store.
    fn due(&self) -> Option<(u64, [u8; 32])> {
        let (size, root) = if !self.signs_integrated() {
            let applied = self.state.applied();
            (applied.size, applied.root)
        } else {
            let served = self.served.borrow();
            (served.integrated_size, served.integrated_root)
        };
        let published = self
            .served
            .borrow()
            .checkpoint
            .as_ref()
            .map(|cp| cp.size)
            .max(self.signed_size);
        let grew = published.is_none_or(|published| size > published);
        let stale = self
            .last_published
            .is_none_or(|(_, at)| at.elapsed() >= self.republish_interval);
        (grew || stale).then_some((size, root))
    }
}

/// Signs `checkpoint` after [`sign_check::sign_checked`]'s checks. With no key recorded yet (a
/// new log, or one from before keys were recorded) it first records this node's key; the state
/// machines accept it only if it verifies the log's latest checkpoint, if any.
async fn sign_after_checks(
    raft: &Raft,
    state: &StateReader,
    signer: &LogSigner,
    checkpoint: &Checkpoint,
) -> Result<String, Refusal> {
    let own = sign_check::own_key(signer, &checkpoint.origin);
    if !sign_check::key_status(state, &own)? {
        info!(log_key = %own, "no log key recorded yet: recording this node's");
        let response = raft
            .client_write(Command::SetLogKey(own.clone()))
            .await
            .map_err(|error| Refusal::State(format!("recording the log key: {error}")))?;
        if response.data != (CommandResponse::LogKeySet { accepted: true }) {
            return Err(Refusal::ForeignKey {
                recorded: "none, and this key does not verify the log's latest checkpoint".into(),
                ours: own.to_string(),
            });
        }
    }
    sign_check::sign_checked(state, signer, checkpoint).await
}

/// The signing half of a publication: leadership confirmed (when asked), the checks of
/// [`sign_after_checks`], the signature, and the witnesses' cosignatures.
#[allow(clippy::too_many_arguments)]
async fn sign_witnessed(
    raft: Raft,
    state: StateReader,
    metrics: NodeMetrics,
    origin: String,
    signer: Arc<LogSigner>,
    witnessing: Option<Arc<Witnessing>>,
    size: u64,
    root: [u8; 32],
    extensions: Vec<String>,
    confirm_leadership: bool,
) -> Result<String, String> {
    if confirm_leadership {
        // A quorum heartbeat, and everything committed before is applied here.
        raft.ensure_linearizable()
            .await
            .map_err(|error| format!("not a confirmed leader: {error}"))?;
    }
    let mut checkpoint = Checkpoint::new(&origin, size, root);
    checkpoint.extensions = extensions;
    let text = match sign_after_checks(&raft, &state, signer.as_ref(), &checkpoint).await {
        Ok(text) => text,
        Err(refusal) => {
            error!(size, reason = refusal.reason(), %refusal, "checkpoint not signed");
            metrics
                .checkpoint_sign_refused_total
                .with_label_values(&[refusal.reason()])
                .inc();
            return Err(refusal.to_string());
        }
    };
    // Cosignature lines do not change size or root, which is all the state machine compares.
    match witnessing {
        Some(witnessing) => witnessing
            .witness(&text)
            .await
            .map_err(|error| format!("witnessing: {error}")),
        None => Ok(text),
    }
}

/// The committing half: the signed checkpoint through Raft; whether the state machines
/// accepted it.
async fn commit(
    raft: Raft,
    gate: crate::handover::SteppingDown,
    size: u64,
    root: [u8; 32],
    text: String,
) -> Result<bool, String> {
    let Some(_write) = gate.admit() else {
        return Err("stepping down: leadership is being handed over".into());
    };
    let response = raft
        .client_write(Command::Publish {
            size,
            root,
            checkpoint: text,
        })
        .await
        .map_err(|error| format!("committing checkpoint: {error}"))?;
    Ok(matches!(
        response.data,
        CommandResponse::Published { accepted: true }
    ))
}

impl Actor for Publisher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // The republish clock, and a fallback should a wake-up be missed.
        ctx.run_interval(
            self.republish_interval.min(Duration::from_secs(1)),
            |_, ctx| ctx.notify(Tick),
        );
        // Wake on what the integrator serves. `send` waits for the handler to finish, so at most
        // one publication is in flight and changes made meanwhile coalesce into the next one.
        let mut served = self.served.clone();
        let me = ctx.address();
        tokio::spawn(async move {
            while served.changed().await.is_ok() {
                if me.send(Tick).await.is_err() {
                    break;
                }
            }
        });
        // Wake when this node becomes leader, too. After a failover the entries the old leader
        // committed but never covered with a checkpoint are integrated here already, so what
        // is served does not change again; their clients wait for that checkpoint and send
        // nothing new meanwhile. Without this wake-up the first checkpoint of the term waited
        // for the fallback tick above (up to a second, measured in the leader-kill scenario).
        if !self.signs_integrated() {
            // What is due follows the state machine's applied state: wake on each apply.
            let mut applied = self.state.subscribe();
            let me = ctx.address();
            tokio::spawn(async move {
                while applied.changed().await.is_ok() {
                    if me.send(Tick).await.is_err() {
                        break;
                    }
                }
            });
        }
        let mut raft_metrics = self.raft.metrics();
        let node_id = self.node_id;
        let me = ctx.address();
        tokio::spawn(async move {
            let mut leading_term = None;
            while raft_metrics.changed().await.is_ok() {
                let term = {
                    let metrics = raft_metrics.borrow_and_update();
                    (metrics.state == openraft::ServerState::Leader
                        && metrics.current_leader == Some(node_id))
                    .then_some(metrics.current_term)
                };
                if term.is_some() && term != leading_term {
                    debug!(?term, "leading a new term: publishing");
                    if me.send(Tick).await.is_err() {
                        break;
                    }
                }
                leading_term = term;
            }
        });
    }
}

impl Handler<Tick> for Publisher {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: Tick, ctx: &mut Self::Context) -> Self::Result {
        let idle = || AtomicResponse::new(Box::pin(actix::fut::ready(())));
        let Some(term) = self.leader_term() else {
            return idle();
        };
        let Some((size, root)) = self.due() else {
            return idle();
        };
        if let Some(wait) = self
            .last_attempt
            .and_then(|at| self.interval.checked_sub(at.elapsed()))
        {
            if !self.tick_scheduled {
                self.tick_scheduled = true;
                ctx.run_later(wait, |act, ctx| {
                    act.tick_scheduled = false;
                    ctx.notify(Tick);
                });
            }
            return idle();
        }
        if self.commits_in_flight >= MAX_COMMITS_IN_FLIGHT {
            // A finishing commit sends the next Tick.
            return idle();
        }
        self.last_attempt = Some(Instant::now());
        let confirm = self.confirmed_term != Some(term);
        let sign = sign_witnessed(
            self.raft.clone(),
            self.state.clone(),
            self.metrics.clone(),
            self.origin.clone(),
            self.signer.clone(),
            self.witnessing.clone(),
            size,
            root,
            Vec::new(),
            confirm,
        );
        // Only the signing half holds the actor: the commit runs beside it, so the next
        // checkpoint can be signed while this one commits.
        AtomicResponse::new(Box::pin(sign.into_actor(self).map(
            move |result, act, ctx| match result {
                Ok(text) => {
                    act.confirmed_term = Some(term);
                    act.signed_size = Some(size);
                    act.commits_in_flight += 1;
                    let commit = commit(
                        act.raft.clone(),
                        act.stepping_down.clone(),
                        size,
                        root,
                        text,
                    );
                    ctx.spawn(commit.into_actor(act).map(move |result, act, ctx| {
                        act.commits_in_flight -= 1;
                        act.committed(size, result);
                        ctx.notify(Tick);
                    }));
                }
                Err(error) => {
                    act.confirmed_term = None;
                    debug!(size, %error, "checkpoint not published");
                }
            },
        )))
    }
}

impl Publisher {
    /// Books the outcome of the commit of a signed checkpoint of `size`.
    fn committed(&mut self, size: u64, result: Result<bool, String>) {
        match result {
            Ok(true) => {
                debug!(size, "checkpoint committed");
                self.metrics.checkpoints_published.inc();
                self.last_published = Some((size, Instant::now()));
                return;
            }
            Ok(false) => warn!(size, "checkpoint rejected by the state machine"),
            Err(error) => {
                self.confirmed_term = None;
                debug!(size, %error, "checkpoint not published");
            }
        }
        // Sign that size again (or what has grown since) at the next chance.
        self.signed_size = None;
    }
}

impl Handler<PublishNow> for Publisher {
    type Result = AtomicResponse<Self, Result<u64, String>>;

    fn handle(&mut self, msg: PublishNow, _ctx: &mut Self::Context) -> Self::Result {
        let (size, root) = {
            let served = self.served.borrow();
            (served.integrated_size, served.integrated_root)
        };
        let raft = self.raft.clone();
        let sign = sign_witnessed(
            raft.clone(),
            self.state.clone(),
            self.metrics.clone(),
            self.origin.clone(),
            self.signer.clone(),
            self.witnessing.clone(),
            size,
            root,
            msg.extensions,
            true,
        );
        let gate = self.stepping_down.clone();
        let publish = async move { commit(raft, gate, size, root, sign.await?).await };
        AtomicResponse::new(Box::pin(publish.into_actor(self).map(
            move |result, act, _| match result {
                Ok(true) => {
                    info!(size, "checkpoint published on request");
                    act.last_published = Some((size, Instant::now()));
                    Ok(size)
                }
                Ok(false) => Err("the state machine rejected the checkpoint".into()),
                Err(error) => Err(error),
            },
        )))
    }
}
