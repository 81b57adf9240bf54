//! The load runner: sends a [`Workload`] to one or more nodes over keep-alive HTTP/1.1
//! connections, either closed-loop (N clients, each waiting for its answer before the next
//! request) or open-loop (a fixed arrival rate, whatever the answers do), and summarises the
//! outcome with an HDR histogram.
//!
//! In open-loop mode latency is measured from each request's scheduled send time, not from
//! when it was actually sent, so a stalled server shows up in the percentiles instead of
//! silently lowering the offered load (coordinated omission).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;

/// What to send.
#[derive(Clone)]
pub enum Workload {
    /// POST each body to `/api/v2/log/entries` once, in order; stop when all were sent.
    Submit { bodies: Arc<Vec<Bytes>> },
    /// GET these paths (relative to the base URL) round-robin.
    Get { paths: Arc<Vec<String>> },
}

impl Workload {
    fn request(&self, index: usize) -> Option<(reqwest::Method, String, Option<Bytes>)> {
        match self {
            Workload::Submit { bodies } => bodies.get(index).map(|body| {
                (
                    reqwest::Method::POST,
                    "/api/v2/log/entries".to_owned(),
                    Some(body.clone()),
                )
            }),
            Workload::Get { paths } => {
                if paths.is_empty() {
                    return None;
                }
                Some((
                    reqwest::Method::GET,
                    paths[index % paths.len()].clone(),
                    None,
                ))
            }
        }
    }

    fn expected_status(&self) -> u16 {
        match self {
            Workload::Submit { .. } => 201,
            Workload::Get { .. } => 200,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Workload::Submit { .. } => "submit",
            Workload::Get { .. } => "get",
        }
    }
}

/// How requests arrive.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum Arrival {
    /// `concurrency` clients, each sending its next request when the previous one is answered.
    Closed { concurrency: usize },
    /// `rate` requests per second; at most `max_in_flight` outstanding (beyond that, a request
    /// is counted as `client: in-flight cap` and not sent).
    Open { rate: f64, max_in_flight: usize },
}

/// A load run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Base URLs (`http://127.0.0.1:3000`); requests are spread over them round-robin.
    pub targets: Vec<String>,
    pub arrival: Arrival,
    /// How long requests are issued (in-flight ones are awaited after that).
    pub duration: Duration,
    /// Check the inclusion proof of every n-th successful submission (0: none).
    pub proof_sample_every: u64,
    /// Per-request timeout.
    pub request_timeout: Duration,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LatencySummary {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl LatencySummary {
    fn from_histogram(histogram: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        if histogram.is_empty() {
            return Self::default();
        }
        Self {
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p90_ms: ms(histogram.value_at_quantile(0.90)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            max_ms: ms(histogram.max()),
            mean_ms: histogram.mean() / 1000.0,
        }
    }
}

/// Sampled inclusion-proof checks of 201 responses.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProofChecks {
    pub checked: u64,
    pub failed: u64,
    pub first_failure: Option<String>,
}

/// The outcome of a load run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoadReport {
    pub workload: String,
    pub arrival: String,
    pub targets: usize,
    /// From the first send to the last answer, in seconds.
    pub elapsed_s: f64,
    pub sent: u64,
    pub succeeded: u64,
    /// Unexpected answers by `HTTP <code>` or `transport: <kind>`.
    pub errors: BTreeMap<String, u64>,
    /// Successful requests per second over `elapsed_s`.
    pub throughput_per_s: f64,
    /// Latency of successful requests.
    pub latency: LatencySummary,
    /// True if a submit workload ran out of pre-signed requests before the duration ended.
    pub exhausted: bool,
    pub proofs: ProofChecks,
}

impl LoadReport {
    /// Total unexpected answers.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Shared state of one run.
struct Tally {
    histogram: Mutex<Histogram<u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
    succeeded: AtomicU64,
    sent: AtomicU64,
    samples: Mutex<Vec<String>>,
    exhausted: AtomicBool,
    last_answer: Mutex<Option<Instant>>,
}

impl Tally {
    fn new() -> Result<Self> {
        Ok(Self {
            // 1 µs .. 1 h, three significant digits.
            histogram: Mutex::new(Histogram::new_with_bounds(1, 3_600_000_000, 3)?),
            errors: Mutex::new(BTreeMap::new()),
            succeeded: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            samples: Mutex::new(Vec::new()),
            exhausted: AtomicBool::new(false),
            last_answer: Mutex::new(None),
        })
    }

    fn error(&self, key: String) {
        if let Ok(mut errors) = self.errors.lock() {
            *errors.entry(key).or_default() += 1;
        }
    }

    fn answered(&self) {
        if let Ok(mut last) = self.last_answer.lock() {
            *last = Some(Instant::now());
        }
    }
}

/// Sends one request and records its outcome. `started` is when the request counts as issued.
async fn one_request(
    client: &reqwest::Client,
    config: &LoadConfig,
    workload: &Workload,
    tally: &Tally,
    index: usize,
    started: Instant,
) {
    let Some((method, path, body)) = workload.request(index) else {
        return;
    };
    let target = &config.targets[index % config.targets.len()];
    let mut request = client.request(method, format!("{target}{path}"));
    if let Some(body) = body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
    }
    tally.sent.fetch_add(1, Ordering::Relaxed);
    let outcome = match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            // Read the whole body: the latency is "until the answer is in", as a client sees it.
            match response.bytes().await {
                Ok(bytes) => Ok((status, bytes)),
                Err(error) => Err(error),
            }
        }
        Err(error) => Err(error),
    };
    let elapsed = started.elapsed();
    tally.answered();
    match outcome {
        Ok((status, bytes)) if status == workload.expected_status() => {
            let count = tally.succeeded.fetch_add(1, Ordering::Relaxed) + 1;
            if let Ok(mut histogram) = tally.histogram.lock() {
                histogram.saturating_record(elapsed.as_micros().max(1) as u64);
            }
            if matches!(workload, Workload::Submit { .. })
                && config.proof_sample_every > 0
                && count.is_multiple_of(config.proof_sample_every)
            {
                if let Ok(mut samples) = tally.samples.lock() {
                    samples.push(String::from_utf8_lossy(&bytes).into_owned());
                }
            }
        }
        Ok((status, _)) => tally.error(format!("HTTP {status}")),
        Err(error) => {
            let kind = if error.is_timeout() {
                "timeout".to_owned()
            } else if error.is_connect() {
                "connect".to_owned()
            } else {
                root_cause(&error)
            };
            tally.error(format!("transport: {kind}"));
        }
    }
}

/// The innermost cause of a transport error (e.g. "connection closed before message
/// completed"), which says more than reqwest's outer "error sending request".
fn root_cause(error: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    let text = cause.to_string();
    text.chars().take(80).collect()
}

/// Runs `workload` as `config` says and reports what happened.
pub async fn run_load(config: &LoadConfig, workload: &Workload) -> Result<LoadReport> {
    if config.targets.is_empty() {
        bail!("no target URL");
    }
    let config = Arc::new(LoadConfig {
        targets: config
            .targets
            .iter()
            .map(|t| t.trim_end_matches('/').to_owned())
            .collect(),
        ..config.clone()
    });
    let connections = match config.arrival {
        Arrival::Closed { concurrency } => concurrency,
        Arrival::Open { max_in_flight, .. } => max_in_flight,
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections.max(1))
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .timeout(config.request_timeout)
        .build()?;
    let tally = Arc::new(Tally::new()?);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + config.duration;
    let workload = Arc::new(workload.clone());

    match config.arrival {
        Arrival::Closed { concurrency } => {
            let mut clients = Vec::with_capacity(concurrency);
            for _ in 0..concurrency.max(1) {
                let (client, config, workload, tally, next) = (
                    client.clone(),
                    config.clone(),
                    workload.clone(),
                    tally.clone(),
                    next.clone(),
                );
                clients.push(tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        if workload.request(index).is_none() {
                            tally.exhausted.store(true, Ordering::Relaxed);
                            break;
                        }
                        one_request(&client, &config, &workload, &tally, index, Instant::now())
                            .await;
                    }
                }));
            }
            for handle in clients {
                handle.await?;
            }
        }
        Arrival::Open {
            rate,
            max_in_flight,
        } => {
            if rate <= 0.0 || !rate.is_finite() {
                bail!("open-loop rate must be positive");
            }
            let in_flight = Arc::new(tokio::sync::Semaphore::new(max_in_flight.max(1)));
            let mut tasks = tokio::task::JoinSet::new();
            for index in 0usize.. {
                let scheduled = start + Duration::from_secs_f64(index as f64 / rate);
                if scheduled >= deadline {
                    break;
                }
                if workload.request(index).is_none() {
                    tally.exhausted.store(true, Ordering::Relaxed);
                    break;
                }
                tokio::time::sleep_until(scheduled.into()).await;
                let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                    tally.error("client: in-flight cap".into());
                    continue;
                };
                let (client, config, workload, tally) = (
                    client.clone(),
                    config.clone(),
                    workload.clone(),
                    tally.clone(),
                );
                tasks.spawn(async move {
                    one_request(&client, &config, &workload, &tally, index, scheduled).await;
                    drop(permit);
                });
                // Reap finished tasks so the set does not grow with the run.
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
        }
    }

    let end = tally
        .last_answer
        .lock()
        .ok()
        .and_then(|last| *last)
        .unwrap_or_else(Instant::now);
    let elapsed = end.saturating_duration_since(start).as_secs_f64().max(1e-9);
    let succeeded = tally.succeeded.load(Ordering::Relaxed);
    let latency = tally
        .histogram
        .lock()
        .map(|h| LatencySummary::from_histogram(&h))
        .unwrap_or_default();
    let errors = tally.errors.lock().map(|e| e.clone()).unwrap_or_default();

    // Proofs are checked after the clock stopped so the checks do not steal CPU from the run.
    let mut proofs = ProofChecks::default();
    let samples = tally.samples.lock().map(|s| s.clone()).unwrap_or_default();
    for sample in samples {
        proofs.checked += 1;
        let verdict = serde_json::from_str::<serde_json::Value>(&sample)
            .map_err(anyhow::Error::from)
            .and_then(|entry| crate::check_logged_entry(&entry));
        if let Err(error) = verdict {
            proofs.failed += 1;
            proofs
                .first_failure
                .get_or_insert_with(|| error.to_string());
        }
    }

    Ok(LoadReport {
        workload: workload.name().to_owned(),
        arrival: match config.arrival {
            Arrival::Closed { concurrency } => format!("closed loop, {concurrency} clients"),
            Arrival::Open {
                rate,
                max_in_flight,
            } => format!("open loop, {rate}/s, at most {max_in_flight} in flight"),
        },
        targets: config.targets.len(),
        elapsed_s: elapsed,
        sent: tally.sent.load(Ordering::Relaxed),
        succeeded,
        errors,
        throughput_per_s: succeeded as f64 / elapsed,
        latency,
        exhausted: tally.exhausted.load(Ordering::Relaxed),
        proofs,
    })
}
