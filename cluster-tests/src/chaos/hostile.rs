//! The hostile scenario (adversarial-robustness issue, acceptance): a three-node cluster takes
//! honest open-loop writes while attackers run at the same time, and must answer every honest
//! write, stay within its memory, and pass the invariant checker.
//!
//! The attackers, each a set of tasks that keep their pressure up for the whole run:
//! - **key floods**: 4 MiB JSON bodies of distinct unknown keys (`{"k0000000":0,...}`), the
//!   shape that once cost quadratic time to refuse;
//! - **stalled bodies**: connections that send a request head and a little of the body, then
//!   nothing (reconnecting when the node gives up on them);
//! - **idle connections**: connections that send nothing at all;
//! - **unauthenticated bulk**: 64 MiB bodies without the cluster secret (or a certificate) to the
//!   internal listener: refused at the TLS handshake under mutual TLS (the default), or from the
//!   headers alone with plain HTTP between the nodes ([`HostileOptions::internal_tls`]);
//! - **a lying witness**: the witness policy's only witness answers with 200 copies of its line.
//!
//! The honest load is open-loop (a request every `1/rate` seconds whatever the answers), so a
//! stall shows up as latency and timeouts rather than as a slower request rate.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::io::AsyncWriteExt;

use super::checker::{check_cluster, LogVerifier, NodeView, Observations};
use super::load::{submit_recorded, CheckpointPoller, Outcome};
use crate::hostile::{closed_within, read_answer, send_head, Answer};
use crate::witness::{TestWitness, WitnessPolicy, WitnessProgram};
use crate::{Cluster, EntryFactory};

const MIB: usize = 1024 * 1024;

/// A witness that cosigns and repeats its line: the `test-witness` binary and its key.
#[derive(Debug, Clone)]
pub struct HostileWitness {
    /// The `test-witness` binary and its key.
    pub program: WitnessProgram,
    /// How many copies of its cosignature line it answers with.
    pub copies: usize,
}

/// How big the attack and the honest load are.
#[derive(Debug, Clone)]
pub struct HostileOptions {
    /// How long the honest load and the attackers run.
    pub duration: Duration,
    /// Honest writes per second (open loop).
    pub honest_rate: u32,
    /// Client-side timeout of one honest write.
    pub honest_timeout: Duration,
    /// Concurrent key flooders, and how many floods each sends per second at most.
    pub flooders: usize,
    pub floods_per_second: u32,
    /// Connections stalled mid-body.
    pub stalled: usize,
    /// Idle connections (no request at all).
    pub idle: usize,
    /// Concurrent senders of unauthenticated 64 MiB bodies to the internal listener.
    pub internal_senders: usize,
    /// Mutual TLS between the nodes (the default). The internal attackers then never get past
    /// the handshake (a refusal is a closed connection); without it they reach the HTTP layer
    /// and must get a 401 from the headers alone.
    pub internal_tls: bool,
    /// The lying witness, if any.
    pub witness: Option<HostileWitness>,
}

impl HostileOptions {
    /// The acceptance's attack at full size; `duration` 15 s, or 5 minutes with `REKOR_SOAK=1`.
    pub fn from_env() -> Self {
        let soak = std::env::var("REKOR_SOAK").is_ok_and(|value| value == "1");
        Self {
            duration: Duration::from_secs(if soak { 300 } else { 15 }),
            honest_rate: 500,
            honest_timeout: Duration::from_secs(10),
            flooders: 4,
            floods_per_second: 5,
            stalled: 300,
            idle: 2000,
            internal_senders: 2,
            internal_tls: true,
            witness: None,
        }
    }
}

/// What the scenario saw.
#[derive(Debug, Clone, Default)]
pub struct HostileReport {
    pub honest_sent: usize,
    pub honest_logged: usize,
    /// Honest writes that did not get a 201 (status or error), by outcome.
    pub honest_failures: Vec<String>,
    pub latency_p50: Duration,
    pub latency_p99: Duration,
    pub latency_max: Duration,
    /// Peak resident memory of each node (`VmHWM`), MiB, by node id.
    pub peak_rss_mib: Vec<(u64, u64)>,
    /// Key floods answered, by status (`0` = no answer / connection error).
    pub flood_answers: Vec<(u16, u64)>,
    /// Stalled connections the nodes closed (each then reopened).
    pub stalled_closed: u64,
    /// Idle connections the nodes closed (each then reopened).
    pub idle_closed: u64,
    /// Unauthenticated internal requests, and how many were refused: a 401 from the headers
    /// (plain HTTP between the nodes) or a closed connection (mutual TLS).
    pub internal_sent: u64,
    pub internal_refused: u64,
    /// Invariant violations found by the checker.
    pub violations: Vec<String>,
    pub final_size: u64,
    /// Signature lines of the checkpoint each node serves at the end, by node id.
    pub checkpoint_signatures: Vec<(u64, usize)>,
}

impl HostileReport {
    /// The acceptance: every honest write logged, p99 under `p99_limit`, every node under
    /// `rss_limit_mib`, no violation.
    pub fn failures(&self, p99_limit: Duration, rss_limit_mib: u64) -> Vec<String> {
        let mut failures = Vec::new();
        if !self.honest_failures.is_empty() || self.honest_logged != self.honest_sent {
            failures.push(format!(
                "{} of {} honest writes not logged: {:?}",
                self.honest_sent - self.honest_logged,
                self.honest_sent,
                self.honest_failures.iter().take(10).collect::<Vec<_>>()
            ));
        }
        if self.latency_p99 > p99_limit {
            failures.push(format!(
                "honest p99 {:?} over {p99_limit:?}",
                self.latency_p99
            ));
        }
        for (node, rss) in &self.peak_rss_mib {
            if *rss >= rss_limit_mib {
                failures.push(format!(
                    "node {node} peaked at {rss} MiB (limit {rss_limit_mib})"
                ));
            }
        }
        failures.extend(self.violations.iter().cloned());
        failures
    }
}

impl std::fmt::Display for HostileReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "honest: {} sent, {} logged, p50 {:?}, p99 {:?}, max {:?}; final size {}",
            self.honest_sent,
            self.honest_logged,
            self.latency_p50,
            self.latency_p99,
            self.latency_max,
            self.final_size
        )?;
        writeln!(f, "peak RSS (MiB) by node: {:?}", self.peak_rss_mib)?;
        writeln!(
            f,
            "signature lines of the served checkpoints by node: {:?}",
            self.checkpoint_signatures
        )?;
        writeln!(
            f,
            "attack: floods answered {:?}; stalled closed {}; idle closed {}; internal {} sent, \
             {} refused (401 from the headers, or the TLS handshake)",
            self.flood_answers,
            self.stalled_closed,
            self.idle_closed,
            self.internal_sent,
            self.internal_refused
        )?;
        for failure in &self.honest_failures {
            writeln!(f, "  honest failure: {failure}")?;
        }
        for violation in &self.violations {
            writeln!(f, "  violation: {violation}")?;
        }
        Ok(())
    }
}

/// Attack counters shared by the attacker tasks.
#[derive(Default)]
struct Counters {
    flood_answers: Mutex<Vec<(u16, u64)>>,
    stalled_closed: AtomicU64,
    idle_closed: AtomicU64,
    internal_sent: AtomicU64,
    internal_refused: AtomicU64,
}

impl Counters {
    fn flood_answered(&self, status: u16) {
        let mut answers = self
            .flood_answers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match answers.iter_mut().find(|(code, _)| *code == status) {
            Some((_, count)) => *count += 1,
            None => answers.push((status, 1)),
        }
    }
}

/// Runs the scenario: starts the cluster (and the witness), the attackers and the honest load,
/// then checks.
pub async fn run_hostile(options: &HostileOptions) -> Result<HostileReport> {
    let dir = tempfile::tempdir()?;
    let witness = match &options.witness {
        Some(witness) => Some((
            witness,
            WitnessPolicy::write(dir.path(), &witness.program.vkey)?,
        )),
        None => None,
    };
    let args: Vec<String> = witness
        .iter()
        .flat_map(|(_, policy)| policy.node_args())
        .collect();
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let cluster = if options.internal_tls {
        Cluster::start(3, &arg_refs).await?
    } else {
        Cluster::start_plain(3, &arg_refs).await?
    };
    let _witness = match witness {
        Some((witness, policy)) => {
            let copies = witness.copies.to_string();
            let extra = ["--copies", copies.as_str()];
            Some(
                TestWitness::start(&witness.program, policy.port, &cluster, dir.path(), &extra)
                    .await?,
            )
        }
        None => None,
    };

    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let mut attackers = Vec::new();
    let publics: Vec<String> = cluster.nodes.iter().map(|n| n.spec.public_addr()).collect();
    let internals: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| n.spec.internal_addr())
        .collect();
    let flood = Arc::new(key_flood(4 * MIB));
    for i in 0..options.flooders {
        attackers.push(tokio::spawn(flooder(
            format!("http://{}", publics[i % publics.len()]),
            flood.clone(),
            options.floods_per_second,
            stop.clone(),
            counters.clone(),
        )));
    }
    for i in 0..options.stalled {
        attackers.push(tokio::spawn(stalled_body(
            publics[i % publics.len()].clone(),
            stop.clone(),
            counters.clone(),
        )));
    }
    for i in 0..options.idle {
        attackers.push(tokio::spawn(idle_connection(
            publics[i % publics.len()].clone(),
            stop.clone(),
            counters.clone(),
        )));
    }
    for i in 0..options.internal_senders {
        attackers.push(tokio::spawn(unauthenticated_bulk(
            internals[i % internals.len()].clone(),
            options.internal_tls,
            stop.clone(),
            counters.clone(),
        )));
    }

    let views = NodeView::all(&cluster);
    let poller = CheckpointPoller::start(views.clone(), Duration::from_millis(200));
    let honest = honest_load(&views, options).await;
    stop.store(true, Ordering::Relaxed);
    for attacker in attackers {
        attacker.abort();
    }

    let mut observations = Observations::default();
    let mut latencies = Vec::new();
    let mut report = HostileReport {
        honest_sent: honest.len(),
        ..HostileReport::default()
    };
    for (latency, outcome, observed) in honest {
        match outcome {
            Outcome::Logged(_) => {
                report.honest_logged += 1;
                latencies.push(latency);
            }
            other => report
                .honest_failures
                .push(format!("{other:?} after {latency:?}")),
        }
        observations.extend(observed);
    }
    poller.stop_into(&mut observations).await;
    latencies.sort_unstable();
    let quantile = |q: f64| -> Duration {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    report.latency_p50 = quantile(0.50);
    report.latency_p99 = quantile(0.99);
    report.latency_max = latencies.last().copied().unwrap_or_default();
    report.peak_rss_mib = cluster
        .nodes
        .iter()
        .map(|node| (node.spec.id, node.pid().map_or(0, peak_rss_mib)))
        .collect();
    report.flood_answers = counters
        .flood_answers
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    report.stalled_closed = counters.stalled_closed.load(Ordering::Relaxed);
    report.idle_closed = counters.idle_closed.load(Ordering::Relaxed);
    report.internal_sent = counters.internal_sent.load(Ordering::Relaxed);
    report.internal_refused = counters.internal_refused.load(Ordering::Relaxed);

    let verifier = LogVerifier::from_key_file(&cluster.origin, &cluster.key_file)?;
    let check = check_cluster(&views, &verifier, &observations, Duration::from_secs(60)).await?;
    report.final_size = check.final_size;
    for view in &views {
        let lines = match view.client.checkpoint().await {
            Ok(Some(text)) => text
                .split("\n\n")
                .nth(1)
                .map_or(0, |signatures| signatures.lines().count()),
            _ => 0,
        };
        report.checkpoint_signatures.push((view.id, lines));
    }
    report.violations = check.violations.iter().map(|v| v.to_string()).collect();
    if !report.failures(Duration::MAX, u64::MAX).is_empty() {
        report
            .violations
            .push(format!("node logs:\n{}", cluster.logs()));
    }
    Ok(report)
}

/// A body of `size` bytes: one JSON object of distinct keys, none of them a request field.
pub fn key_flood(size: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(size + 32);
    body.push(b'{');
    let mut key = 0u64;
    while body.len() + 16 < size {
        if key > 0 {
            body.push(b',');
        }
        body.extend_from_slice(format!("\"k{key:07}\":0").as_bytes());
        key += 1;
    }
    body.push(b'}');
    body
}

/// One open-loop honest writer: a fresh entry every `1/rate` s to the nodes in turn.
async fn honest_load(
    views: &[NodeView],
    options: &HostileOptions,
) -> Vec<(Duration, Outcome, Observations)> {
    let factory = Arc::new(EntryFactory::new());
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / options.honest_rate.max(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = Instant::now() + options.duration;
    let mut requests = Vec::new();
    let mut turn = 0usize;
    while Instant::now() < end {
        ticker.tick().await;
        turn += 1;
        let node = views[turn % views.len()].clone();
        let request = factory.request();
        let timeout = options.honest_timeout;
        requests.push(tokio::spawn(async move {
            let sent = Instant::now();
            let (outcome, observed) = submit_recorded(&node, &request, timeout).await;
            (sent.elapsed(), outcome, observed)
        }));
    }
    let mut results = Vec::with_capacity(requests.len());
    for request in requests {
        if let Ok(result) = request.await {
            results.push(result);
        }
    }
    results
}

async fn flooder(
    base_url: String,
    body: Arc<Vec<u8>>,
    per_second: u32,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
) {
    let client = reqwest::Client::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / per_second.max(1));
    while !stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        let answer = client
            .post(format!("{base_url}/api/v2/log/entries"))
            .header("content-type", "application/json")
            .body(body.as_ref().clone())
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        counters.flood_answered(answer.map_or(0, |response| response.status().as_u16()));
    }
}

async fn stalled_body(addr: String, stop: Arc<AtomicBool>, counters: Arc<Counters>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = send_head(&addr, "POST", "/api/v2/log/entries", &[], 4 * MIB).await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if stream.write_all(&[b' '; 1024]).await.is_err() {
            continue;
        }
        if closed_within(&mut stream, Duration::from_secs(120)).await {
            counters.stalled_closed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn idle_connection(addr: String, stop: Arc<AtomicBool>, counters: Arc<Counters>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = tokio::net::TcpStream::connect(&addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if closed_within(&mut stream, Duration::from_secs(120)).await {
            counters.idle_closed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn unauthenticated_bulk(
    addr: String,
    tls: bool,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
) {
    let chunk = vec![0u8; MIB];
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = send_head(&addr, "POST", "/internal/raft/append", &[], 64 * MIB).await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        counters.internal_sent.fetch_add(1, Ordering::Relaxed);
        for _ in 0..64 {
            if stream.write_all(&chunk).await.is_err() {
                break;
            }
        }
        // Clear text to a mutual-TLS listener ends in a closed connection, never an answer.
        let refused = match read_answer(&mut stream, Duration::from_secs(5)).await {
            Ok(Answer::Response { status: 401, .. }) => !tls,
            Ok(Answer::Closed) => tls,
            Err(_) if tls => true,
            _ => false,
        };
        if refused {
            counters.internal_refused.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Peak resident set of a process in MiB (`VmHWM` from `/proc/<pid>/status`).
pub fn peak_rss_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}
