//! The key-value engine under the Raft log store and state machine.
//!
//! The stores speak to a narrow trait of our own ([`Keyspace`]) so the engine can be swapped
//! (redb, fjall, rocksdb) without touching the openraft wiring. The one implementation today is
//! sled 0.34.7 ([`SledEngine`]); its durability rules (rust-stack.md §3.2–§3.3) are kept here:
//!
//! - sled acknowledges writes before they are on disk (background fsync every 500 ms), so every
//!   durability promise calls [`Keyspace::flush`], which is sled's *sync* `flush()`. Callers run
//!   it on a blocking thread. `flush_async` is never used: it deadlocks under concurrent use in
//!   0.34.x (sled #1308, #1357).
//! - `cache_capacity` is set explicitly (sled's default is 1 GiB).
//! - keys that carry an index are big-endian u64 ([`index_key`]) so lexicographic order is
//!   numeric order.

use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Default sled page-cache size: 64 MiB (sled's own default of 1 GiB is far too large for a
/// node that also caches tiles).
pub const DEFAULT_CACHE_CAPACITY: u64 = 64 * 1024 * 1024;

/// An engine failure, in the caller's terms.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The database could not be opened (for sled: another handle on the same path in this
    /// process, a corrupt file, a permission problem).
    #[error("cannot open storage at {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    /// A read, write or flush failed.
    #[error("storage {op} failed: {reason}")]
    Io { op: &'static str, reason: String },
}

impl EngineError {
    fn io(op: &'static str, err: impl fmt::Display) -> Self {
        EngineError::Io {
            op,
            reason: err.to_string(),
        }
    }
}

/// One operation of a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    /// Set `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Remove `key` (absent keys are fine).
    Delete(Vec<u8>),
}

/// Puts and deletes applied to one keyspace all together or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<BatchOp>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queue `key = value`.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::Put(key.into(), value.into()));
    }

    /// Queue the removal of `key`.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::Delete(key.into()));
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The queued operations, in order (a later op on the same key wins).
    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }
}

/// Direction of a range scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanOrder {
    /// Smallest key first.
    Ascending,
    /// Largest key first.
    Descending,
}

/// A key and its value, as returned by [`Keyspace::scan`].
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// One named, ordered key space of the engine (a sled `Tree`).
///
/// All methods may block on disk: async callers run them under `spawn_blocking`.
pub trait Keyspace: Send + Sync + 'static {
    /// The value at `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError>;

    /// Up to `limit` key/value pairs with keys in `(lower, upper)`, in `order`.
    fn scan(
        &self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        order: ScanOrder,
        limit: usize,
    ) -> Result<Vec<KeyValue>, EngineError>;

    /// Apply every operation of `batch` atomically (visible at once, all or nothing after a
    /// crash). Not durable until [`Keyspace::flush`] returns.
    fn apply(&self, batch: WriteBatch) -> Result<(), EngineError>;

    /// Make every write that returned before this call durable (fsync). Blocking.
    fn flush(&self) -> Result<(), EngineError>;
}

/// Settings of the sled engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Directory of the database.
    pub path: PathBuf,
    /// sled page-cache size in bytes.
    pub cache_capacity: u64,
}

impl EngineConfig {
    /// Settings with the default cache size.
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            cache_capacity: DEFAULT_CACHE_CAPACITY,
        }
    }
}

/// The sled database. Cheap to clone; one per path per process (a second open of the same path
/// while any handle, including a keyspace, is alive fails with a lock error).
#[derive(Clone)]
pub struct SledEngine {
    db: sled::Db,
}

impl fmt::Debug for SledEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledEngine").finish_non_exhaustive()
    }
}

impl SledEngine {
    /// Open (or create) the database.
    pub fn open(config: &EngineConfig) -> Result<Self, EngineError> {
        let db = sled::Config::new()
            .path(&config.path)
            .cache_capacity(config.cache_capacity)
            .mode(sled::Mode::LowSpace)
            .open()
            .map_err(|e| EngineError::Open {
                path: config.path.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self { db })
    }

    /// The keyspace called `name`, created if missing.
    pub fn keyspace(&self, name: &str) -> Result<Arc<dyn Keyspace>, EngineError> {
        let tree = self
            .db
            .open_tree(name)
            .map_err(|e| EngineError::io("open keyspace", e))?;
        Ok(Arc::new(SledKeyspace { tree }))
    }

    /// Bytes the database occupies on disk (for metrics: sled is known for space
    /// amplification, rust-stack.md §3.4).
    pub fn size_on_disk(&self) -> Result<u64, EngineError> {
        self.db
            .size_on_disk()
            .map_err(|e| EngineError::io("size_on_disk", e))
    }
}

struct SledKeyspace {
    tree: sled::Tree,
}

impl Keyspace for SledKeyspace {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        self.tree
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| EngineError::io("get", e))
    }

    fn scan(
        &self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        order: ScanOrder,
        limit: usize,
    ) -> Result<Vec<KeyValue>, EngineError> {
        let range = self.tree.range::<&[u8], _>((lower, upper));
        let mut out = Vec::new();
        let mut push = |item: sled::Result<(sled::IVec, sled::IVec)>| -> Result<bool, EngineError> {
            let (k, v) = item.map_err(|e| EngineError::io("scan", e))?;
            out.push((k.to_vec(), v.to_vec()));
            Ok(out.len() < limit)
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        match order {
            ScanOrder::Ascending => {
                for item in range {
                    if !push(item)? {
                        break;
                    }
                }
            }
            ScanOrder::Descending => {
                for item in range.rev() {
                    if !push(item)? {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    fn apply(&self, batch: WriteBatch) -> Result<(), EngineError> {
        let mut sled_batch = sled::Batch::default();
        for op in batch.ops {
            match op {
                BatchOp::Put(k, v) => sled_batch.insert(k, v),
                BatchOp::Delete(k) => sled_batch.remove(k),
            }
        }
        self.tree
            .apply_batch(sled_batch)
            .map_err(|e| EngineError::io("apply batch", e))
    }

    fn flush(&self) -> Result<(), EngineError> {
        // Sync flush: fsyncs the whole Db (all trees share one log). Never `flush_async`.
        self.tree
            .flush()
            .map(|_| ())
            .map_err(|e| EngineError::io("flush", e))
    }
}

/// Up to `limit` key/value pairs whose key starts with the one-byte table `prefix`, ascending.
pub fn scan_prefix(
    keyspace: &dyn Keyspace,
    prefix: u8,
    limit: usize,
) -> Result<Vec<KeyValue>, EngineError> {
    let lower = [prefix];
    let upper = [prefix.saturating_add(1)];
    keyspace.scan(
        Bound::Included(&lower[..]),
        Bound::Excluded(&upper[..]),
        ScanOrder::Ascending,
        limit,
    )
}

/// The big-endian key of a log or leaf index under a one-byte table prefix, so that keys sort
/// numerically (little-endian would break range scans past 255).
pub fn index_key(prefix: u8, index: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = prefix;
    key[1..].copy_from_slice(&index.to_be_bytes());
    key
}

/// The index of a key built by [`index_key`], if it has that shape.
pub fn parse_index_key(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.get(1..9)?.try_into().ok()?;
    if key.len() != 9 {
        return None;
    }
    Some(u64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keys_sort_numerically_past_255() {
        let a = index_key(b'e', 255);
        let b = index_key(b'e', 256);
        assert!(a < b);
        assert_eq!(parse_index_key(&b), Some(256));
    }

    #[test]
    fn batch_is_applied_and_scanned_in_both_orders() {
        let dir = tempfile::tempdir().unwrap();
        let engine = SledEngine::open(&EngineConfig::new(dir.path())).unwrap();
        let ks = engine.keyspace("t").unwrap();
        let mut batch = WriteBatch::new();
        for i in [1u64, 300, 2] {
            batch.put(index_key(b'e', i).to_vec(), i.to_be_bytes().to_vec());
        }
        batch.delete(index_key(b'e', 2).to_vec());
        ks.apply(batch).unwrap();
        ks.flush().unwrap();
        let lo = index_key(b'e', 0);
        let all = ks
            .scan(
                Bound::Included(&lo[..]),
                Bound::Unbounded,
                ScanOrder::Ascending,
                usize::MAX,
            )
            .unwrap();
        let keys: Vec<_> = all
            .iter()
            .map(|(k, _)| parse_index_key(k).unwrap())
            .collect();
        assert_eq!(keys, vec![1, 300]);
        let last = ks
            .scan(
                Bound::Included(&lo[..]),
                Bound::Unbounded,
                ScanOrder::Descending,
                1,
            )
            .unwrap();
        assert_eq!(parse_index_key(&last[0].0), Some(300));
    }
}
