//! The Raft log: openraft's `RaftLogStorage` + `RaftLogReader` (rust-stack.md §2.3, §3.3).
//!
//! Entries live in append-only segment files ([`SegmentLog`], one record per entry: versioned
//! bincode `Entry`); the vote, the committed id and the last purged id live in the engine's
//! `raft_log` keyspace (`m/vote`, `m/committed`, `m/purged`). The entries left sled because the
//! log is written once and deleted from the front, which sled handles badly: 1 M entries written
//! and purged through it grew the process by ~300 MiB and its file by 3.5 GB (measured with the
//! node's write pattern); segment files cost neither (purging deletes whole files).
//!
//! Durability: every write goes through one writer thread ([`LogWriter`]), so write IO is
//! applied in submission order (the trait's rule). A job is applied (readable) before the
//! submitting call returns; the writer then fsyncs what it touched (the active segment, the
//! engine) and only then fires `append`'s `LogFlushed` callback or lets `save_vote` return. Jobs
//! that queue up while a flush runs share the next flush (group commit). A crash before the
//! fsync loses only writes nobody was told are durable; a torn last record is cut off when the
//! segments are reopened.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, LogState, RaftLogId, RaftLogReader, StorageError, StorageIOError, Vote,
};
use tokio::sync::oneshot;

use crate::codec;
use crate::engine::{scan_prefix, EngineError, Keyspace, WriteBatch};
use crate::segments::{SegmentConfig, SegmentError, SegmentLog};
use crate::types::{NodeId, TypeConfig};

/// Key prefix of the entries of the log's old layout (in the engine), read once to migrate.
const LEGACY_ENTRY_PREFIX: u8 = b'e';
const KEY_VOTE: &[u8] = b"m/vote";
const KEY_COMMITTED: &[u8] = b"m/committed";
const KEY_PURGED: &[u8] = b"m/purged";

/// Name of the engine keyspace that holds the log's metadata.
pub const LOG_KEYSPACE: &str = "raft_log";

type StoreResult<T> = Result<T, StorageError<NodeId>>;

fn read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

fn vote_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_vote(AnyError::new(&e)).into()
}

/// A failure opening the log store.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// The engine (metadata) failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The segment files failed.
    #[error(transparent)]
    Segments(#[from] SegmentError),
    /// A stored record could not be decoded.
    #[error("corrupt Raft log record: {0}")]
    Codec(#[from] codec::CodecError),
    /// The writer thread could not be started.
    #[error("cannot start the Raft log writer thread")]
    WriterThread(#[source] std::io::Error),
}

/// A failed write of the log, as the writer thread reports it. Typed so that a caller can tell
/// a poisoned segment log ([`SegmentError::Poisoned`]: reopen needed) from corrupt segments,
/// an engine failure or a refused append; openraft's `StorageError` is built from it only at
/// the trait boundary.
#[derive(Debug, thiserror::Error)]
pub enum LogWriteError {
    /// The segment files failed.
    #[error(transparent)]
    Segments(#[from] SegmentError),
    /// The engine (metadata) failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// An append past the end of the log (gaps are refused unless allowed for openraft's
    /// conformance suite).
    #[error("append at index {first} would leave a gap after the last entry {last}")]
    Gap {
        /// Index of the refused append.
        first: u64,
        /// Index of the last held entry.
        last: u64,
    },
    /// The writer thread is gone (the store is shutting down).
    #[error("log writer stopped")]
    WriterStopped,
}

/// A write's outcome; shared (`Arc`) because one flush answers every job of its group.
type WriteResult = Result<(), Arc<LogWriteError>>;

/// What to do once a job's batch is applied.
enum Durability {
    /// Nothing: durable with the next flush.
    Lazy,
    /// Flush, then answer.
    Flush(oneshot::Sender<WriteResult>),
    /// Flush, then tell openraft the log IO is complete.
    Callback(LogFlushed<TypeConfig>),
}

/// One write of the log, applied on the writer thread in submission order.
enum WriteOp {
    /// Entries with consecutive indices from `first`, each encoded.
    Entries { first: u64, records: Vec<Vec<u8>> },
    /// Metadata (vote, committed, purged) in the engine.
    Meta(WriteBatch),
    /// Remove entries from this index on (durable when applied).
    Truncate(u64),
    /// Forget entries below this index.
    Purge(u64),
}

struct WriteJob {
    op: WriteOp,
    applied: oneshot::Sender<WriteResult>,
    durability: Durability,
}

/// The log's two stores.
struct Stores {
    meta: Arc<dyn Keyspace>,
    entries: Arc<SegmentLog>,
    /// Whether an append past the end of the log (a gap) forgets the held entries instead of
    /// failing. Only openraft's conformance suite appends that way (`LogStore::allow_gaps`, built
    /// with the `test-gaps` feature only).
    gaps_allowed: Arc<AtomicBool>,
}

/// What a group of applied jobs left to fsync.
#[derive(Default)]
struct Dirty {
    entries: bool,
    meta: bool,
}

impl Stores {
    fn apply(&self, op: WriteOp, dirty: &mut Dirty) -> Result<(), LogWriteError> {
        match op {
            WriteOp::Entries { first, records } => {
                let next = self.entries.next_index();
                let held = self.entries.first_index().is_some();
                if held && first < next {
                    // Entries replacing a suffix: the append implies the truncation.
                    self.entries.truncate_from(first)?;
                } else if held && first > next {
                    if !self.gaps_allowed.load(Ordering::Relaxed) {
                        return Err(LogWriteError::Gap {
                            first,
                            last: next - 1,
                        });
                    }
                    self.entries.reset(first)?;
                }
                let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
                self.entries.append(first, &slices)?;
                dirty.entries = true;
            }
            WriteOp::Meta(batch) => {
                self.meta.apply(batch)?;
                dirty.meta = true;
            }
            WriteOp::Truncate(from) => {
                self.entries.truncate_from(from)?;
            }
            WriteOp::Purge(to) => purge_segments(&self.entries, to)?,
        }
        Ok(())
    }

    fn flush(&self, dirty: &Dirty) -> Result<(), LogWriteError> {
        if dirty.entries {
            self.entries.sync()?;
        }
        if dirty.meta {
            self.meta.flush()?;
        }
        Ok(())
    }
}

/// Forget the entries below `to`. Purging past the last entry (after a snapshot install the
/// log may end below the snapshot) leaves an empty log whose next append is at `to`.
fn purge_segments(entries: &SegmentLog, to: u64) -> Result<(), SegmentError> {
    if to >= entries.next_index() {
        entries.reset(to)
    } else {
        entries.purge_to(to)
    }
}

/// The single ordered writer of the log (one OS thread; fsyncs block).
///
/// Dropping the last handle closes the queue and joins the thread, so that once a `LogStore`
/// and its readers are dropped the database can be reopened in the same process.
struct LogWriter {
    queue: Option<mpsc::Sender<WriteJob>>,
    thread: Option<JoinHandle<()>>,
}

impl LogWriter {
    fn start(stores: Stores) -> Result<Self, LogStoreError> {
        let (tx, rx) = mpsc::channel::<WriteJob>();
        let thread = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || run_writer(stores, rx))
            .map_err(LogStoreError::WriterThread)?;
        Ok(Self {
            queue: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queue `op`; returns once it is applied (readable). The durability part completes
    /// later, on the writer thread.
    async fn submit(&self, op: WriteOp, durability: Durability) -> WriteResult {
        let (applied, applied_rx) = oneshot::channel();
        let job = WriteJob {
            op,
            applied,
            durability,
        };
        let stopped = || Arc::new(LogWriteError::WriterStopped);
        let queue = self.queue.as_ref().ok_or_else(stopped)?;
        queue.send(job).map_err(|_| stopped())?;
        applied_rx.await.map_err(|_| stopped())?
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            // The writer only finishes the jobs already queued (at most one flush).
            if thread.join().is_err() {
                tracing::error!("raft log writer thread panicked");
            }
        }
    }
}

fn run_writer(stores: Stores, rx: mpsc::Receiver<WriteJob>) {
    while let Ok(first) = rx.recv() {
        // Group commit: apply every job already queued, then flush once for all of them.
        let mut pending = Vec::new();
        let mut dirty = Dirty::default();
        let mut next = Some(first);
        while let Some(job) = next {
            let result = stores.apply(job.op, &mut dirty).map_err(Arc::new);
            let ok = result.is_ok();
            let _ = job.applied.send(result.clone());
            if ok {
                pending.push(job.durability);
            } else {
                complete(job.durability, result);
            }
            next = if pending.len() < 256 {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if pending.iter().all(|d| matches!(d, Durability::Lazy)) {
            continue;
        }
        let flushed = stores.flush(&dirty).map_err(Arc::new);
        for durability in pending {
            complete(durability, flushed.clone());
        }
    }
}

fn complete(durability: Durability, result: WriteResult) {
    match durability {
        Durability::Lazy => {}
        Durability::Flush(tx) => {
            let _ = tx.send(result);
        }
        Durability::Callback(cb) => {
            cb.log_io_completed(result.map_err(std::io::Error::other));
        }
    }
}

/// Reads of the log; a cheap clone handed to openraft's replication tasks.
#[derive(Clone)]
pub struct LogReader {
    meta: Arc<dyn Keyspace>,
    entries: Arc<SegmentLog>,
}

impl LogReader {
    async fn blocking<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&LogReader) -> StoreResult<T> + Send + 'static,
    {
        let reader = self.clone();
        tokio::task::spawn_blocking(move || f(&reader))
            .await
            .map_err(read_err)?
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> StoreResult<Option<T>> {
        match self.meta.get(key).map_err(read_err)? {
            None => Ok(None),
            Some(bytes) => Ok(Some(codec::decode(&bytes).map_err(read_err)?)),
        }
    }

    /// The held entries in `start..end` (clamped to what is held; openraft checks the count).
    fn entries_in(&self, start: u64, end: u64) -> StoreResult<Vec<Entry<TypeConfig>>> {
        let held_from = self.entries.first_index().unwrap_or(u64::MAX);
        let start = start.max(held_from);
        let end = end.min(self.entries.next_index());
        if start >= end {
            return Ok(Vec::new());
        }
        self.entries
            .read(start..end)
            .map_err(read_err)?
            .iter()
            .map(|record| codec::decode(record).map_err(read_err))
            .collect()
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        };
        self.blocking(move |reader| reader.entries_in(start, end))
            .await
    }
}

/// Reports the bytes of the log's segment files.
#[derive(Clone)]
pub struct LogSizeProbe(Arc<SegmentLog>);

impl LogSizeProbe {
    /// Bytes of all segment files.
    pub fn bytes(&self) -> u64 {
        self.0.size_on_disk()
    }
}

/// The Raft log store. Construct with [`LogStore::open`] and hand it to `Raft::new`.
pub struct LogStore {
    reader: LogReader,
    writer: Arc<LogWriter>,
    #[cfg(feature = "test-gaps")]
    gaps_allowed: Arc<AtomicBool>,
}

impl LogStore {
    /// The log store with its metadata in `meta` (normally [`LOG_KEYSPACE`] of the node's
    /// engine) and its entries in segment files under `dir`. Starts the writer thread.
    ///
    /// Entries of the old layout (in the engine) are moved into the segments first.
    pub fn open(meta: Arc<dyn Keyspace>, dir: &Path) -> Result<Self, LogStoreError> {
        let entries = Arc::new(SegmentLog::open(SegmentConfig::new(dir))?);
        migrate_engine_entries(meta.as_ref(), &entries)?;
        let purged: Option<LogId<NodeId>> = match meta.get(KEY_PURGED)? {
            None => None,
            Some(bytes) => Some(codec::decode(&bytes)?),
        };
        if let Some(purged) = purged {
            // A purge's deletion is not durable (a partly purged segment is kept whole).
            purge_segments(&entries, purged.index + 1)?;
        }
        let gaps_allowed = Arc::new(AtomicBool::new(false));
        let writer = LogWriter::start(Stores {
            meta: meta.clone(),
            entries: entries.clone(),
            gaps_allowed: gaps_allowed.clone(),
        })?;
        Ok(Self {
            reader: LogReader { meta, entries },
            writer: Arc::new(writer),
            #[cfg(feature = "test-gaps")]
            gaps_allowed,
        })
    }

    /// Let an append past the end of the log forget the held entries and start the log there,
    /// instead of failing. openraft never appends with a gap (it purges to a snapshot first),
    /// but its conformance suite treats the log as a map and does (e.g. index 3 after 1); the
    /// suite's store builder calls this. A node never does: a gap there is a bug, and failing
    /// stops Raft rather than losing entries.
    ///
    /// Only built with the `test-gaps` feature, which nothing but this crate's own tests
    /// enable: it is not part of the store's API.
    #[cfg(feature = "test-gaps")]
    #[doc(hidden)]
    pub fn allow_gaps(&self) {
        self.gaps_allowed.store(true, Ordering::Relaxed);
    }

    /// A handle that reports the size of the segment files (for a metric) after the store
    /// itself has been handed to openraft.
    pub fn size_probe(&self) -> LogSizeProbe {
        LogSizeProbe(self.reader.entries.clone())
    }

    async fn write(&self, op: WriteOp, durability: Durability) -> WriteResult {
        self.writer.submit(op, durability).await
    }

    async fn write_durably(&self, op: WriteOp) -> WriteResult {
        let (tx, rx) = oneshot::channel();
        self.write(op, Durability::Flush(tx)).await?;
        rx.await
            .map_err(|_| Arc::new(LogWriteError::WriterStopped))?
    }
}

/// Move entries that an older build kept in the engine into the segments (once; then delete
/// them from the engine). The log behind the last snapshot is short, so this is small.
fn migrate_engine_entries(meta: &dyn Keyspace, entries: &SegmentLog) -> Result<(), LogStoreError> {
    let rows = scan_prefix(meta, LEGACY_ENTRY_PREFIX, usize::MAX)?;
    let Some((first_key, _)) = rows.first() else {
        return Ok(());
    };
    let first = crate::engine::parse_index_key(first_key).unwrap_or(0);
    if entries.first_index().is_none() {
        let records: Vec<&[u8]> = rows.iter().map(|(_, v)| v.as_slice()).collect();
        entries.append(first, &records)?;
        entries.sync()?;
    }
    let mut delete = WriteBatch::new();
    for (key, _) in &rows {
        delete.delete(key.clone());
    }
    meta.apply(delete)?;
    meta.flush()?;
    tracing::info!(
        entries = rows.len(),
        first,
        "moved the Raft log of an older layout from the engine into segment files"
    );
    Ok(())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<Entry<TypeConfig>>> {
        self.reader.try_get_log_entries(range).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> StoreResult<LogState<TypeConfig>> {
        self.reader
            .blocking(|reader| {
                let last_purged: Option<LogId<NodeId>> = reader.get_meta(KEY_PURGED)?;
                let next = reader.entries.next_index();
                // The last held entry, if it lies above the purge point.
                let held_last = reader
                    .entries
                    .first_index()
                    .filter(|first| next > *first)
                    .map(|_| next - 1)
                    .filter(|last| last_purged.is_none_or(|p| *last > p.index));
                let last_log_id = match held_last {
                    Some(last) => reader
                        .entries_in(last, next)?
                        .first()
                        .map(|entry| *entry.get_log_id())
                        .or(last_purged),
                    None => last_purged,
                };
                Ok(LogState {
                    last_purged_log_id: last_purged,
                    last_log_id,
                })
            })
            .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.reader.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StoreResult<()> {
        // Durable before returning: a vote forgotten after a crash could let this node vote
        // twice in one term.
        let mut batch = WriteBatch::new();
        batch.put(KEY_VOTE, codec::encode(vote).map_err(vote_err)?);
        self.write_durably(WriteOp::Meta(batch))
            .await
            .map_err(vote_err)
    }

    async fn read_vote(&mut self) -> StoreResult<Option<Vote<NodeId>>> {
        self.reader
            .blocking(|reader| reader.get_meta(KEY_VOTE))
            .await
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StoreResult<()> {
        // Advisory (openraft re-derives it); durable with the next flush.
        let mut batch = WriteBatch::new();
        match committed {
            Some(id) => batch.put(KEY_COMMITTED, codec::encode(&id).map_err(write_err)?),
            None => batch.delete(KEY_COMMITTED),
        }
        self.write(WriteOp::Meta(batch), Durability::Lazy)
            .await
            .map_err(write_err)
    }

    async fn read_committed(&mut self) -> StoreResult<Option<LogId<NodeId>>> {
        self.reader
            .blocking(|reader| reader.get_meta(KEY_COMMITTED))
            .await
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StoreResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        // One append; readable when this returns; the callback fires after the fsync.
        let mut first = None;
        let mut records = Vec::new();
        for entry in entries {
            first.get_or_insert(entry.get_log_id().index);
            records.push(codec::encode(&entry).map_err(write_err)?);
        }
        let Some(first) = first else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        self.write(
            WriteOp::Entries { first, records },
            Durability::Callback(callback),
        )
        .await
        .map_err(write_err)
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        self.write_durably(WriteOp::Truncate(log_id.index))
            .await
            .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        // First make the new last-purged id durable, then forget the entries: a crash in
        // between leaves stale entries below the purge point (forgotten again at open), never
        // a log whose start is unknown.
        let mut mark = WriteBatch::new();
        mark.put(KEY_PURGED, codec::encode(&log_id).map_err(write_err)?);
        self.write_durably(WriteOp::Meta(mark))
            .await
            .map_err(write_err)?;
        self.write(WriteOp::Purge(log_id.index + 1), Durability::Lazy)
            .await
            .map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineConfig, SledEngine};
    use crate::segments::test_support::write_damaged_segments;

    fn meta(dir: &Path) -> Arc<dyn Keyspace> {
        let engine = SledEngine::open(&EngineConfig::new(dir.join("engine"))).unwrap();
        engine.keyspace(LOG_KEYSPACE).unwrap()
    }

    fn entries(first: u64, count: u64) -> WriteOp {
        WriteOp::Entries {
            first,
            records: (first..first + count).map(|i| vec![i as u8; 40]).collect(),
        }
    }

    /// The writer's answer, unwrapped from its `Arc` for matching.
    async fn write_err(store: &LogStore, op: WriteOp) -> Arc<LogWriteError> {
        store
            .write_durably(op)
            .await
            .expect_err("the write should fail")
    }

    #[tokio::test]
    async fn a_write_after_a_failed_sync_says_poisoned_not_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(meta(dir.path()), &dir.path().join("log")).unwrap();
        store.write_durably(entries(1, 3)).await.unwrap();
        store.reader.entries.poison_for_test();

        let err = write_err(&store, entries(4, 1)).await;
        assert!(
            matches!(*err, LogWriteError::Segments(SegmentError::Poisoned)),
            "{err:?}"
        );
        let err = write_err(&store, WriteOp::Truncate(2)).await;
        assert!(
            matches!(*err, LogWriteError::Segments(SegmentError::Poisoned)),
            "{err:?}"
        );
        // At openraft's boundary the error keeps its description.
        let storage = super::write_err(err);
        assert!(storage.to_string().contains("poisoned"), "{storage}");
    }

    #[tokio::test]
    async fn a_damaged_segment_at_open_says_corrupt_not_poisoned() {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = dir.path().join("log");
        let damaged = write_damaged_segments(&log_dir, 1);

        match LogStore::open(meta(dir.path()), &log_dir) {
            Err(LogStoreError::Segments(SegmentError::Corrupt { path, .. })) => {
                assert_eq!(path, damaged);
            }
            Err(other) => panic!("expected Corrupt, got {other:?}"),
            Ok(_) => panic!("expected Corrupt, the store opened"),
        }
    }

    #[tokio::test]
    async fn an_append_past_the_end_is_a_typed_gap() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(meta(dir.path()), &dir.path().join("log")).unwrap();
        store.write_durably(entries(1, 3)).await.unwrap();

        let err = write_err(&store, entries(6, 1)).await;
        assert!(
            matches!(*err, LogWriteError::Gap { first: 6, last: 3 }),
            "{err:?}"
        );
        // The refused append changed nothing: the log still continues at 4.
        store.write_durably(entries(4, 1)).await.unwrap();
        assert_eq!(store.reader.entries.next_index(), 5);
    }
}
