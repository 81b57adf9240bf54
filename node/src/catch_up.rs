//! Catch-up from peers (DESIGN.md, "Snapshots and catch-up"): entry bodies pulled as entry
//! bundles from the other members' internal listeners (`GET /internal/v1/tile/entries/...`,
//! the public read path behind the cluster's authentication: under mutual TLS each pull goes
//! to the node whose certificate the membership names, see `rekor_raft::peers`).
//!
//! - [`SnapshotPeers`] is the node's [`rekor_raft::SnapshotBackfill`]: a node that installs a
//!   Raft snapshot (which carries only the small state, see `rekor_raft::snapshot`) and has
//!   applied fewer leaves than the snapshot's integrated size pulls the bodies in between through
//!   it, [`rekor_raft::BACKFILL_CHUNK`] entries (16 bundles) at a time, from the members listed
//!   in the snapshot's membership (the leader first). The state machine stages them and installs
//!   the snapshot only if they reproduce its root; otherwise it tries the next member. The staged
//!   bodies are kept as unintegrated leaves, so the integrator builds tiles from them locally.
//! - [`Peers`] is the integrator's fallback for leaves it does not hold; it checks the result
//!   against the committed root before anything is written or served.
//!
//! Nothing pulled is trusted: tiles and bundles are self-authenticating against a root.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use prometheus::{IntCounter, IntGauge, Registry};
use rekor_raft::types::Raft;
use rekor_raft::{
    BackfillError, BackfillPeer, PeerClients, PullFuture, SnapshotBackfill, SnapshotInstallReport,
};
use rekor_storage::tiles::{decode_bundle, BundleId, TILE_WIDTH};
use tracing::{debug, info};

/// Bundle requests in flight at once for one pull.
const BUNDLE_FETCH_CONCURRENCY: usize = 8;

/// Longest one bundle request may take.
const BUNDLE_FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// The most bytes of one bundle a peer may send: a full bundle of the largest entries a bundle
/// can hold (a two-byte length prefix bounds each entry to 65,535 bytes).
const MAX_BUNDLE_BYTES: usize = TILE_WIDTH as usize * (u16::MAX as usize + 2);

/// A member to pull from: its id and internal address.
type Member = (u64, String);

/// How to reach the other members.
#[derive(Clone)]
pub struct Peers {
    self_id: u64,
    raft: Raft,
    peers: Arc<PeerClients>,
}

impl Peers {
    /// Whether this node leads a cluster with other voters, which could lead instead of it.
    pub fn leads_with_others(&self) -> bool {
        let metrics = self.raft.metrics().borrow().clone();
        metrics.current_leader == Some(self.self_id)
            && metrics
                .membership_config
                .membership()
                .voter_ids()
                .any(|id| id != self.self_id)
    }

    /// Whether this node is the leader as far as it knows now (openraft's metrics). A node
    /// that lost leadership may not know yet; in a shared tile store that is harmless, since
    /// every object it could still write has the bytes any leader would write.
    pub fn leads(&self) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        metrics.current_leader == Some(self.self_id)
            && metrics.state == openraft::ServerState::Leader
    }

    pub fn new(self_id: u64, raft: Raft, peers: Arc<PeerClients>) -> Self {
        Self {
            self_id,
            raft,
            peers,
        }
    }

    /// The other members, the leader first (it is the furthest along).
    fn members(&self) -> Vec<Member> {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let mut nodes: Vec<Member> = membership
            .nodes()
            .filter(|(id, _)| **id != self.self_id)
            .map(|(id, node)| (*id, node.internal_addr.clone()))
            .collect();
        nodes.sort_by_key(|(id, _)| Some(*id) != metrics.current_leader);
        nodes
    }

    /// The entries `from..to`, read from the first peer that serves all of them.
    pub async fn pull_entries(&self, from: u64, to: u64) -> Result<Vec<Vec<u8>>> {
        let members = self.members();
        if members.is_empty() {
            bail!("no peer to pull entries {from}..{to} from");
        }
        let mut last_error = None;
        for member in members {
            match pull_from(&self.peers, &member, from, to).await {
                Ok(entries) => {
                    info!(peer = member.0, from, to, "pulled entries from a peer");
                    return Ok(entries);
                }
                Err(error) => {
                    debug!(peer = member.0, %error, "peer could not serve the entries");
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no peer answered")))
    }
}

/// The node's snapshot backfill (see the module docs). Created before Raft (the state machine
/// store needs it); [`SnapshotPeers::set_raft`] adds the leader hint once Raft runs.
pub struct SnapshotPeers {
    self_id: u64,
    peers: Arc<PeerClients>,
    raft: OnceLock<Raft>,
    entries_total: IntCounter,
    installs_total: IntCounter,
    installed_bytes: IntGauge,
}

impl SnapshotPeers {
    pub fn new(self_id: u64, peers: Arc<PeerClients>) -> Result<Arc<Self>> {
        Ok(Arc::new(Self {
            self_id,
            peers,
            raft: OnceLock::new(),
            entries_total: IntCounter::new(
                "rekor_node_snapshot_backfill_entries_total",
                "Entries pulled from peers while installing Raft snapshots",
            )?,
            installs_total: IntCounter::new(
                "rekor_node_snapshot_installs_total",
                "Raft snapshots installed by this node",
            )?,
            installed_bytes: IntGauge::new(
                "rekor_node_snapshot_installed_bytes",
                "Size of the last Raft snapshot this node installed",
            )?,
        }))
    }

    /// Order peers by who leads (the leader has integrated the furthest).
    pub fn set_raft(&self, raft: Raft) {
        // Set once at start-up; a second call has nothing to add.
        let _ = self.raft.set(raft);
    }

    /// Register the backfill metrics on the node's registry.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.entries_total.clone()))?;
        registry.register(Box::new(self.installs_total.clone()))?;
        registry.register(Box::new(self.installed_bytes.clone()))
    }
}

impl SnapshotBackfill for SnapshotPeers {
    fn order_peers(&self, members: Vec<BackfillPeer>) -> Vec<BackfillPeer> {
        let leader = self
            .raft
            .get()
            .and_then(|raft| raft.metrics().borrow().current_leader);
        let mut peers: Vec<BackfillPeer> = members
            .into_iter()
            .filter(|peer| peer.id != self.self_id)
            .collect();
        peers.sort_by_key(|peer| Some(peer.id) != leader);
        peers
    }

    fn pull<'a>(&'a self, peer: &'a BackfillPeer, from: u64, to: u64) -> PullFuture<'a> {
        Box::pin(async move {
            let member = (peer.id, peer.address.internal_addr.clone());
            pull_from(&self.peers, &member, from, to)
                .await
                .map_err(|error| BackfillError(format!("node {}: {error:#}", peer.id)))
        })
    }

    fn pulled(&self, entries: u64) {
        self.entries_total.inc_by(entries);
    }

    fn installed(&self, report: &SnapshotInstallReport) {
        self.installs_total.inc();
        self.installed_bytes
            .set(i64::try_from(report.bytes).unwrap_or(i64::MAX));
    }
}

/// The entries `from..to` as `member` serves them in its entry bundles.
async fn pull_from(
    peers: &PeerClients,
    member: &Member,
    from: u64,
    to: u64,
) -> Result<Vec<Vec<u8>>> {
    if to <= from {
        return Ok(Vec::new());
    }
    let width = u64::from(TILE_WIDTH);
    let bundles = (from / width..to.div_ceil(width)).map(|bundle_index| async move {
        let start = bundle_index * width;
        let needed_end = to.min(start + width);
        let bundle = fetch_bundle(peers, member, bundle_index, needed_end - start).await?;
        let records = decode_bundle(&bundle).context("decoding a pulled bundle")?;
        let skip = from.saturating_sub(start) as usize;
        let take = (needed_end - start) as usize;
        let Some(wanted) = records.get(skip..take) else {
            bail!(
                "bundle {bundle_index} has {} entries, need {take}",
                records.len()
            );
        };
        Ok(wanted
            .iter()
            .map(|record| record.to_vec())
            .collect::<Vec<_>>())
    });
    let chunks: Vec<Vec<Vec<u8>>> = futures::stream::iter(bundles)
        .buffered(BUNDLE_FETCH_CONCURRENCY)
        .try_collect()
        .await?;
    Ok(chunks.into_iter().flatten().collect())
}

/// The full bundle if the peer has it, else the partial one of `width` entries.
async fn fetch_bundle(
    peers: &PeerClients,
    (id, address): &Member,
    index: u64,
    width: u64,
) -> Result<bytes::Bytes> {
    let full = BundleId::new(index, TILE_WIDTH)?;
    let mut candidates = vec![full];
    if width < u64::from(TILE_WIDTH) {
        candidates.push(BundleId::new(index, u16::try_from(width)?)?);
    }
    for bundle in candidates {
        let path = format!("{}/{}", crate::internal::paths::PREFIX, bundle.path());
        let response = peers
            .request(reqwest::Method::GET, *id, address, &path)?
            .timeout(BUNDLE_FETCH_TIMEOUT)
            .send()
            .await?;
        if response.status().is_success() {
            let body = rekor_raft::read_answer(response, MAX_BUNDLE_BYTES).await?;
            return Ok(bytes::Bytes::from(body));
        }
    }
    bail!("node {id} serves no bundle {index} with {width} entries")
}
