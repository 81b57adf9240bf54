//! What this node serves: its integrated size and the newest committed checkpoint that its own
//! tiles fully back (DESIGN.md invariant 4, "readable checkpoints").
//!
//! The integrator actor owns the `watch::Sender`; the read routes and the publisher hold
//! receivers, and requests waiting for their entry to be covered wait in [`CoverageWaiters`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rekor_storage::integrate::RightEdge;
use rekor_storage::merkle::Hash;
use tokio::sync::{oneshot, watch};

/// A committed, signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedCheckpoint {
    pub size: u64,
    pub root: Hash,
    /// The signed note text, exactly as committed.
    pub text: Arc<str>,
    /// Whether it carries the frozen marker line (the shard is sealed).
    pub frozen: bool,
}

impl ServedCheckpoint {
    /// From a checkpoint the state machine accepted.
    pub fn from_published(published: rekor_raft::PublishedCheckpoint) -> Self {
        let frozen = rekor_storage::note::Note::parse(published.text.as_bytes())
            .ok()
            .and_then(|note| rekor_storage::checkpoint::Checkpoint::parse_body(&note.text).ok())
            .is_some_and(|checkpoint| checkpoint.is_frozen());
        Self {
            size: published.size,
            root: published.root,
            text: published.text.into(),
            frozen,
        }
    }
}

/// The node's externally visible state. The sizes only ever grow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Served {
    /// Tree size this node has integrated: every full tile and bundle below it is durable in
    /// this node's tile store; its partial objects are in `right_edge` or in the store.
    pub integrated_size: u64,
    /// Root at `integrated_size`.
    pub integrated_root: Hash,
    /// The partial objects at `integrated_size`, when the integrator keeps them in memory (a
    /// per-node tile store: they are made durable four times a second, see
    /// [`crate::integrator`]); `None` when they are in the tile store.
    pub right_edge: Option<Arc<RightEdge>>,
    /// The checkpoint this node serves; its size is ≤ `integrated_size`.
    pub checkpoint: Option<ServedCheckpoint>,
}

/// Requests waiting for a served checkpoint to cover their entry, each woken once: when one does.
///
/// Each waiting request used to watch [`Served`] itself, so every change (each integration step
/// and each checkpoint, dozens a second) woke every waiting request (a thousand under load) to
/// find that most were still not covered: tens of thousands of task wake-ups a second spread over
/// the HTTP workers. Here one task follows the served state and, for each new checkpoint, takes
/// out of an index-ordered map exactly the requests it covers.
#[derive(Clone)]
pub struct CoverageWaiters {
    inner: Arc<Mutex<Waiting>>,
}

#[derive(Default)]
struct Waiting {
    /// The newest served checkpoint.
    latest: Option<ServedCheckpoint>,
    /// Entry index → the requests waiting for it to be covered.
    by_index: BTreeMap<u64, Vec<oneshot::Sender<ServedCheckpoint>>>,
    /// Senders in `by_index`.
    count: usize,
    /// The served state's sender is gone (the integrator stopped): nothing will be covered.
    closed: bool,
}

/// Waiters held before the ones whose requests gave up (timed out, disconnected) are dropped.
const PRUNE_ABOVE: usize = 65_536;

impl CoverageWaiters {
    /// Follows `served` on a task of the current tokio runtime.
    pub fn spawn(mut served: watch::Receiver<Served>) -> Self {
        let waiters = Self {
            inner: Arc::new(Mutex::new(Waiting::default())),
        };
        let follower = waiters.clone();
        tokio::spawn(async move {
            loop {
                let checkpoint = served.borrow_and_update().checkpoint.clone();
                if let Some(checkpoint) = checkpoint {
                    follower.publish(checkpoint);
                }
                if served.changed().await.is_err() {
                    follower.close();
                    return;
                }
            }
        });
        waiters
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        // Every critical section leaves the map consistent; a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wakes the requests `checkpoint` covers (entries below its size).
    fn publish(&self, checkpoint: ServedCheckpoint) {
        let covered = {
            let mut waiting = self.lock();
            let still_waiting = waiting.by_index.split_off(&checkpoint.size);
            let covered = std::mem::replace(&mut waiting.by_index, still_waiting);
            waiting.count -= covered.values().map(Vec::len).sum::<usize>();
            waiting.latest = Some(checkpoint.clone());
            covered
        };
        for sender in covered.into_values().flatten() {
            // A request that gave up dropped its receiver; nothing to do.
            let _ = sender.send(checkpoint.clone());
        }
    }

    fn close(&self) {
        let mut waiting = self.lock();
        waiting.closed = true;
        waiting.by_index.clear();
        waiting.count = 0;
    }

    /// Waits until the served checkpoint covers `index` (its size is greater than `index`).
    /// Returns `None` on timeout or when the integrator has stopped.
    pub async fn wait_covering(&self, index: u64, timeout: Duration) -> Option<ServedCheckpoint> {
        let receiver = {
            let mut waiting = self.lock();
            if let Some(latest) = waiting.latest.as_ref().filter(|c| c.size > index) {
                return Some(latest.clone());
            }
            if waiting.closed {
                return None;
            }
            if waiting.count >= PRUNE_ABOVE {
                waiting.prune();
            }
            let (sender, receiver) = oneshot::channel();
            waiting.by_index.entry(index).or_default().push(sender);
            waiting.count += 1;
            receiver
        };
        match tokio::time::timeout(timeout, receiver).await {
            Ok(Ok(checkpoint)) => Some(checkpoint),
            _ => None,
        }
    }

    /// Requests waiting now.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.lock().count
    }
}

impl Waiting {
    /// Drops the waiters whose requests are gone.
    fn prune(&mut self) {
        self.by_index.retain(|_, senders| {
            senders.retain(|sender| !sender.is_closed());
            !senders.is_empty()
        });
        self.count = self.by_index.values().map(Vec::len).sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `condition` until it holds; fails the test after 5 s.
    async fn wait_until(condition: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !condition() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "condition never held"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn checkpoint(size: u64) -> ServedCheckpoint {
        ServedCheckpoint {
            size,
            root: Hash::default(),
            text: format!("checkpoint {size}").into(),
            frozen: false,
        }
    }

    fn served_at(size: u64) -> Served {
        Served {
            integrated_size: size,
            integrated_root: Hash::default(),
            right_edge: None,
            checkpoint: Some(checkpoint(size)),
        }
    }

    #[tokio::test]
    async fn a_waiter_is_woken_by_the_first_checkpoint_that_covers_it() {
        let (sender, receiver) = watch::channel(Served::default());
        let waiters = CoverageWaiters::spawn(receiver);
        let long = Duration::from_secs(10);
        let (w5, w9) = (waiters.clone(), waiters.clone());
        let five = tokio::spawn(async move { w5.wait_covering(5, long).await });
        let nine = tokio::spawn(async move { w9.wait_covering(9, long).await });
        wait_until(|| waiters.waiting() == 2).await;

        // Size 6 covers index 5 but not 9.
        sender.send_replace(served_at(6));
        assert_eq!(five.await.unwrap(), Some(checkpoint(6)));
        wait_until(|| waiters.waiting() == 1).await;
        assert!(!nine.is_finished());

        sender.send_replace(served_at(10));
        assert_eq!(nine.await.unwrap(), Some(checkpoint(10)));
        assert_eq!(waiters.waiting(), 0);

        // Already covered: answered at once, nothing registered.
        assert_eq!(
            waiters.wait_covering(3, Duration::ZERO).await,
            Some(checkpoint(10))
        );
        assert_eq!(waiters.waiting(), 0);
    }

    #[tokio::test]
    async fn timeouts_and_a_stopped_integrator_answer_none() {
        let (sender, receiver) = watch::channel(served_at(2));
        let waiters = CoverageWaiters::spawn(receiver);
        wait_until(|| waiters.lock().latest.is_some()).await;
        assert_eq!(
            waiters.wait_covering(7, Duration::from_millis(20)).await,
            None
        );
        let w = waiters.clone();
        let pending =
            tokio::spawn(async move { w.wait_covering(8, Duration::from_secs(10)).await });
        wait_until(|| waiters.waiting() == 2).await;
        drop(sender);
        assert_eq!(pending.await.unwrap(), None);
        assert_eq!(
            waiters.wait_covering(9, Duration::from_secs(10)).await,
            None
        );
        // A covered index is still answered from the last checkpoint.
        assert_eq!(
            waiters.wait_covering(1, Duration::ZERO).await,
            Some(checkpoint(2))
        );
    }

    #[test]
    fn prune_drops_waiters_whose_requests_left() {
        let mut waiting = Waiting::default();
        let (kept, _alive) = oneshot::channel::<ServedCheckpoint>();
        let (gone, dropped) = oneshot::channel::<ServedCheckpoint>();
        drop(dropped);
        waiting.by_index.entry(4).or_default().push(kept);
        waiting.by_index.entry(5).or_default().push(gone);
        waiting.count = 2;
        waiting.prune();
        assert_eq!(waiting.count, 1);
        assert_eq!(
            waiting.by_index.keys().copied().collect::<Vec<_>>(),
            vec![4]
        );
    }
}
