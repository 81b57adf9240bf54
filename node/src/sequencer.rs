//! The sequencer actor: batches validated entries and proposes one Raft `Append` per batch.
//!
//! Runs on every node but only succeeds on the leader: `client_write` on a follower fails with
//! `ForwardToLeader`, which the caller turns into a forward (see `backend`). A batch is flushed when
//! it reaches `max_batch` entries or when its oldest entry has waited `max_age`.
//!
//! Ownership: the actor alone owns `pending`; the batch futures it spawns own their entries and
//! reply channels. Durability: an outcome is sent only after `client_write` returned, i.e. after
//! the batch was committed on a quorum (each member fsync'd it) and applied on this node.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use openraft::error::{ClientWriteError, RaftError};
use rekor_raft::types::{
    AppendOutcome, Command, CommandResponse, NodeAddress, Raft, SequencedEntry,
};
use tokio::sync::{oneshot, Semaphore};

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
}

/// Sequence one entry; resolves once its batch is committed and applied.
#[derive(Message)]
#[rtype(result = "Result<AppendOutcome, SequenceError>")]
pub struct Sequence(pub SequencedEntry);

type Reply = oneshot::Sender<Result<AppendOutcome, SequenceError>>;

pub struct Sequencer {
    raft: Raft,
    max_batch: usize,
    max_age: Duration,
    pending: Vec<(SequencedEntry, Reply)>,
    flush_timer: Option<SpawnHandle>,
    /// Bounds the batches in flight in Raft at once (bounded work, DESIGN.md invariant 6).
    in_flight: Arc<Semaphore>,
    metrics: NodeMetrics,
}

/// Batches in flight in Raft at once: enough to keep the pipeline full across an fsync.
const MAX_BATCHES_IN_FLIGHT: usize = 8;

impl Sequencer {
    pub fn new(raft: Raft, max_batch: usize, max_age: Duration, metrics: NodeMetrics) -> Self {
        Self {
            raft,
            max_batch,
            max_age,
            pending: Vec::with_capacity(max_batch),
            flush_timer: None,
            in_flight: Arc::new(Semaphore::new(MAX_BATCHES_IN_FLIGHT)),
            metrics,
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.flush_timer.take() {
            ctx.cancel_future(timer);
        }
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.pending, Vec::with_capacity(self.max_batch));
        let raft = self.raft.clone();
        let in_flight = self.in_flight.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let Ok(_permit) = in_flight.acquire_owned().await else {
                return;
            };
            let count = batch.len();
            let (entries, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let started = Instant::now();
            let result = propose(&raft, entries).await;
            metrics
                .batch_commit_seconds
                .observe(started.elapsed().as_secs_f64());
            metrics.batch_size.observe(count as f64);
            match result {
                Ok(outcomes) => {
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(Ok(outcome));
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
        self.pending.push((entry, reply));
        if self.pending.len() >= self.max_batch {
            self.flush(ctx);
        } else if self.flush_timer.is_none() {
            self.flush_timer = Some(ctx.run_later(self.max_age, |act, ctx| {
                act.flush_timer = None;
                act.flush(ctx);
            }));
        }
        Box::pin(async move {
            answer
                .await
                .unwrap_or(Err(SequenceError::Raft("sequencer stopped".into())))
        })
    }
}
