//! The sequencer actor: batches validated entries and proposes one Raft `Append` per batch.
//!
//! Runs on every node but only succeeds on the leader: `client_write` on a follower fails with
//! `ForwardToLeader`, which the caller turns into a forward (see `backend`). A batch is flushed when
//! it reaches `max_batch` entries or `max_batch_bytes` bytes of entry bodies, or when its oldest
//! entry has waited `max_age`, or when no entry has arrived for [`QUIET_GAP`] and no earlier batch
//! is still in Raft. The byte bound keeps one Raft entry (one batch) far below the peers'
//! AppendEntries body cap, so replication can always make progress one entry at a time.
//!
//! Why the quiet gap: every batch costs a Raft entry (an fsync on each node), an integration step,
//! tile writes and a checkpoint whatever its size, so under load larger batches cost less CPU per
//! entry (docs/benchmarks.md), which argues for a long `max_age`. But a batch that waits while
//! nothing more is coming only adds latency: a lone write, or a few clients whose answers came
//! back together and whose next requests arrive in one burst. Arrivals that pause for the gap
//! close the batch, but only while no batch is in Raft: a busy leader sees pauses too (forwarded
//! entries come in bursts), and there a batch in flight means the pipeline is full anyway, so the
//! next batch fills to the age or the bounds.
//!
//! Ownership: the actor alone owns `pending`; the batch futures it spawns own their entries and
//! reply channels. Durability: an outcome is sent only after `client_write` returned, i.e. after
//! the batch was committed on a quorum (each member fsync'd it) and applied on this node.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use openraft::error::{ClientWriteError, RaftError};
use rekor_raft::types::{
    AppendOutcome, Command, CommandResponse, NodeAddress, Raft, SequencedEntry,
};
use tokio::sync::{oneshot, Semaphore};

use crate::handover::SteppingDown;
use crate::metrics::NodeMetrics;

/// Why an entry could not be sequenced here.
#[derive(Debug, Clone, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum SequenceError {
    /// This node is not the leader; `leader` is who is, if known.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<(u64, NodeAddress)> },
    /// Raft could not commit the batch (no quorum, shutting down, ...).
    #[error("raft: {0}")]
    Raft(String),
    /// The leader's pushback bound is reached (503).
    #[error("reached max pushback")]
    Overloaded,
    /// The log is frozen: nothing more is logged.
    #[error("the log is frozen")]
    Frozen,
    /// The state machine answered something that is not an `Appended` of the batch's length.
    #[error("unexpected state machine response")]
    UnexpectedResponse,
    /// The entry is refused for good: the leader's checks of a forwarded entry, or the state
    /// machine's (an entry no integrator could write). Retrying cannot help.
    #[error("entry refused: {0}")]
    Refused(String),
}

/// Sequence one entry; resolves once its batch is committed and applied.
#[derive(Message)]
#[rtype(result = "Result<AppendOutcome, SequenceError>")]
pub struct Sequence(pub SequencedEntry);

type Reply = oneshot::Sender<Result<AppendOutcome, SequenceError>>;

pub struct Sequencer {
    raft: Raft,
    max_batch: usize,
    max_batch_bytes: usize,
    max_age: Duration,
    pending: Vec<(SequencedEntry, Reply)>,
    /// Body bytes in `pending`.
    pending_bytes: usize,
    flush_timer: Option<SpawnHandle>,
    /// Checks for a pause in arrivals ([`QUIET_GAP`]) while a batch is pending.
    gap_timer: Option<SpawnHandle>,
    last_arrival: Instant,
    /// Bounds the batches in flight in Raft at once (bounded work, DESIGN.md invariant 6).
    in_flight: Arc<Semaphore>,
    /// Batches flushed and not yet answered (waiting for a permit or in Raft).
    batches_outstanding: Arc<AtomicUsize>,
    metrics: NodeMetrics,
    /// Raised while leadership is handed over: batches are answered `NotLeader`, not proposed.
    stepping_down: SteppingDown,
}

/// Batches in flight in Raft at once: enough to keep the pipeline full across an fsync.
const MAX_BATCHES_IN_FLIGHT: usize = 8;

/// A pending batch goes once no entry has arrived for this long: the clients that had requests
/// to send have sent them. Saturated, entries arrive every few microseconds and never pause this
/// long; a burst of requests from clients answered by the same checkpoint arrives within it.
pub const QUIET_GAP: Duration = Duration::from_millis(2);

/// Default bound of the entry bodies in one batch (one Raft entry): 4 MiB, 1/16 of the peers'
/// AppendEntries body cap (`rekor_raft::server::DEFAULT_MAX_RPC_BODY`).
pub const DEFAULT_MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Batching limits of the [`Sequencer`].
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Most entries in one batch.
    pub max_entries: usize,
    /// Most entry-body bytes in one batch (a single larger entry still goes, alone).
    pub max_bytes: usize,
    /// Longest an entry waits for its batch to fill.
    pub max_age: Duration,
}

impl Sequencer {
    pub fn new(raft: Raft, limits: BatchLimits, metrics: NodeMetrics) -> Self {
        let max_batch = limits.max_entries.max(1);
        Self {
            raft,
            max_batch,
            max_batch_bytes: limits.max_bytes,
            max_age: limits.max_age,
            pending: Vec::with_capacity(max_batch),
            pending_bytes: 0,
            flush_timer: None,
            gap_timer: None,
            last_arrival: Instant::now(),
            in_flight: Arc::new(Semaphore::new(MAX_BATCHES_IN_FLIGHT)),
            batches_outstanding: Arc::new(AtomicUsize::new(0)),
            metrics,
            stepping_down: SteppingDown::default(),
        }
    }

    /// Share the node's hand-over flag ([`crate::handover`]).
    pub fn with_stepping_down(mut self, stepping_down: SteppingDown) -> Self {
        self.stepping_down = stepping_down;
        self
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.flush_timer.take() {
            ctx.cancel_future(timer);
        }
        if let Some(timer) = self.gap_timer.take() {
            ctx.cancel_future(timer);
        }
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.pending, Vec::with_capacity(self.max_batch));
        self.pending_bytes = 0;
        let raft = self.raft.clone();
        let in_flight = self.in_flight.clone();
        let metrics = self.metrics.clone();
        let stepping_down = self.stepping_down.clone();
        let outstanding = Outstanding::count(&self.batches_outstanding);
        tokio::spawn(async move {
            let _outstanding = outstanding;
            let Ok(_permit) = in_flight.acquire_owned().await else {
                return;
            };
            let count = batch.len();
            let (entries, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let Some(_write) = stepping_down.admit() else {
                for reply in replies {
                    let _ = reply.send(Err(SequenceError::NotLeader { leader: None }));
                }
                return;
            };
            let started = Instant::now();
            let result = propose(&raft, entries).await;
            metrics
                .batch_commit_seconds
                .observe(started.elapsed().as_secs_f64());
            metrics.batch_size.observe(count as f64);
            match result {
                Ok(outcomes) => {
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(match outcome {
                            AppendOutcome::Refused { reason } => {
                                Err(SequenceError::Refused(reason.to_string()))
                            }
                            outcome => Ok(outcome),
                        });
                    }
                }
                Err(error) => {
                    for reply in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
        });
    }
}

/// One flushed batch counted in [`Sequencer::batches_outstanding`] until dropped.
struct Outstanding(Arc<AtomicUsize>);

impl Outstanding {
    fn count(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Self(counter.clone())
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Sequencer {
    /// Arms the quiet-gap check to fire `after`: it flushes if nothing arrived since and no
    /// batch is outstanding, else checks again (one timer per gap, not one per entry).
    fn arm_gap_check(&mut self, after: Duration, ctx: &mut Context<Self>) {
        self.gap_timer = Some(ctx.run_later(after, |act, ctx| {
            act.gap_timer = None;
            if act.pending.is_empty() {
                return;
            }
            let quiet_for = act.last_arrival.elapsed();
            if quiet_for < QUIET_GAP {
                act.arm_gap_check(QUIET_GAP - quiet_for, ctx);
            } else if act.batches_outstanding.load(Ordering::Acquire) > 0 {
                act.arm_gap_check(QUIET_GAP, ctx);
            } else {
                act.flush(ctx);
            }
        }));
    }
}

async fn propose(
    raft: &Raft,
    entries: Vec<SequencedEntry>,
) -> Result<Vec<AppendOutcome>, SequenceError> {
    let expected = entries.len();
    match raft.client_write(Command::Append { entries }).await {
        Ok(response) => match response.data {
            CommandResponse::Appended(outcomes) if outcomes.len() == expected => Ok(outcomes),
            CommandResponse::Frozen => Err(SequenceError::Frozen),
            _ => Err(SequenceError::UnexpectedResponse),
        },
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
            Err(SequenceError::NotLeader {
                leader: forward.leader_id.zip(forward.leader_node),
            })
        }
        Err(error) => Err(SequenceError::Raft(error.to_string())),
    }
}

impl Actor for Sequencer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Requests wait here rather than in an unbounded queue; pushback happens before this.
        ctx.set_mailbox_capacity(4096);
    }
}

impl Handler<Sequence> for Sequencer {
    type Result = ResponseFuture<Result<AppendOutcome, SequenceError>>;

    fn handle(&mut self, Sequence(entry): Sequence, ctx: &mut Self::Context) -> Self::Result {
        let (reply, answer) = oneshot::channel();
        let bytes = entry.body.len();
        // An entry that would take the batch over its byte bound starts the next one.
        if !self.pending.is_empty() && self.pending_bytes + bytes > self.max_batch_bytes {
            self.flush(ctx);
        }
        self.pending.push((entry, reply));
        self.pending_bytes += bytes;
        self.last_arrival = Instant::now();
        if self.pending.len() >= self.max_batch || self.pending_bytes >= self.max_batch_bytes {
            self.flush(ctx);
        } else {
            if self.flush_timer.is_none() {
                self.flush_timer = Some(ctx.run_later(self.max_age, |act, ctx| {
                    act.flush_timer = None;
                    act.flush(ctx);
                }));
            }
            if self.gap_timer.is_none() {
                self.arm_gap_check(QUIET_GAP, ctx);
            }
        }
        Box::pin(async move {
            answer
                .await
                .unwrap_or(Err(SequenceError::Raft("sequencer stopped".into())))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use rekor_raft::types::{Refusal, MAX_ENTRY_BODY};
    use rekor_raft::{
        build_config, open_stores, ClusterSecret, EngineConfig, HttpNetwork, NetworkConfig,
        RaftTuning, SledEngine, StateReader,
    };

    use super::*;

    /// A one-node Raft on real stores under `dir`, initialised and leading.
    async fn single_node_raft(dir: &Path) -> (Raft, StateReader) {
        let engine = SledEngine::open(&EngineConfig::new(dir.join("raft"))).unwrap();
        let (log, sm) = open_stores(&engine, dir).unwrap();
        let reader = sm.reader();
        let peers = rekor_raft::PeerClients::plain(
            1,
            ClusterSecret::new("s"),
            rekor_raft::PEER_CONNECT_TIMEOUT,
            None,
        )
        .unwrap();
        let network = HttpNetwork::new(NetworkConfig::new(1), std::sync::Arc::new(peers));
        let config = Arc::new(build_config(&RaftTuning::default()).unwrap());
        let raft = Raft::new(1, config, network, log, sm).await.unwrap();
        raft.initialize(BTreeMap::from([(1, NodeAddress::default())]))
            .await
            .unwrap();
        raft.wait(Some(Duration::from_secs(20)))
            .metrics(|m| m.current_leader == Some(1), "node 1 leads")
            .await
            .unwrap();
        (raft, reader)
    }

    /// A sequencer on `raft` with its own metrics registry, not started.
    fn sequencer(raft: &Raft, limits: BatchLimits) -> Sequencer {
        let metrics = NodeMetrics::register(&prometheus::Registry::new()).unwrap();
        Sequencer::new(raft.clone(), limits, metrics)
    }

    fn start(raft: &Raft, max_entries: usize, max_bytes: usize) -> Addr<Sequencer> {
        let limits = BatchLimits {
            max_entries,
            max_bytes,
            // Never by age here: every flush below is by count or bytes.
            max_age: Duration::from_secs(3600),
        };
        sequencer(raft, limits).start()
    }

    /// Sends every body at once and waits (bounded) for all outcomes, in order.
    async fn sequence_all(
        sequencer: &Addr<Sequencer>,
        bodies: Vec<Vec<u8>>,
    ) -> Vec<Result<AppendOutcome, SequenceError>> {
        let sends = bodies
            .into_iter()
            .map(|body| sequencer.send(Sequence(SequencedEntry::new(body))));
        tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(sends))
            .await
            .expect("every entry is answered")
            .into_iter()
            .map(|sent| sent.expect("the sequencer answers"))
            .collect()
    }

    /// Issue #12 item 6: with up to `max_entries` waiting, a batch still never carries more
    /// than `max_bytes` of bodies. Each batch is one Append, whose end is a batch boundary of
    /// the state machine.
    #[actix_rt::test]
    async fn batches_never_exceed_the_byte_bound() {
        const BODY: usize = 10_000;
        const ENTRIES: usize = 39;
        const MAX_BYTES: usize = 3 * BODY;
        let dir = tempfile::tempdir().unwrap();
        let (raft, reader) = single_node_raft(dir.path()).await;
        // The count bound alone would make one batch of all of them.
        let sequencer = start(&raft, ENTRIES, MAX_BYTES);
        let bodies = (0..ENTRIES)
            .map(|i| {
                let mut body = vec![b'x'; BODY];
                body[..8].copy_from_slice(&(i as u64).to_be_bytes());
                body
            })
            .collect();
        let outcomes = sequence_all(&sequencer, bodies).await;
        let indices: Vec<u64> = outcomes
            .iter()
            .map(|outcome| match outcome {
                Ok(AppendOutcome::Logged { index }) => *index,
                other => panic!("expected Logged, got {other:?}"),
            })
            .collect();
        assert_eq!(indices, (0..ENTRIES as u64).collect::<Vec<_>>());
        let boundaries = reader.batch_boundaries(0, ENTRIES as u64).unwrap();
        let mut start = 0;
        for end in &boundaries {
            let bytes = (end - start) as usize * BODY;
            assert!(
                bytes <= MAX_BYTES,
                "batch {start}..{end} carries {bytes} bytes, over {MAX_BYTES}"
            );
            start = *end;
        }
        assert_eq!(start, ENTRIES as u64);
        // 13 full batches, unless the test thread paused for the quiet gap between two entries
        // (a loaded machine), which closes a batch early.
        assert!(boundaries.len() >= ENTRIES / 3, "{boundaries:?}");
        raft.shutdown().await.unwrap();
    }

    /// A batch whose arrivals pause for the quiet gap is proposed then, not after `max_age`
    /// (an hour here) or once full: here, one entry at a time.
    #[actix_rt::test]
    async fn a_batch_goes_when_arrivals_pause() {
        let dir = tempfile::tempdir().unwrap();
        let (raft, reader) = single_node_raft(dir.path()).await;
        let sequencer = start(&raft, 512, DEFAULT_MAX_BATCH_BYTES);
        for (i, body) in [b"one".to_vec(), b"two".to_vec()].into_iter().enumerate() {
            let outcome = tokio::time::timeout(
                Duration::from_secs(20),
                sequencer.send(Sequence(SequencedEntry::new(body))),
            )
            .await
            .expect("a lone entry is proposed once arrivals pause, not after the batch age")
            .expect("the sequencer answers");
            assert!(
                matches!(outcome, Ok(AppendOutcome::Logged { index }) if index == i as u64),
                "{outcome:?}"
            );
        }
        assert_eq!(reader.batch_boundaries(0, 2).unwrap(), vec![1, 2]);
        raft.shutdown().await.unwrap();
    }

    /// Waits (bounded) until `count` batches are outstanding; returns how long that took.
    async fn until_outstanding(counter: &AtomicUsize, count: usize) -> Duration {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(20);
        while counter.load(Ordering::Acquire) < count {
            assert!(
                Instant::now() < deadline,
                "{count} batches outstanding within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        started.elapsed()
    }

    /// While a batch is still in Raft, a pause in arrivals does not close the next one: it
    /// fills until `max_age`. Here every Raft slot is held, so a flushed batch stays
    /// outstanding: the first entry goes on the pause, the second only at the batch age.
    #[actix_rt::test]
    async fn a_pause_does_not_close_a_batch_while_another_is_in_raft() {
        const MAX_AGE: Duration = Duration::from_millis(400);
        let dir = tempfile::tempdir().unwrap();
        let (raft, reader) = single_node_raft(dir.path()).await;
        let limits = BatchLimits {
            max_entries: 512,
            max_bytes: DEFAULT_MAX_BATCH_BYTES,
            max_age: MAX_AGE,
        };
        let sequencer = sequencer(&raft, limits);
        let (slots, outstanding) = (
            sequencer.in_flight.clone(),
            sequencer.batches_outstanding.clone(),
        );
        let held = slots
            .clone()
            .acquire_many_owned(MAX_BATCHES_IN_FLIGHT as u32)
            .await
            .unwrap();
        let sequencer = sequencer.start();

        let first = sequencer.send(Sequence(SequencedEntry::new(b"first".to_vec())));
        let first = tokio::spawn(first);
        let waited = until_outstanding(&outstanding, 1).await;
        assert!(
            waited < MAX_AGE / 2,
            "the lone first entry went after {waited:?}"
        );

        let second = sequencer.send(Sequence(SequencedEntry::new(b"second".to_vec())));
        let second = tokio::spawn(second);
        let waited = until_outstanding(&outstanding, 2).await;
        assert!(
            waited >= MAX_AGE - Duration::from_millis(50),
            "the second batch closed after {waited:?}, before its age, with one in Raft"
        );

        drop(held);
        for (index, sent) in [first, second].into_iter().enumerate() {
            let outcome = tokio::time::timeout(Duration::from_secs(20), sent)
                .await
                .expect("answered once Raft takes batches")
                .unwrap()
                .expect("the sequencer answers");
            assert!(
                matches!(outcome, Ok(AppendOutcome::Logged { index: i }) if i == index as u64),
                "{outcome:?}"
            );
        }
        assert_eq!(reader.batch_boundaries(0, 2).unwrap(), vec![1, 2]);
        raft.shutdown().await.unwrap();
    }

    /// An entry the state machine refuses fails alone, for good; its batch logs.
    #[actix_rt::test]
    async fn a_refused_entry_fails_alone_and_its_batch_logs() {
        let dir = tempfile::tempdir().unwrap();
        let (raft, reader) = single_node_raft(dir.path()).await;
        let sequencer = start(&raft, 3, DEFAULT_MAX_BATCH_BYTES);
        let outcomes = sequence_all(
            &sequencer,
            vec![
                b"first".to_vec(),
                vec![b'x'; MAX_ENTRY_BODY + 1],
                b"second".to_vec(),
            ],
        )
        .await;
        assert!(matches!(
            outcomes[0],
            Ok(AppendOutcome::Logged { index: 0 })
        ));
        let refusal = Refusal::TooLarge {
            size: MAX_ENTRY_BODY as u64 + 1,
        };
        assert!(
            matches!(&outcomes[1], Err(SequenceError::Refused(reason)) if *reason == refusal.to_string()),
            "{:?}",
            outcomes[1]
        );
        assert!(matches!(
            outcomes[2],
            Ok(AppendOutcome::Logged { index: 1 })
        ));
        assert_eq!(reader.applied().size, 2);
        raft.shutdown().await.unwrap();
    }
}
