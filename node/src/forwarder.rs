//! Forwarding from a follower to the leader in batches (DESIGN.md, write path step 2).
//!
//! One HTTP request per forwarded entry costs a request's parsing, routing and a round trip on
//! both nodes, for a ~1 KB entry. The forwarder queues entries and sends whatever has queued up
//! as one request to `/internal/v1/sequence-batch`, with a few requests in flight at once: under
//! load entries pile up while the requests in flight are answered, so batches grow by themselves
//! and no timer adds latency when the node is idle.
//!
//! Each entry still gets its own outcome; a failed request fails every entry in it, and the
//! caller's retry loop ([`crate::backend`]) takes it from there.

use std::sync::Arc;

use rekor_raft::types::{AppendOutcome, NodeAddress, SequencedEntry};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::debug;

use crate::internal::paths;
use crate::metrics::NodeMetrics;
use crate::sequencer::SequenceError;

/// Most entries in one forwarded request.
pub const MAX_FORWARD_BATCH: usize = 256;
/// Most bytes of the leader's answer to one forwarded batch that are read: one small outcome
/// per entry.
const MAX_FORWARD_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// Most body bytes in one forwarded request (the leader's route accepts a little more).
pub const MAX_FORWARD_BATCH_BYTES: usize = 2 * 1024 * 1024;
/// Forwarded requests in flight at once.
const MAX_REQUESTS_IN_FLIGHT: usize = 4;
/// Entries waiting to be forwarded (each holds a pushback admission on this node's caller).
const MAX_QUEUED: usize = 16_384;

type Outcome = Result<AppendOutcome, SequenceError>;

struct Job {
    leader: u64,
    node: NodeAddress,
    entry: SequencedEntry,
    reply: oneshot::Sender<Outcome>,
}

/// Cheap to clone; all clones feed one sending task.
#[derive(Clone)]
pub struct Forwarder {
    queue: mpsc::Sender<Job>,
}

/// How the sending task reaches the leader.
pub struct ForwardClient {
    /// The node's peer clients (shared with Raft and catch-up).
    pub peers: Arc<rekor_raft::PeerClients>,
    /// Longest one forwarded batch may take (the submit timeout).
    pub timeout: std::time::Duration,
    pub metrics: NodeMetrics,
}

impl Forwarder {
    /// Starts the sending task on the current tokio runtime.
    pub fn start(client: ForwardClient) -> Self {
        let (queue, jobs) = mpsc::channel(MAX_QUEUED);
        tokio::spawn(send_batches(jobs, Arc::new(client)));
        Self { queue }
    }

    /// Forwards `entry` to `leader` and waits for its outcome.
    pub async fn forward(&self, leader: u64, node: &NodeAddress, entry: SequencedEntry) -> Outcome {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            leader,
            node: node.clone(),
            entry,
            reply,
        };
        if self.queue.send(job).await.is_err() {
            return Err(SequenceError::Raft("the forwarder stopped".into()));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(SequenceError::Raft("the forwarder dropped an entry".into())))
    }
}

async fn send_batches(mut jobs: mpsc::Receiver<Job>, client: Arc<ForwardClient>) {
    let slots = Arc::new(Semaphore::new(MAX_REQUESTS_IN_FLIGHT));
    // A job taken from the queue that belongs in the next batch (another leader, or too big).
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match jobs.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        // Wait for a free slot first: meanwhile more entries queue up and join this batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = first.entry.body.len();
        let mut batch = vec![first];
        while batch.len() < MAX_FORWARD_BATCH {
            let Ok(job) = jobs.try_recv() else { break };
            if job.leader != batch[0].leader
                || bytes + job.entry.body.len() > MAX_FORWARD_BATCH_BYTES
            {
                carried = Some(job);
                break;
            }
            bytes += job.entry.body.len();
            batch.push(job);
        }
        let client = client.clone();
        tokio::spawn(async move {
            send_batch(&client, batch).await;
            drop(slot);
        });
    }
}

async fn send_batch(client: &ForwardClient, batch: Vec<Job>) {
    let leader = batch[0].leader;
    let address = batch[0].node.internal_addr.clone();
    let (entries, replies): (Vec<SequencedEntry>, Vec<oneshot::Sender<Outcome>>) =
        batch.into_iter().map(|job| (job.entry, job.reply)).unzip();
    client.metrics.forwarded_total.inc_by(entries.len() as u64);
    client
        .metrics
        .forward_batch_size
        .observe(entries.len() as f64);
    let outcomes = request(client, leader, &address, &entries).await;
    match outcomes {
        Ok(outcomes) if outcomes.len() == replies.len() => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(outcome);
            }
        }
        Ok(outcomes) => {
            let error = SequenceError::Raft(format!(
                "leader {leader} answered {} outcomes for {} entries",
                outcomes.len(),
                replies.len()
            ));
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
        Err(error) => {
            debug!(leader, %error, entries = replies.len(), "forwarding a batch failed");
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

async fn request(
    client: &ForwardClient,
    leader: u64,
    address: &str,
    entries: &[SequencedEntry],
) -> Result<Vec<Outcome>, SequenceError> {
    let body = bincode::serialize(entries).map_err(|e| SequenceError::Raft(e.to_string()))?;
    let response = client
        .peers
        .request(
            reqwest::Method::POST,
            leader,
            address,
            paths::SEQUENCE_BATCH,
        )
        .map_err(|e| SequenceError::Raft(e.to_string()))?
        .timeout(client.timeout)
        .body(body)
        .send()
        .await
        .map_err(|e| SequenceError::Raft(format!("forwarding to leader {leader}: {e}")))?;
    if !response.status().is_success() {
        return Err(SequenceError::Raft(format!(
            "leader {leader} answered {}",
            response.status()
        )));
    }
    let bytes = rekor_raft::read_answer(response, MAX_FORWARD_ANSWER_BYTES)
        .await
        .map_err(|e| SequenceError::Raft(format!("reading leader {leader}'s answer: {e}")))?;
    bincode::deserialize::<Vec<Outcome>>(&bytes)
        .map_err(|e| SequenceError::Raft(format!("decoding leader {leader}'s answer: {e}")))
}
