//! The Raft log on the engine: openraft's `RaftLogStorage` + `RaftLogReader` (rust-stack.md §2.3,
//! §3.3).
//!
//! Layout of the `raft_log` keyspace: `e` + big-endian index → versioned bincode `Entry`;
//! `m/vote`, `m/committed`, `m/purged` → versioned bincode `Vote` / `LogId`.
//!
//! Durability: every write goes through one writer thread ([`LogWriter`]), so write IO is
//! applied in submission order (the trait's rule). A job's batch is applied (readable) before
//! the submitting call returns; the writer then fsyncs (sled's sync `flush()`, never
//! `flush_async`) and only then fires `append`'s `LogFlushed` callback or lets `save_vote`
//! return. Jobs that queue up while a flush runs share the next flush (group commit). A crash
//! before the fsync loses only writes nobody was told are durable.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, LogState, RaftLogId, RaftLogReader, StorageError, StorageIOError, Vote,
};
use tokio::sync::oneshot;

use crate::codec;
use crate::engine::{index_key, EngineError, Keyspace, ScanOrder, WriteBatch};
use crate::types::{NodeId, TypeConfig};

const ENTRY_PREFIX: u8 = b'e';
const KEY_VOTE: &[u8] = b"m/vote";
const KEY_COMMITTED: &[u8] = b"m/committed";
const KEY_PURGED: &[u8] = b"m/purged";

/// Name of the engine keyspace that holds the Raft log.
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

/// What to do once a job's batch is applied.
enum Durability {
    /// Nothing: durable with the next flush.
    Lazy,
    /// Flush, then answer.
    Flush(oneshot::Sender<Result<(), String>>),
    /// Flush, then tell openraft the log IO is complete.
    Callback(LogFlushed<TypeConfig>),
}

struct WriteJob {
    batch: WriteBatch,
    applied: oneshot::Sender<Result<(), String>>,
    durability: Durability,
}

/// The single ordered writer of the log keyspace (one OS thread; sled flushes block).
///
/// Dropping the last handle closes the queue and joins the thread, so that once a `LogStore`
/// and its readers are dropped the database can be reopened in the same process.
struct LogWriter {
    queue: Option<mpsc::Sender<WriteJob>>,
    thread: Option<JoinHandle<()>>,
}

impl LogWriter {
    fn start(keyspace: Arc<dyn Keyspace>) -> Result<Self, EngineError> {
        let (tx, rx) = mpsc::channel::<WriteJob>();
        let thread = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || run_writer(keyspace, rx))
            .map_err(|e| EngineError::Io {
                op: "spawn log writer",
                reason: e.to_string(),
            })?;
        Ok(Self {
            queue: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queue `batch`; returns once it is applied (readable). The durability part completes
    /// later, on the writer thread.
    async fn submit(&self, batch: WriteBatch, durability: Durability) -> Result<(), String> {
        let (applied, applied_rx) = oneshot::channel();
        let job = WriteJob {
            batch,
            applied,
            durability,
        };
        let queue = self.queue.as_ref().ok_or("log writer stopped")?;
        queue.send(job).map_err(|_| "log writer stopped")?;
        applied_rx.await.map_err(|_| "log writer stopped")?
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

fn run_writer(keyspace: Arc<dyn Keyspace>, rx: mpsc::Receiver<WriteJob>) {
    while let Ok(first) = rx.recv() {
        // Group commit: apply every job already queued, then flush once for all of them.
        let mut pending = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next {
            let result = keyspace.apply(job.batch).map_err(|e| e.to_string());
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
        let flushed = keyspace.flush().map_err(|e| e.to_string());
        for durability in pending {
            complete(durability, flushed.clone());
        }
    }
}

fn complete(durability: Durability, result: Result<(), String>) {
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

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct WriterError(String);

/// Reads of the log; a cheap clone handed to openraft's replication tasks.
#[derive(Clone)]
pub struct LogReader {
    keyspace: Arc<dyn Keyspace>,
}

impl LogReader {
    async fn blocking<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Keyspace) -> StoreResult<T> + Send + 'static,
    {
        let keyspace = self.keyspace.clone();
        tokio::task::spawn_blocking(move || f(keyspace.as_ref()))
            .await
            .map_err(read_err)?
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        keyspace: &dyn Keyspace,
        key: &[u8],
    ) -> StoreResult<Option<T>> {
        match keyspace.get(key).map_err(read_err)? {
            None => Ok(None),
            Some(bytes) => Ok(Some(codec::decode(&bytes).map_err(read_err)?)),
        }
    }
}

fn bound_index(bound: Bound<&u64>) -> Bound<[u8; 9]> {
    match bound {
        Bound::Included(i) => Bound::Included(index_key(ENTRY_PREFIX, *i)),
        Bound::Excluded(i) => Bound::Excluded(index_key(ENTRY_PREFIX, *i)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn as_slice(bound: &Bound<[u8; 9]>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(k) => Bound::Included(&k[..]),
        Bound::Excluded(k) => Bound::Excluded(&k[..]),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The lowest and one-past-highest possible entry keys.
fn entry_space() -> ([u8; 9], [u8; 1]) {
    (index_key(ENTRY_PREFIX, 0), [ENTRY_PREFIX + 1])
}

fn scan_entries(
    keyspace: &dyn Keyspace,
    lower: Bound<[u8; 9]>,
    upper: Bound<[u8; 9]>,
    order: ScanOrder,
    limit: usize,
) -> StoreResult<Vec<Entry<TypeConfig>>> {
    let (first, end) = entry_space();
    // Clamp to the entry table so meta keys are never read as entries.
    let lower = match lower {
        Bound::Unbounded => Bound::Included(first),
        b => b,
    };
    let rows = match upper {
        Bound::Unbounded => {
            keyspace.scan(as_slice(&lower), Bound::Excluded(&end[..]), order, limit)
        }
        ref u => keyspace.scan(as_slice(&lower), as_slice(u), order, limit),
    }
    .map_err(read_err)?;
    rows.iter()
        .map(|(_, v)| codec::decode(v).map_err(read_err))
        .collect()
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<Entry<TypeConfig>>> {
        let lower = bound_index(range.start_bound());
        let upper = bound_index(range.end_bound());
        self.blocking(move |ks| scan_entries(ks, lower, upper, ScanOrder::Ascending, usize::MAX))
            .await
    }
}

/// The Raft log store. Construct with [`LogStore::new`] and hand it to `Raft::new`.
pub struct LogStore {
    reader: LogReader,
    writer: Arc<LogWriter>,
}

impl LogStore {
    /// A log store on `keyspace` (normally [`LOG_KEYSPACE`] of the node's engine). Starts the
    /// writer thread.
    pub fn new(keyspace: Arc<dyn Keyspace>) -> Result<Self, EngineError> {
        let writer = LogWriter::start(keyspace.clone())?;
        Ok(Self {
            reader: LogReader { keyspace },
            writer: Arc::new(writer),
        })
    }

    async fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), WriterError> {
        self.writer
            .submit(batch, durability)
            .await
            .map_err(WriterError)
    }

    async fn write_durably(&self, batch: WriteBatch) -> Result<(), WriterError> {
        let (tx, rx) = oneshot::channel();
        self.write(batch, Durability::Flush(tx)).await?;
        rx.await
            .map_err(|_| WriterError("log writer stopped".into()))?
            .map_err(WriterError)
    }
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
            .blocking(|ks| {
                let last_purged: Option<LogId<NodeId>> = LogReader::get_meta(ks, KEY_PURGED)?;
                let last = scan_entries(
                    ks,
                    Bound::Unbounded,
                    Bound::Unbounded,
                    ScanOrder::Descending,
                    1,
                )?;
                let last_log_id = match last.first() {
                    Some(entry) => Some(*entry.get_log_id()),
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
        self.write_durably(batch).await.map_err(vote_err)
    }

    async fn read_vote(&mut self) -> StoreResult<Option<Vote<NodeId>>> {
        self.reader
            .blocking(|ks| LogReader::get_meta(ks, KEY_VOTE))
            .await
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StoreResult<()> {
        // Advisory (openraft re-derives it); durable with the next flush.
        let mut batch = WriteBatch::new();
        match committed {
            Some(id) => batch.put(KEY_COMMITTED, codec::encode(&id).map_err(write_err)?),
            None => batch.delete(KEY_COMMITTED),
        }
        self.write(batch, Durability::Lazy).await.map_err(write_err)
    }

    async fn read_committed(&mut self) -> StoreResult<Option<LogId<NodeId>>> {
        self.reader
            .blocking(|ks| LogReader::get_meta(ks, KEY_COMMITTED))
            .await
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StoreResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        // One atomic batch; readable when this returns; the callback fires after the fsync.
        let mut batch = WriteBatch::new();
        for entry in entries {
            let key = index_key(ENTRY_PREFIX, entry.get_log_id().index);
            batch.put(key.to_vec(), codec::encode(&entry).map_err(write_err)?);
        }
        self.write(batch, Durability::Callback(callback))
            .await
            .map_err(write_err)
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        // Remove `log_id.index..` in one atomic batch (from the end: no hole can appear).
        let from = log_id.index;
        let keys = self
            .reader
            .blocking(move |ks| {
                let (_, end) = entry_space();
                let lower = index_key(ENTRY_PREFIX, from);
                let rows = ks
                    .scan(
                        Bound::Included(&lower[..]),
                        Bound::Excluded(&end[..]),
                        ScanOrder::Descending,
                        usize::MAX,
                    )
                    .map_err(read_err)?;
                Ok(rows.into_iter().map(|(k, _)| k).collect::<Vec<_>>())
            })
            .await?;
        let mut batch = WriteBatch::new();
        for key in keys {
            batch.delete(key);
        }
        self.write_durably(batch).await.map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        // First make the new last-purged id durable, then delete: a crash in between leaves
        // stale entries below the purge point (harmless, removed by the next purge), never a
        // log whose start is unknown.
        let mut mark = WriteBatch::new();
        mark.put(KEY_PURGED, codec::encode(&log_id).map_err(write_err)?);
        self.write_durably(mark).await.map_err(write_err)?;

        let upto = log_id.index;
        // Only the first entry is read: the keys below the purge point are consecutive indices,
        // and reading every purged entry (each a whole batch of bodies) only to learn its key
        // copied tens of MiB per purge.
        let keys = self
            .reader
            .blocking(move |ks| {
                let (first, _) = entry_space();
                let upper = index_key(ENTRY_PREFIX, upto);
                let rows = ks
                    .scan(
                        Bound::Included(&first[..]),
                        Bound::Included(&upper[..]),
                        ScanOrder::Ascending,
                        1,
                    )
                    .map_err(read_err)?;
                let oldest = rows
                    .first()
                    .and_then(|(key, _)| crate::engine::parse_index_key(key));
                Ok(oldest
                    .map(|oldest| {
                        (oldest..=upto)
                            .map(|index| index_key(ENTRY_PREFIX, index).to_vec())
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default())
            })
            .await?;
        let mut batch = WriteBatch::new();
        for key in keys {
            batch.delete(key);
        }
        self.write(batch, Durability::Lazy).await.map_err(write_err)
    }
}
