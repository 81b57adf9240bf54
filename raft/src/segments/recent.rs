//! The newest records of a log, kept in memory after their append, up to a byte budget.
//!
//! Why: both logs are read back soon after they are written. Every node reads each Raft entry
//! back to apply it and a leader reads it again for each follower it replicates to; the
//! integrator reads each leaf body back within a step of its apply. From the files, each such
//! read is a `pread` on the blocking pool, a page-cache copy and a checksum per record: in a
//! profile of a three-node cluster, `SegmentLog::read` was 2.6 % of all CPU. From here it is a
//! copy out of memory.
//!
//! The records held are always the log's last ones: they end at the log's `next` index, and
//! every mutation of the log's window (append, truncate, purge, reset) updates them under the
//! same lock as the offset table, so a read sees one consistent window.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

/// Bytes charged per record beyond its payload (its `Arc` and the queue slot), so that a
/// budget also bounds the count of small or empty records.
const RECORD_OVERHEAD: usize = 32;

pub(super) struct RecentRecords {
    /// Index of `records[0]`; the records end at the log's `next` index.
    first: u64,
    records: VecDeque<Arc<[u8]>>,
    /// Sum of [`charge`] over `records`.
    bytes: usize,
    budget: usize,
}

fn charge(record: &[u8]) -> usize {
    record.len() + RECORD_OVERHEAD
}

impl RecentRecords {
    /// None held; the log continues at `next`.
    pub(super) fn new(next: u64, budget: usize) -> Self {
        Self {
            first: next,
            records: VecDeque::new(),
            bytes: 0,
            budget,
        }
    }

    fn end(&self) -> u64 {
        self.first + self.records.len() as u64
    }

    /// Forgets everything; the log continues at `next`.
    pub(super) fn clear(&mut self, next: u64) {
        self.records.clear();
        self.bytes = 0;
        self.first = next;
    }

    /// `records` were appended at `first`, the log's end. The oldest records held go first when
    /// the budget is exceeded; a record larger than the whole budget is not held.
    pub(super) fn push(&mut self, first: u64, records: &[&[u8]]) {
        if first != self.end() {
            self.clear(first);
        }
        for (offset, record) in records.iter().enumerate() {
            let cost = charge(record);
            if cost > self.budget {
                self.clear(first + offset as u64 + 1);
                continue;
            }
            self.records.push_back(Arc::from(*record));
            self.bytes += cost;
            while self.bytes > self.budget {
                self.pop_front();
            }
        }
    }

    fn pop_front(&mut self) {
        if let Some(record) = self.records.pop_front() {
            self.bytes -= charge(&record);
            self.first += 1;
        }
    }

    /// Records from `from` on were cut from the log.
    pub(super) fn truncate_from(&mut self, from: u64) {
        if from <= self.first {
            self.clear(from);
            return;
        }
        while self.end() > from {
            if let Some(record) = self.records.pop_back() {
                self.bytes -= charge(&record);
            }
        }
    }

    /// Records below `to` were purged from the log.
    pub(super) fn purge_to(&mut self, to: u64) {
        while self.first < to && !self.records.is_empty() {
            self.pop_front();
        }
    }

    /// The part of `range` held here: where it starts (`range.end` if none of it is) and its
    /// records, shared. `range` must lie within the log's window.
    pub(super) fn tail_of(&self, range: Range<u64>) -> (u64, Vec<Arc<[u8]>>) {
        let start = range.start.max(self.first);
        if start >= range.end {
            return (range.end, Vec::new());
        }
        let from = (start - self.first) as usize;
        // The records end at the log's end, which `range` does not pass; clamped all the same
        // so that a broken caller gets a short read (which the callers check) and no panic.
        let to = ((range.end - self.first) as usize).min(self.records.len());
        if from >= to {
            return (range.end, Vec::new());
        }
        (start, self.records.range(from..to).cloned().collect())
    }

    /// Records held, for tests.
    #[cfg(test)]
    pub(super) fn held(&self) -> Range<u64> {
        self.first..self.end()
    }
}
