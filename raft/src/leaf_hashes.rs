//! The leaf hashes of the entries applied last, held in memory for the integrator.
//!
//! The state machine hashes every logged body (`leaf_hash`) for its compact range; the integrator
//! needs the same hashes for the tiles. Keeping the newest [`RECENT_LEAF_HASHES`] of them saves
//! the integrator a second SHA-256 pass over each body (about 1 % of a three-node cluster's CPU
//! under load, docs/benchmarks.md).
//!
//! Only hashes this process computed from bodies it holds are recorded, always beside them, so
//! they are exactly the hashes of the bodies the integrator reads. Whatever is not held (after a
//! restart, a snapshot install, or beyond the window) is simply absent: the caller hashes the
//! bodies itself. A gap in what is recorded empties the window rather than leaving stale hashes.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Mutex;

use rekor_storage::merkle::Hash;

/// How many of the newest leaf hashes are held (2 MiB): a few integration steps' worth.
pub const RECENT_LEAF_HASHES: usize = 1 << 16;

/// The newest applied leaf hashes, by index (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct RecentLeafHashes {
    window: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    /// Index of `hashes[0]`.
    first: u64,
    hashes: VecDeque<Hash>,
}

impl Window {
    fn end(&self) -> u64 {
        self.first + self.hashes.len() as u64
    }
}

impl RecentLeafHashes {
    /// Records the hashes of leaves `first..first + hashes.len()`. A re-apply of indices already
    /// recorded replaces them and everything after; a gap starts the window afresh.
    pub(crate) fn record(&self, first: u64, hashes: &[Hash]) {
        let Ok(mut window) = self.window.lock() else {
            return;
        };
        if first >= window.first && first <= window.end() {
            let keep = (first - window.first) as usize;
            window.hashes.truncate(keep);
        } else {
            window.hashes.clear();
            window.first = first;
        }
        window.hashes.extend(hashes.iter().copied());
        let excess = window.hashes.len().saturating_sub(RECENT_LEAF_HASHES);
        if excess > 0 {
            window.hashes.drain(..excess);
            window.first += excess as u64;
        }
    }

    /// The hashes of leaves `range`, if every one of them is held.
    pub(crate) fn get(&self, range: Range<u64>) -> Option<Vec<Hash>> {
        let window = self.window.lock().ok()?;
        if range.start < window.first || range.end > window.end() || range.start > range.end {
            return None;
        }
        let start = (range.start - window.first) as usize;
        let end = (range.end - window.first) as usize;
        Some(window.hashes.range(start..end).copied().collect())
    }

    /// Forgets every hash (a snapshot replaced the leaves held).
    pub(crate) fn clear(&self) {
        if let Ok(mut window) = self.window.lock() {
            window.hashes.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(range: Range<u64>) -> Vec<Hash> {
        range.map(|i| [i as u8; 32]).collect()
    }

    #[test]
    fn contiguous_records_are_served_by_range() {
        let recent = RecentLeafHashes::default();
        recent.record(10, &hashes(10..20));
        recent.record(20, &hashes(20..25));
        assert_eq!(recent.get(12..22), Some(hashes(12..22)));
        assert_eq!(recent.get(10..25), Some(hashes(10..25)));
        assert_eq!(recent.get(25..25), Some(Vec::new()));
        assert_eq!(recent.get(9..12), None, "below the window");
        assert_eq!(recent.get(20..26), None, "beyond the window");
    }

    #[test]
    fn a_gap_starts_the_window_afresh() {
        let recent = RecentLeafHashes::default();
        recent.record(0, &hashes(0..10));
        recent.record(15, &hashes(15..20));
        assert_eq!(recent.get(5..10), None);
        assert_eq!(recent.get(15..20), Some(hashes(15..20)));
    }

    #[test]
    fn a_reapply_replaces_the_hashes_from_its_first_index() {
        let recent = RecentLeafHashes::default();
        recent.record(0, &hashes(0..10));
        let other: Vec<Hash> = (5..8).map(|i| [100 + i as u8; 32]).collect();
        recent.record(5, &other);
        assert_eq!(recent.get(0..8).map(|h| h[5..].to_vec()), Some(other));
        assert_eq!(recent.get(8..10), None, "the old hashes after it are gone");
    }

    #[test]
    fn the_window_keeps_only_the_newest_hashes() {
        let recent = RecentLeafHashes::default();
        let total = RECENT_LEAF_HASHES as u64 + 100;
        for start in (0..total).step_by(1000) {
            recent.record(start, &hashes(start..(start + 1000).min(total)));
        }
        assert_eq!(recent.get(99..100), None);
        assert_eq!(recent.get(100..total), Some(hashes(100..total)));
    }

    #[test]
    fn clearing_forgets_everything() {
        let recent = RecentLeafHashes::default();
        recent.record(0, &hashes(0..10));
        recent.clear();
        assert_eq!(recent.get(0..1), None);
    }
}
