//! Background load and observation for chaos scenarios: several concurrent clients posting
//! [`EntryFactory`] requests to every node (recording every answer), and a poller that records
//! every checkpoint each node serves.
//!
//! Clients behave like real ones: a request that failed (error, 5xx, timeout) is retried with the
//! same body, so an entry whose first attempt was logged comes back as a 409 with its index; and
//! now and then an acknowledged request is sent again on purpose, to exercise dedup across nodes.
//!
//! Two shapes: closed loop (`workers` clients, each sending its next request when the last one
//! was answered) and open loop (`rate`: new requests arrive at a fixed rate whatever the answers
//! do, as the traffic of many independent clients would; each is retried on the next node until
//! it is answered or `open_loop_give_up` passes). A failover stalls a closed loop with it; an
//! open loop keeps arriving, so it shows the backlog a real outage builds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::Rng;

use super::checker::{Acknowledged, Conflict, NodeView, Observations, SeenCheckpoint};
use crate::{check_logged_entry, EntryFactory};

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 201 with a verifying entry at this index.
    Logged(u64),
    /// 409 pointing at this index.
    Duplicate(u64),
    /// Any other HTTP status.
    Status(u16),
    /// Connection error or malformed answer.
    Error,
    /// No answer within the client's timeout.
    TimedOut,
}

/// One request and its answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Id of the node asked.
    pub node: u64,
    pub sent: Instant,
    pub done: Instant,
    pub outcome: Outcome,
}

/// Load settings.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Concurrent clients.
    pub workers: usize,
    /// Client-side timeout of one request (a frozen or isolated node never answers).
    pub request_timeout: Duration,
    /// Pause after a failed attempt, so clients do not spin on a dead node.
    pub retry_pause: Duration,
    /// One request in this many re-sends an already acknowledged entry (0: never).
    pub resubmit_every: u32,
    /// Open loop: new requests per second (`workers` is then unused). `None`: closed loop.
    pub rate: Option<f64>,
    /// Open loop: at most this many requests outstanding; an arrival beyond it is skipped (and
    /// counted), so a dead cluster cannot make the load grow without bound.
    pub max_in_flight: usize,
    /// Open loop: a request still unanswered (only errors, timeouts or 5xx) after this long is
    /// given up; its fate stays unknown, which the checker allows.
    pub open_loop_give_up: Duration,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            workers: 6,
            request_timeout: Duration::from_secs(4),
            retry_pause: Duration::from_millis(25),
            resubmit_every: 10,
            rate: None,
            max_in_flight: 256,
            open_loop_give_up: Duration::from_secs(60),
        }
    }
}

#[derive(Default)]
struct Record {
    answers: Vec<Answer>,
    observations: Observations,
    /// Open loop: arrivals skipped because `max_in_flight` requests were outstanding.
    skipped: u64,
}

/// The nodes load is sent to (or polled); scenarios that change membership replace them.
type Targets = Arc<RwLock<Vec<NodeView>>>;

/// A running background load. Stop it with [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    record: Arc<Mutex<Record>>,
    targets: Targets,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts `config.workers` clients spreading requests over `nodes`, or with `config.rate`
    /// an open-loop dispatcher.
    pub fn start(nodes: Vec<NodeView>, factory: Arc<EntryFactory>, config: LoadConfig) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let record = Arc::new(Mutex::new(Record::default()));
        let nodes: Targets = Arc::new(RwLock::new(nodes));
        if let Some(rate) = config.rate {
            let dispatcher = tokio::spawn(run_open_loop(
                rate,
                nodes.clone(),
                factory,
                config,
                stop.clone(),
                record.clone(),
            ));
            return Self {
                stop,
                record,
                targets: nodes,
                workers: vec![dispatcher],
            };
        }
        let workers = (0..config.workers)
            .map(|worker| {
                tokio::spawn(run_worker(
                    worker,
                    nodes.clone(),
                    factory.clone(),
                    config.clone(),
                    stop.clone(),
                    record.clone(),
                ))
            })
            .collect();
        Self {
            stop,
            record,
            targets: nodes,
            workers,
        }
    }

    /// From now on, sends requests to `nodes` instead (membership changed).
    pub fn set_targets(&self, nodes: Vec<NodeView>) {
        *write(&self.targets) = nodes;
    }

    /// Every answer so far.
    pub fn answers(&self) -> Vec<Answer> {
        lock(&self.record).answers.clone()
    }

    /// Number of 201s so far.
    pub fn acknowledged(&self) -> usize {
        lock(&self.record).observations.acknowledged.len()
    }

    /// Open loop: arrivals skipped so far because too many requests were outstanding.
    pub fn skipped(&self) -> u64 {
        lock(&self.record).skipped
    }

    /// The first 201 to a request sent at or after `since`.
    pub fn first_logged_since(&self, since: Instant) -> Option<Answer> {
        lock(&self.record)
            .answers
            .iter()
            .filter(|a| a.sent >= since && matches!(a.outcome, Outcome::Logged(_)))
            .min_by_key(|a| a.done)
            .cloned()
    }

    /// The longest stretch from `since` until now without a 201 arriving (from `since` to the
    /// first one, between two, or from the last one to now): the write unavailability of a fault
    /// whose effect starts some time after `since`.
    pub fn longest_gap_since(&self, since: Instant) -> Duration {
        self.longest_gap_between(since, Instant::now())
    }

    /// The longest stretch between `since` and `until` without a 201 arriving.
    pub fn longest_gap_between(&self, since: Instant, until: Instant) -> Duration {
        let logged: Vec<Instant> = lock(&self.record)
            .answers
            .iter()
            .filter(|a| matches!(a.outcome, Outcome::Logged(_)))
            .map(|a| a.done)
            .collect();
        longest_gap(logged, since, until)
    }

    /// Stops the clients (in-flight requests finish or time out) and returns what they saw.
    pub async fn stop(self) -> (Vec<Answer>, Observations) {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            let _ = worker.await;
        }
        let mut record = lock(&self.record);
        (
            std::mem::take(&mut record.answers),
            std::mem::take(&mut record.observations),
        )
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking worker must not hide what the others recorded.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read(targets: &Targets) -> Vec<NodeView> {
    targets
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

fn write(targets: &Targets) -> std::sync::RwLockWriteGuard<'_, Vec<NodeView>> {
    targets
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn digest_of(request: &serde_json::Value) -> String {
    request["hashedRekordRequestV002"]["digest"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn run_worker(
    worker: usize,
    nodes: Targets,
    factory: Arc<EntryFactory>,
    config: LoadConfig,
    stop: Arc<AtomicBool>,
    record: Arc<Mutex<Record>>,
) {
    let mut turn = worker;
    let mut retry: Option<serde_json::Value> = None;
    let mut logged: Vec<serde_json::Value> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        turn += 1;
        let nodes = read(&nodes);
        if nodes.is_empty() {
            break;
        }
        let node = &nodes[turn % nodes.len()];
        let resend_logged = config.resubmit_every > 0
            && !logged.is_empty()
            && rand::thread_rng().gen_range(0..config.resubmit_every) == 0;
        let request = match retry.take() {
            Some(request) => request,
            None if resend_logged => logged[rand::thread_rng().gen_range(0..logged.len())].clone(),
            None => factory.request(),
        };
        let sent = Instant::now();
        let (outcome, observed) = submit_recorded(node, &request, config.request_timeout).await;
        let done = Instant::now();
        match outcome {
            Outcome::Logged(_) => logged.push(request),
            Outcome::Duplicate(_) => {}
            // Unknown fate: try the same request again, as a client would.
            _ => retry = Some(request),
        }
        let failed = !matches!(outcome, Outcome::Logged(_) | Outcome::Duplicate(_));
        {
            let mut record = lock(&record);
            record.answers.push(Answer {
                node: node.id,
                sent,
                done,
                outcome,
            });
            record.observations.extend(observed);
        }
        if failed {
            tokio::time::sleep(config.retry_pause).await;
        }
    }
}

/// The open loop: a new request every `1 / rate` seconds (spread over the nodes in turn), each
/// in a task of its own that retries it on the next node until it is answered (201 or 409) or
/// given up. Returns once stopped and every outstanding request has ended.
async fn run_open_loop(
    rate: f64,
    nodes: Targets,
    factory: Arc<EntryFactory>,
    config: LoadConfig,
    stop: Arc<AtomicBool>,
    record: Arc<Mutex<Record>>,
) {
    let rate = if rate.is_finite() && rate > 0.0 {
        rate
    } else {
        1.0
    };
    let interval = Duration::from_secs_f64(1.0 / rate);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(config.max_in_flight.max(1)));
    let logged: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    let mut ticker = tokio::time::interval(interval);
    // Behind schedule (a slow runtime): catch up at once, as independent clients would.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut turn = 0usize;
    while !stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        while tasks.try_join_next().is_some() {}
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            lock(&record).skipped += 1;
            continue;
        };
        turn += 1;
        let request = {
            let logged = lock(&logged);
            let resend = config.resubmit_every > 0
                && !logged.is_empty()
                && rand::thread_rng().gen_range(0..config.resubmit_every) == 0;
            if resend {
                logged[rand::thread_rng().gen_range(0..logged.len())].clone()
            } else {
                drop(logged);
                factory.request()
            }
        };
        let (nodes, stop, record, logged, config) = (
            nodes.clone(),
            stop.clone(),
            record.clone(),
            logged.clone(),
            config.clone(),
        );
        tasks.spawn(async move {
            let _permit = permit;
            let give_up = Instant::now() + config.open_loop_give_up;
            let mut attempt = turn;
            loop {
                let targets = read(&nodes);
                if targets.is_empty() {
                    return;
                }
                let node = &targets[attempt % targets.len()];
                attempt += 1;
                let sent = Instant::now();
                let (outcome, observed) =
                    submit_recorded(node, &request, config.request_timeout).await;
                let answered = matches!(outcome, Outcome::Logged(_) | Outcome::Duplicate(_));
                if matches!(outcome, Outcome::Logged(_)) {
                    let mut logged = lock(&logged);
                    // Enough to pick resubmissions from; bounded on a long run.
                    if logged.len() < 10_000 {
                        logged.push(request.clone());
                    }
                }
                {
                    let mut record = lock(&record);
                    record.answers.push(Answer {
                        node: node.id,
                        sent,
                        done: Instant::now(),
                        outcome,
                    });
                    record.observations.extend(observed);
                }
                if answered || Instant::now() >= give_up || stop.load(Ordering::Relaxed) {
                    return;
                }
                tokio::time::sleep(config.retry_pause).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Sends `request` to `node` once and classifies the answer; a 201 is verified (inclusion
/// proof, checkpoint) and recorded with its body and checkpoint for the checker, a 409 with its
/// index.
pub async fn submit_recorded(
    node: &NodeView,
    request: &serde_json::Value,
    timeout: Duration,
) -> (Outcome, Observations) {
    let mut observed = Observations::default();
    let answer = tokio::time::timeout(timeout, node.client.submit(request)).await;
    let outcome = match answer {
        Err(_) => Outcome::TimedOut,
        Ok(Err(_)) => Outcome::Error,
        Ok(Ok(result)) if result.status == 201 => match result
            .json()
            .and_then(|entry| logged_entry(&entry).map(|logged| (entry, logged)))
        {
            Ok((_, (index, body, checkpoint))) => {
                observed.acknowledged.push(Acknowledged {
                    index,
                    body,
                    node: node.id,
                });
                observed.checkpoints.push(SeenCheckpoint {
                    text: checkpoint,
                    node: node.id,
                });
                Outcome::Logged(index)
            }
            Err(error) => {
                observed
                    .bad_answers
                    .push(format!("201 from node {}: {error:#}", node.id));
                Outcome::Error
            }
        },
        Ok(Ok(result)) if result.status == 409 => match result.log_index_header {
            Some(index) => {
                observed.conflicts.push(Conflict {
                    index,
                    digest: digest_of(request),
                    node: node.id,
                });
                Outcome::Duplicate(index)
            }
            None => {
                observed
                    .bad_answers
                    .push(format!("409 from node {} without x-log-index", node.id));
                Outcome::Error
            }
        },
        Ok(Ok(result)) => Outcome::Status(result.status),
    };
    (outcome, observed)
}

/// Verifies a 201 body; returns its index, canonical body and signed checkpoint text.
fn logged_entry(entry: &serde_json::Value) -> anyhow::Result<(u64, Vec<u8>, String)> {
    let (index, _) = check_logged_entry(entry)?;
    let body = STANDARD.decode(
        entry["canonicalizedBody"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no canonicalizedBody"))?,
    )?;
    let checkpoint = entry["inclusionProof"]["checkpoint"]["envelope"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no checkpoint envelope"))?
        .to_owned();
    Ok((index, body, checkpoint))
}

/// A checkpoint one node served, and when it was first seen there.
#[derive(Debug, Clone)]
pub struct ServedObservation {
    pub node: u64,
    pub at: Instant,
    pub text: String,
}

/// Polls `GET /api/v2/checkpoint` on every node and records each distinct text per node.
pub struct CheckpointPoller {
    stop: Arc<AtomicBool>,
    targets: Targets,
    seen: Arc<Mutex<Vec<ServedObservation>>>,
    task: tokio::task::JoinHandle<()>,
}

impl CheckpointPoller {
    /// Starts polling every `interval`.
    pub fn start(nodes: Vec<NodeView>, interval: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::<ServedObservation>::new()));
        let targets: Targets = Arc::new(RwLock::new(nodes));
        let task = {
            let stop = stop.clone();
            let seen = seen.clone();
            let targets = targets.clone();
            tokio::spawn(async move {
                let mut last: HashMap<u64, String> = HashMap::new();
                while !stop.load(Ordering::Relaxed) {
                    let nodes = read(&targets);
                    let polls = nodes.iter().map(|node| async {
                        // A frozen node must not hold up polling of the others.
                        tokio::time::timeout(Duration::from_millis(500), node.client.checkpoint())
                            .await
                            .ok()
                            .and_then(Result::ok)
                            .flatten()
                    });
                    let texts = futures::future::join_all(polls).await;
                    let at = Instant::now();
                    for (node, text) in nodes.iter().zip(texts) {
                        if let Some(text) = text {
                            if last.get(&node.id) != Some(&text) {
                                lock(&seen).push(ServedObservation {
                                    node: node.id,
                                    at,
                                    text: text.clone(),
                                });
                                last.insert(node.id, text);
                            }
                        }
                    }
                    tokio::time::sleep(interval).await;
                }
            })
        };
        Self {
            stop,
            targets,
            seen,
            task,
        }
    }

    /// From now on, polls `nodes` instead (membership changed).
    pub fn set_targets(&self, nodes: Vec<NodeView>) {
        *write(&self.targets) = nodes;
    }

    /// Everything seen so far.
    pub fn seen(&self) -> Vec<ServedObservation> {
        lock(&self.seen).clone()
    }

    /// Stops polling and returns everything seen.
    pub async fn stop(self) -> Vec<ServedObservation> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let seen = lock(&self.seen).clone();
        seen
    }

    /// Stops polling and hands every checkpoint seen to the checker's `observations`.
    pub async fn stop_into(self, observations: &mut Observations) {
        let served = self.stop().await;
        observations
            .checkpoints
            .extend(served.into_iter().map(|seen| SeenCheckpoint {
                text: seen.text,
                node: seen.node,
            }));
    }
}

/// The longest stretch between `since` and `until` without one of the instants in `arrivals`.
fn longest_gap(mut arrivals: Vec<Instant>, since: Instant, until: Instant) -> Duration {
    arrivals.retain(|at| (since..=until).contains(at));
    arrivals.sort_unstable();
    let mut previous = since;
    let mut longest = Duration::ZERO;
    for at in arrivals.into_iter().chain(std::iter::once(until)) {
        longest = longest.max(at.saturating_duration_since(previous));
        previous = at;
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_gap_spans_the_window_and_ignores_arrivals_outside_it() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // Before the window, inside it (out of order), after it.
        let arrivals = vec![ms(0), ms(140), ms(100), ms(900), ms(2000)];
        // 100 → 140 → 900 (760) → until 950.
        assert_eq!(
            longest_gap(arrivals.clone(), ms(50), ms(950)),
            Duration::from_millis(760)
        );
        // From `since` to the first arrival counts too.
        assert_eq!(
            longest_gap(arrivals.clone(), ms(10), ms(150)),
            Duration::from_millis(90)
        );
        // No arrival inside: the whole window.
        assert_eq!(
            longest_gap(arrivals, ms(1000), ms(1500)),
            Duration::from_millis(500)
        );
    }
}
