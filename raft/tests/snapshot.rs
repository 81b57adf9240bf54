//! Small snapshots and their install with backfill from peers (DESIGN.md, "Snapshots and
//! catch-up", "Dedup"), with a fake backfill that serves bodies from memory.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::storage::RaftStateMachine;
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftSnapshotBuilder, Snapshot,
};
use rekor_raft::snapshot::SNAPSHOT_FORMAT;
use rekor_raft::{
    open_stores, AppendOutcome, BackfillError, BackfillPeer, Command, CommandResponse,
    EngineConfig, NodeAddress, PullFuture, SequencedEntry, SledEngine, SnapshotBackfill,
    SnapshotInstallReport, StateMachineStore, TypeConfig, BACKFILL_CHUNK,
};
use rekor_storage::merkle::{leaf_hash, CompactRange};

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 0), index)
}

fn body(i: u64) -> Vec<u8> {
    format!("entry number {i}").into_bytes()
}

fn append(index: u64, bodies: impl IntoIterator<Item = Vec<u8>>) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(Command::Append {
            entries: bodies.into_iter().map(SequencedEntry::new).collect(),
        }),
    }
}

fn membership_entry(index: u64) -> Entry<TypeConfig> {
    let nodes: BTreeMap<u64, NodeAddress> = (1..=3)
        .map(|id| {
            (
                id,
                NodeAddress {
                    internal_addr: format!("127.0.0.1:{}", 9000 + id),
                    public_addr: format!("127.0.0.1:{}", 8000 + id),
                },
            )
        })
        .collect();
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Membership(Membership::new(
            vec![BTreeSet::from([1u64, 2, 3])],
            nodes,
        )),
    }
}

struct Node {
    _dir: tempfile::TempDir,
    sm: StateMachineStore,
}

fn open_in(
    dir: &std::path::Path,
    backfill: Option<Arc<dyn SnapshotBackfill>>,
) -> StateMachineStore {
    let engine = SledEngine::open(&EngineConfig::new(dir.join("raft"))).unwrap();
    let (_log, sm) = open_stores(&engine, dir).unwrap();
    match backfill {
        Some(backfill) => sm.with_backfill(backfill),
        None => sm,
    }
}

fn node(backfill: Option<Arc<dyn SnapshotBackfill>>) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let sm = open_in(dir.path(), backfill);
    Node { _dir: dir, sm }
}

/// The log every test replicates: a membership entry, then `size` entries in batches of 100.
/// Returns the Raft entries (log index 1 = membership).
fn raft_log(size: u64) -> Vec<Entry<TypeConfig>> {
    let mut entries = vec![membership_entry(1)];
    let mut next = 0;
    let mut index = 2;
    while next < size {
        let end = size.min(next + 100);
        entries.push(append(index, (next..end).map(body)));
        next = end;
        index += 1;
    }
    entries
}

/// A leader that applied `size` entries and integrated all but the last `unintegrated`.
async fn leader_with(size: u64, unintegrated: u64) -> (Node, Snapshot<TypeConfig>) {
    let mut leader = node(None);
    leader.sm.apply(raft_log(size)).await.unwrap();
    leader
        .sm
        .reader()
        .mark_integrated(size - unintegrated)
        .await
        .unwrap();
    let snapshot = leader
        .sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    (leader, snapshot)
}

fn copy(snapshot: &Snapshot<TypeConfig>) -> Box<std::io::Cursor<Vec<u8>>> {
    Box::new(std::io::Cursor::new(snapshot.snapshot.get_ref().clone()))
}

/// How a fake peer answers.
#[derive(Clone)]
enum Behaviour {
    Honest,
    /// Serves a different body at this index.
    Tampers(u64),
    /// Serves entry 0's body again at this index.
    Repeats(u64),
    /// Never answers chunks that start at or after this index.
    HangsFrom(u64),
}

/// In-memory peers serving the bodies `0..size` of [`raft_log`], in the given order.
struct FakeBackfill {
    peers: Vec<(u64, Behaviour)>,
    pulls: Mutex<Vec<(u64, u64, u64)>>,
    reports: Mutex<Vec<SnapshotInstallReport>>,
    members_seen: Mutex<Vec<u64>>,
}

impl FakeBackfill {
    fn new(peers: &[(u64, Behaviour)]) -> Arc<Self> {
        Arc::new(Self {
            peers: peers.to_vec(),
            pulls: Mutex::new(Vec::new()),
            reports: Mutex::new(Vec::new()),
            members_seen: Mutex::new(Vec::new()),
        })
    }
}

impl SnapshotBackfill for FakeBackfill {
    fn order_peers(&self, members: Vec<BackfillPeer>) -> Vec<BackfillPeer> {
        *self.members_seen.lock().unwrap() = members.iter().map(|m| m.id).collect();
        self.peers
            .iter()
            .filter_map(|(id, _)| members.iter().find(|m| m.id == *id).cloned())
            .collect()
    }

    fn pull<'a>(&'a self, peer: &'a BackfillPeer, from: u64, to: u64) -> PullFuture<'a> {
        Box::pin(async move {
            assert!(to - from <= BACKFILL_CHUNK, "pulls are bounded chunks");
            self.pulls.lock().unwrap().push((peer.id, from, to));
            let behaviour = self
                .peers
                .iter()
                .find(|(id, _)| *id == peer.id)
                .map(|(_, b)| b.clone())
                .ok_or_else(|| BackfillError("unknown peer".into()))?;
            if let Behaviour::HangsFrom(index) = behaviour {
                if from >= index {
                    std::future::pending::<()>().await;
                }
            }
            Ok((from..to)
                .map(|i| match behaviour {
                    Behaviour::Tampers(bad) if bad == i => b"forged".to_vec(),
                    Behaviour::Repeats(bad) if bad == i => body(0),
                    _ => body(i),
                })
                .collect())
        })
    }

    fn installed(&self, report: &SnapshotInstallReport) {
        self.reports.lock().unwrap().push(report.clone());
    }
}

#[tokio::test]
async fn snapshot_is_small_whatever_the_log_size() {
    let (_a, small) = leader_with(1_000, 5).await;
    let (_b, large) = leader_with(20_000, 5).await;
    let (small, large) = (small.snapshot.get_ref(), large.snapshot.get_ref());
    assert_eq!(small[0], SNAPSHOT_FORMAT);
    // 20,000 entries: an identity index alone would be 800 KB. The difference between the two
    // is the recent-roots table (40 bytes per batch boundary) and the compact range.
    assert!(large.len() < 10_000, "{} bytes", large.len());
    assert!(
        large.len() - small.len() <= (200 - 10) * 40 + 64 * 32 + 64,
        "{} vs {} bytes",
        large.len(),
        small.len()
    );
}

#[tokio::test]
async fn wiped_node_pulls_the_bodies_in_chunks_and_reaches_the_root() {
    let size = 2 * BACKFILL_CHUNK + 500;
    let (mut leader, snapshot) = leader_with(size, 7).await;
    let fake = FakeBackfill::new(&[(2, Behaviour::Honest)]);
    let mut wiped = node(Some(fake.clone()));
    wiped
        .sm
        .install_snapshot(&snapshot.meta, copy(&snapshot))
        .await
        .unwrap();

    let (a, b) = (leader.sm.reader(), wiped.sm.reader());
    assert_eq!(b.applied(), a.applied());
    assert_eq!(*fake.members_seen.lock().unwrap(), vec![1, 2, 3]);
    let pulls = fake.pulls.lock().unwrap().clone();
    assert_eq!(
        pulls,
        vec![
            (2, 0, BACKFILL_CHUNK),
            (2, BACKFILL_CHUNK, 2 * BACKFILL_CHUNK),
            (2, 2 * BACKFILL_CHUNK, size - 7)
        ]
    );
    let reports = fake.reports.lock().unwrap().clone();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].pulled, size - 7);
    assert_eq!(reports[0].pulled_from, Some(2));
    assert_eq!(reports[0].carried_leaves, 7);
    assert!(reports[0].state_bytes() < 4096, "{:?}", reports[0]);
    // The identity index is complete: every entry, pulled or carried.
    for i in [0, 1, BACKFILL_CHUNK, size - 8, size - 7, size - 1] {
        let identity = SequencedEntry::new(body(i)).identity;
        assert_eq!(b.lookup_identity(&identity).unwrap(), Some(i), "entry {i}");
    }
    // Every body is held locally for the integrator.
    let leaves = b.leaves(0..size).await.unwrap();
    assert_eq!(leaves[0], body(0));
    assert_eq!(leaves[(size - 1) as usize], body(size - 1));
    assert_eq!(b.root_at(size).unwrap(), a.root_at(size).unwrap());
    assert_eq!(
        b.latest_checkpoint().unwrap(),
        a.latest_checkpoint().unwrap()
    );

    // Both continue identically, dedup included.
    let next_log = snapshot.meta.last_log_id.unwrap().index + 1;
    let more = || append(next_log, [body(3), body(size)]);
    let from_leader = leader.sm.apply([more()]).await.unwrap();
    let from_wiped = wiped.sm.apply([more()]).await.unwrap();
    assert_eq!(from_leader, from_wiped);
    assert_eq!(
        from_wiped,
        vec![CommandResponse::Appended(vec![
            AppendOutcome::Duplicate { index: 3 },
            AppendOutcome::Logged { index: size },
        ])]
    );
    assert_eq!(a.applied(), b.applied());
}

#[tokio::test]
async fn a_lying_peer_is_skipped_and_leaves_no_trace() {
    let size = BACKFILL_CHUNK + 300;
    let (leader, snapshot) = leader_with(size, 3).await;
    let fake = FakeBackfill::new(&[(1, Behaviour::Tampers(100)), (3, Behaviour::Honest)]);
    let mut wiped = node(Some(fake.clone()));
    wiped
        .sm
        .install_snapshot(&snapshot.meta, copy(&snapshot))
        .await
        .unwrap();
    let b = wiped.sm.reader();
    assert_eq!(b.applied(), leader.sm.reader().applied());
    assert_eq!(fake.reports.lock().unwrap()[0].pulled_from, Some(3));
    let forged = SequencedEntry::new(b"forged".to_vec()).identity;
    assert_eq!(b.lookup_identity(&forged).unwrap(), None);
    assert_eq!(b.leaves(100..101).await.unwrap(), vec![body(100)]);
}

#[tokio::test]
async fn when_every_peer_lies_nothing_is_installed() {
    let size = BACKFILL_CHUNK + 300;
    let (_leader, snapshot) = leader_with(size, 3).await;
    let fake = FakeBackfill::new(&[
        (1, Behaviour::Tampers(size - 4)),
        (2, Behaviour::Repeats(BACKFILL_CHUNK + 1)),
    ]);
    let mut wiped = node(Some(fake.clone()));
    // Some state of its own first: it must survive the failed install unchanged.
    wiped.sm.apply(raft_log(50)).await.unwrap();
    let before = wiped.sm.reader().applied();
    let error = wiped
        .sm
        .install_snapshot(&snapshot.meta, copy(&snapshot))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("no peer served entries"),
        "{error}"
    );
    let b = wiped.sm.reader();
    assert_eq!(b.applied(), before);
    assert_eq!(wiped.sm.applied_state().await.unwrap().0, Some(log_id(2)));
    assert!(fake.reports.lock().unwrap().is_empty());
    // Nothing staged survives: neither the bodies nor the (honest or forged) identities.
    assert!(b.leaves(50..51).await.is_err());
    for staged in [body(60), body(size - 5), b"forged".to_vec()] {
        let identity = SequencedEntry::new(staged).identity;
        assert_eq!(b.lookup_identity(&identity).unwrap(), None);
    }
    // Its own prefix is intact and dedup still works on it.
    assert_eq!(
        b.lookup_identity(&SequencedEntry::new(body(49)).identity)
            .unwrap(),
        Some(49)
    );
    assert_eq!(b.leaves(0..50).await.unwrap().len(), 50);
}

#[tokio::test]
async fn a_lagging_node_pulls_only_what_it_lacks() {
    let size = 1_000;
    let (leader, snapshot) = leader_with(size, 2).await;
    let fake = FakeBackfill::new(&[(1, Behaviour::Honest)]);
    let mut lagging = node(Some(fake.clone()));
    // The first 3 Raft entries: membership and 200 leaves.
    lagging.sm.apply(raft_log(200)).await.unwrap();
    lagging.sm.reader().mark_integrated(150).await.unwrap();
    lagging
        .sm
        .install_snapshot(&snapshot.meta, copy(&snapshot))
        .await
        .unwrap();
    assert_eq!(*fake.pulls.lock().unwrap(), vec![(1, 200, size - 2)]);
    let b = lagging.sm.reader();
    assert_eq!(b.applied(), leader.sm.reader().applied());
    // Its own unintegrated bodies are kept, so the integrator has everything locally.
    assert_eq!(
        b.leaves(150..size).await.unwrap().len(),
        (size - 150) as usize
    );
    assert_eq!(
        b.lookup_identity(&SequencedEntry::new(body(10)).identity)
            .unwrap(),
        Some(10)
    );
}

#[tokio::test]
async fn a_node_that_has_the_integrated_prefix_needs_no_backfill() {
    let size = 1_000;
    let (leader, snapshot) = leader_with(size, 150).await;
    let mut lagging = node(None);
    lagging.sm.apply(raft_log(900)).await.unwrap();
    lagging
        .sm
        .install_snapshot(&snapshot.meta, copy(&snapshot))
        .await
        .unwrap();
    let b = lagging.sm.reader();
    assert_eq!(b.applied(), leader.sm.reader().applied());
    assert_eq!(b.leaves(900..size).await.unwrap()[0], body(900));
    assert_eq!(
        b.lookup_identity(&SequencedEntry::new(body(950)).identity)
            .unwrap(),
        Some(950)
    );
}

#[tokio::test]
async fn without_a_backfill_an_install_that_needs_one_fails_cleanly() {
    let (_leader, snapshot) = leader_with(500, 2).await;
    let mut wiped = node(None);
    let error = wiped
        .sm
        .install_snapshot(&snapshot.meta, copy(&snapshot))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("no snapshot backfill"),
        "{error}"
    );
    assert_eq!(wiped.sm.reader().applied().size, 0);
}

#[tokio::test]
async fn an_old_format_snapshot_is_rejected() {
    let (_leader, snapshot) = leader_with(300, 2).await;
    let mut old = snapshot.snapshot.get_ref().clone();
    old[0] = 1;
    let mut wiped = node(Some(FakeBackfill::new(&[(1, Behaviour::Honest)])));
    let error = wiped
        .sm
        .install_snapshot(&snapshot.meta, Box::new(std::io::Cursor::new(old)))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("snapshot format 1 is not supported"),
        "{error}"
    );
    assert_eq!(wiped.sm.reader().applied().size, 0);
    assert_eq!(wiped.sm.applied_state().await.unwrap().0, None);
}

#[tokio::test]
async fn an_interrupted_install_is_discarded_at_open() {
    let size = 2 * BACKFILL_CHUNK + 10;
    let (_leader, snapshot) = leader_with(size, 2).await;
    let dir = tempfile::tempdir().unwrap();
    {
        let fake = FakeBackfill::new(&[(1, Behaviour::HangsFrom(BACKFILL_CHUNK))]);
        let mut sm = open_in(dir.path(), Some(fake.clone()));
        // The install stages the first chunk, then waits forever for the second: dropping it
        // is a crash in the middle of staging.
        let install = sm.install_snapshot(&snapshot.meta, copy(&snapshot));
        let second_pull_started = async {
            while fake.pulls.lock().unwrap().len() < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), async {
            tokio::select! {
                result = install => panic!("the install cannot finish: {result:?}"),
                () = second_pull_started => {}
            }
        })
        .await
        .expect("the first chunk is staged");
        // Staged identities are invisible before the switch.
        let staged = SequencedEntry::new(body(5)).identity;
        assert_eq!(sm.reader().lookup_identity(&staged).unwrap(), None);
    }
    let mut sm = open_in(dir.path(), None);
    assert_eq!(sm.reader().applied().size, 0);
    assert!(
        sm.reader().leaves(0..1).await.is_err(),
        "staged bodies removed"
    );
    // Other entries now take the indices the staged records claimed; entry 5's body is new.
    sm.apply(vec![
        membership_entry(1),
        append(2, (0..10).map(|i| format!("other {i}").into_bytes())),
        append(3, [body(5)]),
    ])
    .await
    .map(|responses| {
        assert_eq!(
            responses[2],
            CommandResponse::Appended(vec![AppendOutcome::Logged { index: 10 }])
        )
    })
    .unwrap();
    let mut expected = CompactRange::new();
    for i in 0..10 {
        expected
            .append(leaf_hash(format!("other {i}").as_bytes()))
            .unwrap();
    }
    expected.append(leaf_hash(&body(5))).unwrap();
    assert_eq!(sm.reader().applied().root, expected.root());
}

#[tokio::test]
async fn the_current_snapshot_survives_a_reopen_and_one_ahead_of_the_state_is_dropped() {
    let (leader, snapshot) = leader_with(300, 5).await;
    let leader_dir = leader._dir.path().to_path_buf();
    let id = snapshot.meta.snapshot_id.clone();
    drop(leader.sm);
    let mut reopened = open_in(&leader_dir, None);
    let current = reopened
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("kept");
    assert_eq!(current.meta.snapshot_id, id);
    drop(reopened);

    // A node whose state is behind the stored snapshot, as an install leaves it when it dies
    // after writing the snapshot and before switching the state: the snapshot is not offered.
    let behind = tempfile::tempdir().unwrap();
    std::fs::copy(leader_dir.join("snapshot"), behind.path().join("snapshot")).unwrap();
    let mut fresh = open_in(behind.path(), None);
    assert!(fresh.get_current_snapshot().await.unwrap().is_none());
    assert!(!behind.path().join("snapshot").exists());
}

/// A node that catches up by snapshot learns the log's key with it, and then rejects a
/// checkpoint signed by another key as every other member does.
#[tokio::test]
async fn an_installed_snapshot_carries_the_log_key() {
    use rekor_storage::note::{Ed25519NoteSigner, NoteSigner};
    let signer = Ed25519NoteSigner::generate("log.example").unwrap();
    let key = rekor_raft::LogKey {
        origin: signer.name().to_owned(),
        public_key: signer.public_key_der(),
    };
    let mut leader = node(None);
    leader.sm.apply(raft_log(300)).await.unwrap();
    let set = Entry {
        log_id: log_id(10),
        payload: EntryPayload::Normal(Command::SetLogKey(key.clone())),
    };
    leader.sm.apply([set]).await.unwrap();
    let snapshot = leader
        .sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let mut follower = node(None);
    follower.sm.apply(raft_log(300)).await.unwrap();
    follower
        .sm
        .install_snapshot(&snapshot.meta, copy(&snapshot))
        .await
        .unwrap();
    assert_eq!(follower.sm.reader().log_key().unwrap(), Some(key));
    let foreign = Ed25519NoteSigner::generate("log.example").unwrap();
    let root = follower.sm.reader().applied().root;
    let text = rekor_storage::checkpoint::Checkpoint::new("log.example", 300, root)
        .sign(&foreign)
        .unwrap();
    let publish = Entry {
        log_id: log_id(11),
        payload: EntryPayload::Normal(Command::Publish {
            size: 300,
            root,
            checkpoint: String::from_utf8(text).unwrap(),
        }),
    };
    assert_eq!(
        follower.sm.apply([publish]).await.unwrap(),
        vec![CommandResponse::Published { accepted: false }]
    );
}
