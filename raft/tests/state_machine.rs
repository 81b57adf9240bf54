//! The replicated state machine's rules (DESIGN.md, "The replicated state machine", "Dedup")
//! and the durability of the log store, against real stores (segment files, leaf-body and
//! identity files, a sled database) in temp dirs.

use std::collections::BTreeSet;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftLogReader, Vote};
use rekor_raft::state_machine::StateMachineError;
use rekor_raft::{
    open_stores, AppendOutcome, Command, CommandResponse, EngineConfig, SequencedEntry, SledEngine,
    StateMachineStore, TypeConfig,
};
use rekor_storage::merkle::{leaf_hash, CompactRange};

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 0), index)
}

fn normal(index: u64, cmd: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(cmd),
    }
}

fn append_cmd(bodies: &[&str]) -> Command {
    Command::Append {
        entries: bodies
            .iter()
            .map(|b| SequencedEntry::new(b.as_bytes().to_vec()))
            .collect(),
    }
}

fn publish_cmd(size: u64, root: [u8; 32]) -> Command {
    Command::Publish {
        size,
        root,
        checkpoint: format!("checkpoint at {size}\n"),
    }
}

fn root_of(bodies: &[&str]) -> [u8; 32] {
    let mut range = CompactRange::new();
    for b in bodies {
        range.append(leaf_hash(b.as_bytes())).unwrap();
    }
    range.root()
}

/// Apply one command at log index `index` and return its response.
async fn apply_one(sm: &mut StateMachineStore, index: u64, cmd: Command) -> CommandResponse {
    let mut out = sm.apply([normal(index, cmd)]).await.unwrap();
    assert_eq!(out.len(), 1);
    out.remove(0)
}

fn logged(indices: &[u64]) -> CommandResponse {
    CommandResponse::Appended(
        indices
            .iter()
            .map(|&index| AppendOutcome::Logged { index })
            .collect(),
    )
}

fn open(dir: &std::path::Path) -> (SledEngine, rekor_raft::LogStore, StateMachineStore) {
    let engine = SledEngine::open(&EngineConfig::new(dir.join("raft"))).unwrap();
    let (log, sm) = open_stores(&engine, dir).unwrap();
    (engine, log, sm)
}

#[tokio::test]
async fn append_assigns_sequential_indices_and_extends_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let (_engine, _log, mut sm) = open(dir.path());
    let reader = sm.reader();

    assert_eq!(
        apply_one(&mut sm, 1, append_cmd(&["a", "b", "c"])).await,
        logged(&[0, 1, 2])
    );
    assert_eq!(
        apply_one(&mut sm, 2, append_cmd(&["d", "e"])).await,
        logged(&[3, 4])
    );
    let applied = reader.applied();
    assert_eq!(applied.size, 5);
    assert_eq!(applied.root, root_of(&["a", "b", "c", "d", "e"]));
    assert_eq!(reader.root_at(3).unwrap(), Some(root_of(&["a", "b", "c"])));
    assert_eq!(
        reader.root_at(4).unwrap(),
        None,
        "4 is not a batch boundary"
    );
    assert_eq!(
        reader.leaves(1..4).await.unwrap(),
        vec![b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]
    );
    let id = SequencedEntry::new(b"d".to_vec()).identity;
    assert_eq!(reader.lookup_identity(&id).unwrap(), Some(3));
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(2)));
}

#[tokio::test]
async fn duplicates_within_and_across_batches_answer_the_first_index() {
    let dir = tempfile::tempdir().unwrap();
    let (_engine, _log, mut sm) = open(dir.path());

    assert_eq!(
        apply_one(&mut sm, 1, append_cmd(&["a", "b", "a"])).await,
        CommandResponse::Appended(vec![
            AppendOutcome::Logged { index: 0 },
            AppendOutcome::Logged { index: 1 },
            AppendOutcome::Duplicate { index: 0 },
        ])
    );
    assert_eq!(
        apply_one(&mut sm, 2, append_cmd(&["b", "c", "c"])).await,
        CommandResponse::Appended(vec![
            AppendOutcome::Duplicate { index: 1 },
            AppendOutcome::Logged { index: 2 },
            AppendOutcome::Duplicate { index: 2 },
        ])
    );
    // Two Appends in one apply call: the second sees the first's identities.
    let out = sm
        .apply([
            normal(3, append_cmd(&["d"])),
            normal(4, append_cmd(&["d", "a"])),
        ])
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![
            logged(&[3]),
            CommandResponse::Appended(vec![
                AppendOutcome::Duplicate { index: 3 },
                AppendOutcome::Duplicate { index: 0 },
            ])
        ]
    );
    let reader = sm.reader();
    assert_eq!(reader.applied().size, 4);
    assert_eq!(reader.applied().root, root_of(&["a", "b", "c", "d"]));
}

#[tokio::test]
async fn publish_is_accepted_only_for_the_computed_root_and_a_growing_size() {
    let dir = tempfile::tempdir().unwrap();
    let (_engine, _log, mut sm) = open(dir.path());
    let reader = sm.reader();
    apply_one(&mut sm, 1, append_cmd(&["a", "b"])).await;
    apply_one(&mut sm, 2, append_cmd(&["c", "d", "e"])).await;
    let accepted = |accepted| CommandResponse::Published { accepted };

    // Wrong root for a known size.
    assert_eq!(
        apply_one(&mut sm, 3, publish_cmd(5, [7u8; 32])).await,
        accepted(false)
    );
    // Unknown size (inside a batch): even with the true root of that prefix.
    assert_eq!(
        apply_one(&mut sm, 4, publish_cmd(3, root_of(&["a", "b", "c"]))).await,
        accepted(false)
    );
    assert_eq!(reader.latest_checkpoint().unwrap(), None);
    assert_eq!(reader.applied().checkpoint_size, None);

    // The correct root of the current size.
    let root5 = root_of(&["a", "b", "c", "d", "e"]);
    assert_eq!(
        apply_one(&mut sm, 5, publish_cmd(5, root5)).await,
        accepted(true)
    );
    let cp = reader.latest_checkpoint().unwrap().unwrap();
    assert_eq!((cp.size, cp.root), (5, root5));
    assert_eq!(cp.text, "checkpoint at 5\n");
    assert_eq!(reader.applied().checkpoint_size, Some(5));

    // A smaller size than the last published one, though its root is right.
    assert_eq!(
        apply_one(&mut sm, 6, publish_cmd(2, root_of(&["a", "b"]))).await,
        accepted(false)
    );
    // An older batch boundary is accepted while the log has not published past it...
    apply_one(&mut sm, 7, append_cmd(&["f"])).await;
    let root6 = root_of(&["a", "b", "c", "d", "e", "f"]);
    assert_eq!(
        apply_one(&mut sm, 8, publish_cmd(6, root6)).await,
        accepted(true)
    );
    assert_eq!(reader.latest_checkpoint().unwrap().unwrap().size, 6);
    // ...and the same size may be re-published (e.g. with cosignatures).
    assert_eq!(
        apply_one(&mut sm, 9, publish_cmd(6, root6)).await,
        accepted(true)
    );
}

/// The integrator takes the leaf hashes the apply computed instead of hashing each body again:
/// they are exactly the hashes of the bodies held, duplicates skipped, and a reopened state
/// machine has none (the integrator hashes those bodies itself).
#[tokio::test]
async fn applied_leaf_hashes_are_those_of_the_bodies_held() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_engine, _log, mut sm) = open(dir.path());
        let reader = sm.reader();
        apply_one(&mut sm, 1, append_cmd(&["a", "b", "c"])).await;
        apply_one(&mut sm, 2, append_cmd(&["b", "d"])).await;
        let bodies = reader.leaves(0..4).await.unwrap();
        let hashes: Vec<_> = bodies.iter().map(|body| leaf_hash(body)).collect();
        assert_eq!(reader.recent_leaf_hashes(0..4), Some(hashes.clone()));
        assert_eq!(reader.recent_leaf_hashes(2..4), Some(hashes[2..].to_vec()));
        assert_eq!(reader.recent_leaf_hashes(3..5), None, "5 is not applied");
    }
    let (_engine, _log, sm) = open(dir.path());
    assert_eq!(sm.reader().recent_leaf_hashes(0..1), None);
}

#[tokio::test]
async fn state_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let root3 = root_of(&["a", "b", "c"]);
    {
        let (_engine, _log, mut sm) = open(dir.path());
        apply_one(&mut sm, 1, append_cmd(&["a", "b", "c"])).await;
        apply_one(&mut sm, 2, publish_cmd(3, root3)).await;
        let members = Membership::new(vec![BTreeSet::from([1u64, 2, 3])], None);
        sm.apply([Entry {
            log_id: log_id(3),
            payload: EntryPayload::Membership(members),
        }])
        .await
        .unwrap();
        sm.reader().mark_integrated(1).await.unwrap();
        // Every handle (engine, stores, readers) is dropped here.
    }
    let (_engine, _log, mut sm) = open(dir.path());
    let reader = sm.reader();
    let (applied, membership) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(3)));
    assert_eq!(membership.voter_ids().collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(reader.applied().size, 3);
    assert_eq!(reader.applied().root, root3);
    assert_eq!(reader.latest_checkpoint().unwrap().unwrap().size, 3);
    assert_eq!(reader.integrated_size().unwrap(), 1);
    assert_eq!(reader.root_at(3).unwrap(), Some(root3));
    assert_eq!(
        reader.leaves(1..3).await.unwrap(),
        vec![b"b".to_vec(), b"c".to_vec()]
    );
    // Indices and dedup continue where they were.
    assert_eq!(
        apply_one(&mut sm, 4, append_cmd(&["b", "d"])).await,
        CommandResponse::Appended(vec![
            AppendOutcome::Duplicate { index: 1 },
            AppendOutcome::Logged { index: 3 },
        ])
    );
}

#[tokio::test]
async fn mark_integrated_deletes_bodies_below_the_integrated_size() {
    let dir = tempfile::tempdir().unwrap();
    let (_engine, _log, mut sm) = open(dir.path());
    let reader = sm.reader();
    apply_one(&mut sm, 1, append_cmd(&["a", "b", "c", "d"])).await;
    reader.mark_integrated(2).await.unwrap();
    assert_eq!(reader.integrated_size().unwrap(), 2);
    assert!(matches!(
        reader.leaves(1..3).await,
        Err(StateMachineError::LeafMissing { index: 1 })
    ));
    assert_eq!(
        reader.leaves(2..4).await.unwrap(),
        vec![b"c".to_vec(), b"d".to_vec()]
    );
    assert!(matches!(
        reader.leaves(3..5).await,
        Err(StateMachineError::LeafMissing { index: 4 })
    ));
    assert!(matches!(
        reader.mark_integrated(5).await,
        Err(StateMachineError::BeyondApplied {
            size: 5,
            applied: 4
        })
    ));
    // Dedup does not depend on the bodies.
    assert_eq!(
        apply_one(&mut sm, 2, append_cmd(&["a"])).await,
        CommandResponse::Appended(vec![AppendOutcome::Duplicate { index: 0 }])
    );
}

#[tokio::test]
async fn applied_state_watch_wakes_on_apply() {
    let dir = tempfile::tempdir().unwrap();
    let (_engine, _log, mut sm) = open(dir.path());
    let mut rx = sm.reader().subscribe();
    assert_eq!(rx.borrow_and_update().size, 0);
    apply_one(&mut sm, 1, append_cmd(&["a", "b"])).await;
    tokio::time::timeout(std::time::Duration::from_secs(5), rx.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rx.borrow().size, 2);
}

#[tokio::test]
async fn log_store_entries_vote_and_committed_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let vote = Vote::new_committed(3, 1);
    {
        let (_engine, mut log, _sm) = open(dir.path());
        let entries: Vec<_> = (1..=300)
            .map(|i| normal(i, append_cmd(&[&format!("e{i}")])))
            .collect();
        log.blocking_append(entries).await.unwrap();
        log.save_vote(&vote).await.unwrap();
        log.save_committed(Some(log_id(250))).await.unwrap();
        log.purge(log_id(10)).await.unwrap();
        log.truncate(log_id(291)).await.unwrap();
    }
    let (_engine, mut log, _sm) = open(dir.path());
    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(250)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(10)));
    assert_eq!(state.last_log_id, Some(log_id(290)));
    let entries = log.try_get_log_entries(..).await.unwrap();
    let indices: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
    assert_eq!(indices, (11..=290).collect::<Vec<_>>());
    assert_eq!(
        entries[245].payload,
        EntryPayload::Normal(append_cmd(&["e256"]))
    );
}

#[tokio::test]
async fn dedup_uses_the_body_hash_not_the_proposed_identity() {
    let dir = tempfile::tempdir().unwrap();
    let (_engine, _log, mut sm) = open(dir.path());
    let forged = |body: &str, identity: [u8; 32]| SequencedEntry {
        body: body.as_bytes().to_vec(),
        identity,
    };
    let a_identity = SequencedEntry::new(b"a".to_vec()).identity;
    let out = apply_one(
        &mut sm,
        1,
        Command::Append {
            entries: vec![
                SequencedEntry::new(b"a".to_vec()),
                forged("b", a_identity), // claims to be "a": must still be logged
                forged("a", [9u8; 32]),  // is "a" under another name: a duplicate
            ],
        },
    )
    .await;
    assert_eq!(
        out,
        CommandResponse::Appended(vec![
            AppendOutcome::Logged { index: 0 },
            AppendOutcome::Logged { index: 1 },
            AppendOutcome::Duplicate { index: 0 },
        ])
    );
    assert_eq!(sm.reader().lookup_identity(&[9u8; 32]).unwrap(), None);
}

#[tokio::test]
async fn identities_above_the_durable_watermark_are_rebuilt_from_the_held_bodies() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_engine, _log, mut sm) = open(dir.path());
        apply_one(&mut sm, 1, append_cmd(&["a", "b", "c"])).await;
    }
    // The identity index is lost entirely (its watermark is 0): the bodies 0..3 are still
    // held (nothing was integrated), so the open re-derives every identity from them.
    std::fs::remove_dir_all(dir.path().join("identities")).unwrap();
    let (_engine, _log, mut sm) = open(dir.path());
    let reader = sm.reader();
    assert_eq!(reader.identity_count(), 3);
    assert_eq!(
        reader
            .lookup_identity(&SequencedEntry::new(b"b".to_vec()).identity)
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        apply_one(&mut sm, 2, append_cmd(&["c", "d"])).await,
        CommandResponse::Appended(vec![
            AppendOutcome::Duplicate { index: 2 },
            AppendOutcome::Logged { index: 3 },
        ])
    );
}

#[tokio::test]
async fn an_identity_index_that_cannot_be_rebuilt_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_engine, _log, mut sm) = open(dir.path());
        apply_one(&mut sm, 1, append_cmd(&["a", "b", "c"])).await;
        // Integrating makes the identities durable and lets the bodies go.
        sm.reader().mark_integrated(3).await.unwrap();
        assert!(sm.reader().leaves(0..1).await.is_err());
    }
    // Both the identity index and the (integrated, forgettable) bodies are gone.
    std::fs::remove_dir_all(dir.path().join("identities")).unwrap();
    std::fs::remove_dir_all(dir.path().join("leaves")).unwrap();
    let engine = SledEngine::open(&EngineConfig::new(dir.path().join("raft"))).unwrap();
    let error = open_stores(&engine, dir.path())
        .err()
        .expect("open must fail");
    assert!(
        error
            .to_string()
            .contains("identity index is durable only below 0"),
        "{error}"
    );
}

#[tokio::test]
async fn leaves_of_an_apply_whose_state_was_lost_are_dropped_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_engine, _log, mut sm) = open(dir.path());
        apply_one(&mut sm, 1, append_cmd(&["a", "b"])).await;
    }
    // Bodies beyond the applied size, as an apply leaves them when the process dies after
    // fsyncing its bodies and before the engine batch that records them as applied.
    {
        let leaves = dir.path().join("leaves");
        let segments = rekor_raft::segments::SegmentLog::open(
            rekor_raft::segments::SegmentConfig::new(&leaves),
        )
        .unwrap();
        assert_eq!(segments.next_index(), 2);
        segments.append(2, &[b"lost".as_slice()]).unwrap();
        segments.sync().unwrap();
    }
    let (_engine, _log, mut sm) = open(dir.path());
    assert_eq!(sm.reader().applied().size, 2);
    assert!(sm.reader().leaves(2..3).await.is_err());
    // The committed log is re-applied from there and takes index 2 for its own entry.
    assert_eq!(
        apply_one(&mut sm, 2, append_cmd(&["c"])).await,
        logged(&[2])
    );
    assert_eq!(sm.reader().leaves(2..3).await.unwrap(), vec![b"c".to_vec()]);
}

#[tokio::test]
async fn records_of_the_engine_only_layout_are_moved_into_files_at_open() {
    use rekor_raft::engine::{index_key, WriteBatch};
    let dir = tempfile::tempdir().unwrap();
    let bodies = ["a", "b", "c"];
    {
        let (engine, _log, mut sm) = open(dir.path());
        apply_one(&mut sm, 1, append_cmd(&bodies)).await;
        // Rewrite what the files hold as the previous build kept it: leaf bodies and identity
        // records in the state machine's keyspace.
        let keyspace = engine
            .keyspace(rekor_raft::state_machine::STATE_MACHINE_KEYSPACE)
            .unwrap();
        let mut batch = WriteBatch::new();
        for (index, body) in bodies.iter().enumerate() {
            let identity = SequencedEntry::new(body.as_bytes().to_vec()).identity;
            let mut key = vec![b'i'];
            key.extend_from_slice(&identity);
            batch.put(key, (index as u64).to_be_bytes().to_vec());
            batch.put(
                index_key(b'l', index as u64).to_vec(),
                body.as_bytes().to_vec(),
            );
        }
        keyspace.apply(batch).unwrap();
        keyspace.flush().unwrap();
    }
    std::fs::remove_dir_all(dir.path().join("identities")).unwrap();
    std::fs::remove_dir_all(dir.path().join("leaves")).unwrap();
    let (engine, _log, mut sm) = open(dir.path());
    let reader = sm.reader();
    assert_eq!(reader.leaves(0..3).await.unwrap().len(), 3);
    assert_eq!(reader.identity_count(), 3);
    let keyspace = engine
        .keyspace(rekor_raft::state_machine::STATE_MACHINE_KEYSPACE)
        .unwrap();
    let lower = [b'i'];
    let left = keyspace
        .scan(
            std::ops::Bound::Included(&lower[..]),
            std::ops::Bound::Excluded(&b"m"[..]),
            rekor_raft::engine::ScanOrder::Ascending,
            10,
        )
        .unwrap();
    assert!(left.is_empty(), "legacy records removed: {left:?}");
    assert_eq!(
        apply_one(&mut sm, 2, append_cmd(&["a", "d"])).await,
        CommandResponse::Appended(vec![
            AppendOutcome::Duplicate { index: 0 },
            AppendOutcome::Logged { index: 3 },
        ])
    );
}

/// An entry no integrator could write (issue #12, item 4) is refused by the state machine alone:
/// no index, no identity record, and the entries around it log as if it were not there.
#[tokio::test]
async fn an_oversized_or_empty_entry_is_refused_and_the_rest_of_its_batch_logs() {
    use rekor_raft::types::{Refusal, MAX_ENTRY_BODY};
    let dir = tempfile::tempdir().unwrap();
    let (_engine, _log, mut sm) = open(dir.path());
    let reader = sm.reader();
    let oversized = vec![b'x'; MAX_ENTRY_BODY + 1];
    let command = Command::Append {
        entries: vec![
            SequencedEntry::new(b"good one".to_vec()),
            SequencedEntry::new(oversized.clone()),
            SequencedEntry::new(Vec::new()),
            SequencedEntry::new(b"good two".to_vec()),
        ],
    };
    assert_eq!(
        apply_one(&mut sm, 1, command).await,
        CommandResponse::Appended(vec![
            AppendOutcome::Logged { index: 0 },
            AppendOutcome::Refused {
                reason: Refusal::TooLarge {
                    size: MAX_ENTRY_BODY as u64 + 1
                }
            },
            AppendOutcome::Refused {
                reason: Refusal::Empty
            },
            AppendOutcome::Logged { index: 1 },
        ])
    );
    let applied = reader.applied();
    assert_eq!(applied.size, 2);
    assert_eq!(applied.root, root_of(&["good one", "good two"]));
    assert_eq!(
        reader.leaves(0..2).await.unwrap(),
        vec![b"good one".to_vec(), b"good two".to_vec()]
    );
    let identity = rekor_raft::types::identity_of(&oversized);
    assert_eq!(reader.lookup_identity(&identity).unwrap(), None);
    // Refused again later: it is never a duplicate of anything.
    assert_eq!(
        apply_one(
            &mut sm,
            2,
            Command::Append {
                entries: vec![
                    SequencedEntry::new(oversized),
                    SequencedEntry::new(b"good three".to_vec()),
                ],
            },
        )
        .await,
        CommandResponse::Appended(vec![
            AppendOutcome::Refused {
                reason: Refusal::TooLarge {
                    size: MAX_ENTRY_BODY as u64 + 1
                }
            },
            AppendOutcome::Logged { index: 2 },
        ])
    );
    assert_eq!(
        reader.applied().root,
        root_of(&["good one", "good two", "good three"])
    );
}

fn signed_publish(
    signer: &dyn rekor_storage::note::NoteSigner,
    size: u64,
    root: [u8; 32],
) -> Command {
    let text = rekor_storage::checkpoint::Checkpoint::new(signer.name(), size, root)
        .sign(signer)
        .unwrap();
    Command::Publish {
        size,
        root,
        checkpoint: String::from_utf8(text).unwrap(),
    }
}

fn log_key_of(signer: &dyn rekor_storage::note::NoteSigner) -> rekor_raft::LogKey {
    rekor_raft::LogKey {
        origin: signer.name().to_owned(),
        public_key: signer.public_key_der(),
    }
}

/// Once the log's key is recorded, a `Publish` is accepted only if its note verifies under that
/// key for exactly its size and root: a member with another key (or another origin) cannot get a
/// checkpoint recorded, whatever root it signs. The key is never replaced, and it survives a
/// reopen.
#[tokio::test]
async fn publish_signed_by_another_key_is_rejected_once_the_key_is_recorded() {
    use rekor_storage::note::Ed25519NoteSigner;
    let dir = tempfile::tempdir().unwrap();
    let (engine, log, mut sm) = open(dir.path());
    let log_signer = Ed25519NoteSigner::generate("log.example").unwrap();
    let foreign = Ed25519NoteSigner::generate("log.example").unwrap();
    let other_origin =
        Ed25519NoteSigner::new("other.example", log_signer.signing_key().clone()).unwrap();
    let accepted = |accepted| CommandResponse::Published { accepted };
    let key_set = |accepted| CommandResponse::LogKeySet { accepted };

    apply_one(&mut sm, 1, append_cmd(&["a", "b"])).await;
    let root = root_of(&["a", "b"]);
    assert_eq!(
        apply_one(&mut sm, 2, Command::SetLogKey(log_key_of(&log_signer))).await,
        key_set(true)
    );
    // The recorded key is never replaced; setting it again is a no-op.
    assert_eq!(
        apply_one(&mut sm, 3, Command::SetLogKey(log_key_of(&foreign))).await,
        key_set(false)
    );
    assert_eq!(
        apply_one(&mut sm, 4, Command::SetLogKey(log_key_of(&log_signer))).await,
        key_set(true)
    );
    // The right root, signed by another key, or by the log's key under another origin.
    assert_eq!(
        apply_one(&mut sm, 5, signed_publish(&foreign, 2, root)).await,
        accepted(false)
    );
    assert_eq!(
        apply_one(&mut sm, 6, signed_publish(&other_origin, 2, root)).await,
        accepted(false)
    );
    // A note for another size than the command claims.
    let mut mismatched = signed_publish(&log_signer, 2, root);
    if let Command::Publish { size, .. } = &mut mismatched {
        *size = 0;
    }
    assert_eq!(apply_one(&mut sm, 7, mismatched).await, accepted(false));
    // Unsigned text is no longer enough either.
    assert_eq!(
        apply_one(&mut sm, 8, publish_cmd(2, root)).await,
        accepted(false)
    );
    assert_eq!(sm.reader().latest_checkpoint().unwrap(), None);
    // The log's own signature is accepted.
    assert_eq!(
        apply_one(&mut sm, 9, signed_publish(&log_signer, 2, root)).await,
        accepted(true)
    );
    drop((sm, log, engine));

    let (_engine, _log, mut sm) = open(dir.path());
    assert_eq!(
        sm.reader().log_key().unwrap(),
        Some(log_key_of(&log_signer))
    );
    assert_eq!(
        apply_one(&mut sm, 10, signed_publish(&foreign, 2, root)).await,
        accepted(false)
    );
}

/// State written before keys were recorded: its checkpoints keep the old rules, and the first
/// key recorded must verify the latest of them (a member with another key cannot claim the log).
#[tokio::test]
async fn the_first_key_of_an_older_log_must_verify_its_latest_checkpoint() {
    use rekor_storage::note::Ed25519NoteSigner;
    let dir = tempfile::tempdir().unwrap();
    let (_engine, _log, mut sm) = open(dir.path());
    let log_signer = Ed25519NoteSigner::generate("log.example").unwrap();
    let foreign = Ed25519NoteSigner::generate("log.example").unwrap();
    apply_one(&mut sm, 1, append_cmd(&["a"])).await;
    let root = root_of(&["a"]);
    assert_eq!(
        apply_one(&mut sm, 2, signed_publish(&log_signer, 1, root)).await,
        CommandResponse::Published { accepted: true }
    );
    assert_eq!(
        apply_one(&mut sm, 3, Command::SetLogKey(log_key_of(&foreign))).await,
        CommandResponse::LogKeySet { accepted: false }
    );
    assert_eq!(sm.reader().log_key().unwrap(), None);
    assert_eq!(
        apply_one(&mut sm, 4, Command::SetLogKey(log_key_of(&log_signer))).await,
        CommandResponse::LogKeySet { accepted: true }
    );
    assert_eq!(
        apply_one(&mut sm, 5, signed_publish(&foreign, 1, root)).await,
        CommandResponse::Published { accepted: false }
    );
}
