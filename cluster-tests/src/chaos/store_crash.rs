//! The crash test of the node's whole Raft storage (the durability invariant): the real
//! [`LogStore`] and [`StateMachineStore`] — engine metadata, log segments, leaf bodies, identity
//! index — driven the way openraft and the integrator drive them, killed with SIGKILL at random
//! moments, reopened and checked against a model.
//!
//! `bin/store-crash-writer` runs [`run_writer`]: it appends one Raft entry at a time, prints its
//! log index once the append is durable (openraft's `LogFlushed`), applies it, and now and then
//! marks entries integrated, builds a snapshot and purges the log behind it. Entry `L` carries
//! [`bodies_of`]`(L)`, including an earlier entry's body now and then, so dedup is exercised.
//! `tests/crash_stores.rs` kills it and runs [`check`]: every acknowledged entry is in the log,
//! and after re-applying the log tail (what openraft does at start) the state machine equals the
//! model: size, root, every identity's index, the held unintegrated bodies.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader};
use rekor_raft::{
    open_stores, Command, EngineConfig, LogStore, SequencedEntry, SledEngine, StateMachineStore,
    TypeConfig,
};
use rekor_storage::merkle::{leaf_hash, CompactRange};

/// Entries between two `mark_integrated` calls.
const INTEGRATE_EVERY: u64 = 7;
/// Entries between two snapshot builds (each followed by a log purge).
const SNAPSHOT_EVERY: u64 = 40;
/// Applied leaves the simulated integrator stays behind.
const INTEGRATION_LAG: u64 = 5;

/// Why the crashed storage is wrong (or could not be driven).
#[derive(Debug, thiserror::Error)]
pub enum StoreCrashError {
    #[error("storage failed: {0}")]
    Storage(String),
    #[error("{0}")]
    Violation(String),
}

fn storage(e: impl std::fmt::Display) -> StoreCrashError {
    StoreCrashError::Storage(e.to_string())
}

/// The bodies entry `index` of the Raft log carries: three of its own, and every fifth entry
/// also repeats the first body of entry `index - 3`.
pub fn bodies_of(index: u64) -> Vec<Vec<u8>> {
    let own = |j: u64| {
        let len = 200 + ((index * 7 + j * 13) % 900) as usize;
        let mut body = format!("entry {index} body {j} ").into_bytes();
        body.resize(len, (index % 251) as u8);
        body
    };
    let mut bodies: Vec<Vec<u8>> = (0..3).map(own).collect();
    if index.is_multiple_of(5) && index > 3 {
        bodies.push(bodies_of_first(index - 3));
    }
    bodies
}

fn bodies_of_first(index: u64) -> Vec<u8> {
    let len = 200 + ((index * 7) % 900) as usize;
    let mut body = format!("entry {index} body 0 ").into_bytes();
    body.resize(len, (index % 251) as u8);
    body
}

fn entry(index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Command::Append {
            entries: bodies_of(index)
                .into_iter()
                .map(SequencedEntry::new)
                .collect(),
        }),
    }
}

/// The leaves the log `1..=last` logs, in order (dedup applied).
pub fn model_leaves(last: u64) -> Vec<Vec<u8>> {
    let mut seen = std::collections::HashSet::new();
    let mut leaves = Vec::new();
    for index in 1..=last {
        for body in bodies_of(index) {
            if seen.insert(body.clone()) {
                leaves.push(body);
            }
        }
    }
    leaves
}

fn open(dir: &Path) -> Result<(SledEngine, LogStore, StateMachineStore), StoreCrashError> {
    let mut config = EngineConfig::new(dir.join("raft"));
    config.cache_capacity = 8 * 1024 * 1024;
    let engine = SledEngine::open(&config).map_err(storage)?;
    let (log, sm) = open_stores(&engine, dir).map_err(storage)?;
    Ok((engine, log, sm))
}

/// Re-apply the log entries after the applied id, as openraft does at start. Returns the last
/// log index.
async fn replay(log: &mut LogStore, sm: &mut StateMachineStore) -> Result<u64, StoreCrashError> {
    let state = log.get_log_state().await.map_err(storage)?;
    let last = state.last_log_id.map_or(0, |id| id.index);
    let (applied, _) = sm.applied_state().await.map_err(storage)?;
    let from = applied.map_or(1, |id| id.index + 1);
    if from <= last {
        let entries = log
            .try_get_log_entries(from..=last)
            .await
            .map_err(storage)?;
        if entries.len() as u64 != last + 1 - from {
            return Err(StoreCrashError::Violation(format!(
                "the log lacks entries between the applied id {from} and its last entry {last}"
            )));
        }
        sm.apply(entries).await.map_err(storage)?;
    }
    Ok(last)
}

/// The writer: resumes after the last durable entry and runs until killed.
pub async fn run_writer(dir: &Path) -> Result<(), StoreCrashError> {
    let (_engine, mut log, mut sm) = open(dir)?;
    let mut last = replay(&mut log, &mut sm).await?;
    let reader = sm.reader();
    let stdout = std::io::stdout();
    loop {
        let index = last + 1;
        log.blocking_append([entry(index)]).await.map_err(storage)?;
        {
            let mut out = stdout.lock();
            writeln!(out, "{index}").map_err(storage)?;
            out.flush().map_err(storage)?;
        }
        sm.apply([entry(index)]).await.map_err(storage)?;
        last = index;
        if index.is_multiple_of(INTEGRATE_EVERY) {
            let size = reader.applied().size.saturating_sub(INTEGRATION_LAG);
            reader.mark_integrated(size).await.map_err(storage)?;
        }
        if index.is_multiple_of(SNAPSHOT_EVERY) {
            let snapshot = sm
                .get_snapshot_builder()
                .await
                .build_snapshot()
                .await
                .map_err(storage)?;
            if let Some(upto) = snapshot.meta.last_log_id {
                if upto.index > 10 {
                    let purge = LogId::new(CommittedLeaderId::new(1, 1), upto.index - 10);
                    log.purge(purge).await.map_err(storage)?;
                }
            }
        }
    }
}

/// What a checked store holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreState {
    /// Last log index.
    pub last: u64,
    /// Applied leaves.
    pub size: u64,
}

/// Reopen the storage in `dir`, re-apply the log tail and compare everything with the model.
pub async fn check(dir: &Path) -> Result<StoreState, StoreCrashError> {
    let (_engine, mut log, mut sm) = open(dir)?;
    let last = replay(&mut log, &mut sm).await?;
    let reader = sm.reader();
    let leaves = model_leaves(last);
    let applied = reader.applied();
    if applied.size != leaves.len() as u64 {
        return Err(StoreCrashError::Violation(format!(
            "{} leaves applied, the model of log 1..={last} has {}",
            applied.size,
            leaves.len()
        )));
    }
    let mut range = CompactRange::new();
    let mut index_of = HashMap::new();
    for (index, body) in leaves.iter().enumerate() {
        range.append(leaf_hash(body)).map_err(storage)?;
        index_of.insert(SequencedEntry::new(body.clone()).identity, index as u64);
    }
    if applied.root != range.root() {
        return Err(StoreCrashError::Violation(format!(
            "root at size {} differs from the model",
            applied.size
        )));
    }
    for (identity, index) in &index_of {
        let found = reader.lookup_identity(identity).map_err(storage)?;
        if found != Some(*index) {
            return Err(StoreCrashError::Violation(format!(
                "identity of leaf {index} resolves to {found:?}"
            )));
        }
    }
    let integrated = reader.integrated_size().map_err(storage)?;
    let held = reader
        .leaves(integrated..applied.size)
        .await
        .map_err(|e| StoreCrashError::Violation(format!("unintegrated bodies missing: {e}")))?;
    if held.as_slice() != &leaves[integrated as usize..] {
        return Err(StoreCrashError::Violation(
            "unintegrated bodies differ from the model".into(),
        ));
    }
    Ok(StoreState {
        last,
        size: applied.size,
    })
}
