//! When this node last heard from a leader that it accepted: the follower's half of the
//! readiness check (`/healthz`). openraft 0.9 reports `millis_since_quorum_ack` on a leader
//! only; a follower cut off from the leader keeps naming it as `current_leader` until an
//! election, so the time since the last AppendEntries it accepted is the honest signal.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A shared clock of the last accepted AppendEntries (heartbeats included). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct LeaderContact {
    /// Milliseconds after [`epoch`] plus one; 0 means never.
    last: Arc<AtomicU64>,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl LeaderContact {
    /// Records an AppendEntries this node accepted, now.
    pub fn record(&self) {
        let now = epoch().elapsed().as_millis() as u64 + 1;
        self.last.fetch_max(now, Ordering::Relaxed);
    }

    /// How long ago the last accepted AppendEntries arrived; `None` if none has.
    pub fn since_last(&self) -> Option<Duration> {
        match self.last.load(Ordering::Relaxed) {
            0 => None,
            at => {
                let now = epoch().elapsed().as_millis() as u64 + 1;
                Some(Duration::from_millis(now.saturating_sub(at)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LeaderContact;

    #[test]
    fn never_then_recent() {
        let contact = LeaderContact::default();
        assert_eq!(contact.since_last(), None);
        contact.clone().record();
        let since = contact.since_last().expect("recorded through a clone");
        assert!(since.as_millis() < 1000, "{since:?}");
    }
}
