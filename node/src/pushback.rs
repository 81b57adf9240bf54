//! Bounded work (DESIGN.md invariant 6): a node admits a new entry only while the entries it has
//! in flight (admitted, not yet answered by the sequencer) plus those committed but not yet
//! integrated stay under `--pushback-max-outstanding`; beyond it a write answers 503 at once
//! rather than queueing without limit.
//!
//! The admission is one atomic reservation, so concurrent requests cannot overshoot the bound.
//! Both the public write path and the leader's forwarding route admit through here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rekor_raft::StateReader;
use tokio::sync::watch;

use crate::served::Served;

/// Shared admission control. Cheap to clone.
#[derive(Clone)]
pub struct Pushback {
    in_flight: Arc<AtomicU64>,
    max_outstanding: u64,
    state_machine: StateReader,
    served: watch::Receiver<Served>,
}

/// One admitted entry; releases its slot when dropped (answered, failed or cancelled).
pub struct Admission {
    in_flight: Arc<AtomicU64>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Pushback {
    pub fn new(
        max_outstanding: u64,
        state_machine: StateReader,
        served: watch::Receiver<Served>,
    ) -> Self {
        Self {
            in_flight: Arc::new(AtomicU64::new(0)),
            max_outstanding,
            state_machine,
            served,
        }
    }

    /// Committed entries this node has not integrated yet.
    fn unintegrated(&self) -> u64 {
        let integrated = self.served.borrow().integrated_size;
        self.state_machine.applied().size.saturating_sub(integrated)
    }

    /// Admits one entry, or `None` when the bound is reached.
    pub fn try_admit(&self) -> Option<Admission> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let admission = Admission {
            in_flight: self.in_flight.clone(),
        };
        if before + self.unintegrated() >= self.max_outstanding {
            return None; // dropping `admission` gives the slot back
        }
        Some(admission)
    }

    /// Entries admitted and not yet answered (for status and metrics).
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Acquire)
    }
}
