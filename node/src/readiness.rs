//! The node's readiness checks behind `/healthz` (`rekor_api::health`): whether it is part of an
//! initialised cluster that hears from a quorum, and whether its tile store answers.
//!
//! - **quorum**: a leader needs a quorum acknowledgement (`millis_since_quorum_ack`) younger
//!   than `stale_after`; a follower needs an AppendEntries accepted from its leader within
//!   `stale_after` ([`rekor_raft::LeaderContact`]). `stale_after` is two election timeouts: by
//!   then a healthy cluster has elected and heard from a new leader.
//! - **tile_store**: a read of the checkpoint object (not cached: it changes) within
//!   [`STORE_PROBE_TIMEOUT`]. The probe runs at most once per [`STORE_PROBE_INTERVAL`] whatever
//!   the request rate, since `/healthz` is unauthenticated: the rest get the cached verdict.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rekor_api::{Readiness, ReadinessCheck};
use rekor_raft::{LeaderContact, Raft};
use rekor_storage::tile_store::TileStore;

/// Longest wait for the tile store to answer the probe.
pub const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Shortest time between two store probes.
pub const STORE_PROBE_INTERVAL: Duration = Duration::from_secs(1);

const QUORUM: &str = "quorum";
const TILE_STORE: &str = "tile_store";

pub struct ReadinessProbe {
    node_id: u64,
    raft: Raft,
    leader_contact: LeaderContact,
    store: Arc<TileStore>,
    stale_after: Duration,
    /// The last store probe: when it finished and its verdict. Held across a probe, so
    /// concurrent callers wait for one probe instead of starting their own.
    last_store_probe: tokio::sync::Mutex<Option<(Instant, ReadinessCheck)>>,
}

impl ReadinessProbe {
    pub fn new(
        node_id: u64,
        raft: Raft,
        leader_contact: LeaderContact,
        store: Arc<TileStore>,
        election_timeout_max: Duration,
    ) -> Self {
        ReadinessProbe {
            node_id,
            raft,
            leader_contact,
            store,
            stale_after: election_timeout_max * 2,
            last_store_probe: tokio::sync::Mutex::new(None),
        }
    }

    pub async fn check(&self) -> Readiness {
        let quorum = self.quorum();
        let store = self.tile_store().await;
        Readiness {
            checks: vec![quorum, store],
        }
    }

    fn quorum(&self) -> ReadinessCheck {
        let metrics = self.raft.metrics().borrow().clone();
        if let Err(fatal) = &metrics.running_state {
            return ReadinessCheck::failed(QUORUM, format!("raft stopped: {fatal}"));
        }
        if metrics
            .membership_config
            .membership()
            .voter_ids()
            .next()
            .is_none()
        {
            return ReadinessCheck::failed(QUORUM, "not initialised: no cluster membership yet");
        }
        let stale_after = self.stale_after.as_millis() as u64;
        match metrics.current_leader {
            None => ReadinessCheck::failed(QUORUM, "no leader known"),
            Some(leader) if leader == self.node_id => match metrics.millis_since_quorum_ack {
                Some(ms) if ms <= stale_after => ReadinessCheck::passed(
                    QUORUM,
                    format!("leader; quorum acknowledged {ms} ms ago"),
                ),
                Some(ms) => ReadinessCheck::failed(
                    QUORUM,
                    format!("leader without a quorum acknowledgement for {ms} ms"),
                ),
                None => ReadinessCheck::failed(QUORUM, "leader not yet acknowledged by a quorum"),
            },
            Some(leader) => match self.leader_contact.since_last() {
                Some(since) if since <= self.stale_after => ReadinessCheck::passed(
                    QUORUM,
                    format!(
                        "follower of node {leader}; heard {} ms ago",
                        since.as_millis()
                    ),
                ),
                Some(since) => ReadinessCheck::failed(
                    QUORUM,
                    format!(
                        "follower of node {leader}; nothing heard for {} ms",
                        since.as_millis()
                    ),
                ),
                None => ReadinessCheck::failed(
                    QUORUM,
                    format!("follower of node {leader}; nothing heard since start"),
                ),
            },
        }
    }

    async fn tile_store(&self) -> ReadinessCheck {
        let mut last = self.last_store_probe.lock().await;
        if let Some((at, verdict)) = last.as_ref() {
            if at.elapsed() < STORE_PROBE_INTERVAL {
                return verdict.clone();
            }
        }
        let started = Instant::now();
        let verdict =
            match tokio::time::timeout(STORE_PROBE_TIMEOUT, self.store.get_checkpoint()).await {
                Ok(Ok(_)) => ReadinessCheck::passed(
                    TILE_STORE,
                    format!("answered in {} ms", started.elapsed().as_millis()),
                ),
                Ok(Err(e)) => ReadinessCheck::failed(TILE_STORE, format!("read failed: {e}")),
                Err(_) => ReadinessCheck::failed(
                    TILE_STORE,
                    format!("no answer within {} ms", STORE_PROBE_TIMEOUT.as_millis()),
                ),
            };
        if !verdict.ok {
            tracing::warn!(detail = %verdict.detail, "tile store readiness probe failed");
        }
        *last = Some((Instant::now(), verdict.clone()));
        verdict
    }
}
