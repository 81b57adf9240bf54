//! The load runner: sends a [`Workload`] to one or more nodes over keep-alive HTTP/1.1
//! connections, either closed-loop (N clients, each waiting for its answer before the next
//! request) or open-loop (a fixed arrival rate, whatever the answers do), and summarises the
//! outcome with an HDR histogram. Closed-loop clients of plain-HTTP targets each keep one
//! connection of their own ([`OwnConnection`]); HTTPS targets and open-loop runs go through
//! reqwest's pool.
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

/// How a client reaches the targets.
enum Transport {
    /// reqwest's pooled client: any scheme, and the target chosen per request.
    Pooled(reqwest::Client),
    /// The client's own connection to one plain-HTTP target ([`OwnConnection`]).
    Own(OwnConnection),
}

/// Why a request got no answer.
enum TransportError {
    Timeout,
    Connect,
    /// The innermost cause, e.g. "connection closed before message completed".
    Other(String),
}

impl TransportError {
    fn key(&self) -> String {
        match self {
            TransportError::Timeout => "timeout".to_owned(),
            TransportError::Connect => "connect".to_owned(),
            TransportError::Other(cause) => cause.clone(),
        }
    }

    fn from_reqwest(error: &reqwest::Error) -> Self {
        if error.is_timeout() {
            TransportError::Timeout
        } else if error.is_connect() {
            TransportError::Connect
        } else {
            TransportError::Other(root_cause(error))
        }
    }
}

/// One closed-loop client's own keep-alive HTTP/1.1 connection to a plain-HTTP target, remade
/// after any error or a `connection: close` answer.
///
/// The load generator shares the cores it measures, so its cost per request comes out of the
/// rate it reports. This client writes each request (head and body) with one `write` and reads
/// the answer on the client's own task, with `httparse` for the head: no connection task, no
/// channels between the two, no header map. Profiles of the earlier clients under the
/// benchmark's load had a fifth of the generator's CPU in reqwest's pool, redirect policy and URL
/// parsing, then hyper's dispatch between the client's task and the connection's.
///
/// Answers must carry `content-length` or end with the connection; a chunked answer is an error
/// (none of the servers the benchmark measures sends one).
struct OwnConnection {
    /// `host:port`.
    authority: String,
    stream: Option<tokio::net::TcpStream>,
    /// The request being sent (reused: its allocation outlives each request).
    request: Vec<u8>,
    /// Bytes read and not yet handed out.
    answer: bytes::BytesMut,
}

/// Longest wait for a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Most bytes of one answer that are read (the largest the log serves is an entry bundle of
/// 256 entries of at most 64 KiB each); beyond, the request counts as an error.
const MAX_ANSWER_BYTES: usize = 17 * 1024 * 1024;

/// Most header lines of an answer the client parses.
const MAX_ANSWER_HEADERS: usize = 32;

/// Where reading an answer stopped.
enum AnswerError {
    /// The connection closed before the first byte of the answer: on a connection that served
    /// before, the server closed it while idle and the request can go again on a fresh one.
    ClosedBeforeAnswer,
    Failed(TransportError),
}

impl OwnConnection {
    /// `None` unless `target` is a plain `http://host:port` base URL.
    fn for_target(target: &str) -> Option<Self> {
        let authority = target.strip_prefix("http://")?;
        (!authority.is_empty() && !authority.contains('/')).then(|| Self {
            authority: authority.to_owned(),
            stream: None,
            request: Vec::with_capacity(4096),
            answer: bytes::BytesMut::with_capacity(16 * 1024),
        })
    }

    async fn connect(&self) -> Result<tokio::net::TcpStream, TransportError> {
        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect(&self.authority),
        )
        .await
        .map_err(|_| TransportError::Connect)?
        .map_err(|_| TransportError::Connect)?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// Sends one request and reads the whole answer.
    async fn send(
        &mut self,
        method: reqwest::Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(u16, Bytes), TransportError> {
        self.write_request(&method, path, body.as_deref());
        let (mut stream, mut reused) = match self.stream.take() {
            Some(stream) => (stream, true),
            None => (self.connect().await?, false),
        };
        loop {
            self.answer.clear();
            let outcome = match write_all(&mut stream, &self.request).await {
                Ok(()) => read_answer(&mut stream, &mut self.answer).await,
                // A write to a connection the server has closed fails or, with the close not
                // yet seen, succeeds and reads nothing back: either way, once more afresh.
                Err(_) if reused => Err(AnswerError::ClosedBeforeAnswer),
                Err(error) => Err(AnswerError::Failed(TransportError::Other(error))),
            };
            match outcome {
                Ok(Answer {
                    status,
                    body,
                    keep_alive,
                }) => {
                    // Kept only after a complete exchange: an error drops the connection.
                    if keep_alive {
                        self.stream = Some(stream);
                    }
                    return Ok((status, body));
                }
                Err(AnswerError::ClosedBeforeAnswer) if reused => {
                    stream = self.connect().await?;
                    reused = false;
                }
                Err(AnswerError::ClosedBeforeAnswer) => {
                    return Err(TransportError::Other(
                        "connection closed before message completed".into(),
                    ))
                }
                Err(AnswerError::Failed(error)) => return Err(error),
            }
        }
    }

    fn write_request(&mut self, method: &reqwest::Method, path: &str, body: Option<&[u8]>) {
        // Pieces copied in, no formatting machinery: this runs once per request on the cores
        // being measured.
        let request = &mut self.request;
        request.clear();
        for piece in [
            method.as_str().as_bytes(),
            b" ",
            path.as_bytes(),
            b" HTTP/1.1\r\nhost: ",
            self.authority.as_bytes(),
            b"\r\n",
        ] {
            request.extend_from_slice(piece);
        }
        if let Some(body) = body {
            request.extend_from_slice(b"content-type: application/json\r\ncontent-length: ");
            request.extend_from_slice(body.len().to_string().as_bytes());
            request.extend_from_slice(b"\r\n\r\n");
            request.extend_from_slice(body);
        } else {
            request.extend_from_slice(b"\r\n");
        }
    }
}

async fn write_all(stream: &mut tokio::net::TcpStream, bytes: &[u8]) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    stream.write_all(bytes).await.map_err(|e| e.to_string())
}

/// A complete answer.
struct Answer {
    status: u16,
    body: Bytes,
    /// The connection can carry the next request.
    keep_alive: bool,
}

/// Reads one answer into `buffer` (empty on entry).
async fn read_answer(
    stream: &mut tokio::net::TcpStream,
    buffer: &mut bytes::BytesMut,
) -> Result<Answer, AnswerError> {
    use tokio::io::AsyncReadExt;
    let failed = |text: String| AnswerError::Failed(TransportError::Other(text));
    let mut head: Option<AnswerHead> = None;
    loop {
        if let Some(parsed) = &head {
            if let Some(length) = parsed.content_length {
                let total = parsed.length + length;
                if buffer.len() > total {
                    return Err(failed("bytes after the answer".into()));
                }
                if buffer.len() == total {
                    let mut answer = buffer.split_to(total);
                    return Ok(Answer {
                        status: parsed.status,
                        body: answer.split_off(parsed.length).freeze(),
                        keep_alive: parsed.keep_alive,
                    });
                }
            }
        } else {
            head = AnswerHead::parse(buffer).map_err(failed)?;
            if let Some(parsed) = &head {
                if parsed.content_length.is_some_and(|n| n > MAX_ANSWER_BYTES) {
                    return Err(failed("length limit exceeded".into()));
                }
                continue;
            }
        }
        if buffer.len() >= MAX_ANSWER_BYTES {
            return Err(failed("length limit exceeded".into()));
        }
        if buffer.capacity() - buffer.len() < 4096 {
            buffer.reserve(16 * 1024);
        }
        let read = stream
            .read_buf(buffer)
            .await
            .map_err(|e| failed(e.to_string()))?;
        if read > 0 {
            continue;
        }
        // End of stream: the end of an answer without a length, or a failure.
        return match head {
            None if buffer.is_empty() => Err(AnswerError::ClosedBeforeAnswer),
            Some(parsed) if parsed.content_length.is_none() => {
                let mut answer = buffer.split();
                Ok(Answer {
                    status: parsed.status,
                    body: answer.split_off(parsed.length).freeze(),
                    keep_alive: false,
                })
            }
            _ => Err(failed("connection closed before message completed".into())),
        };
    }
}

/// What the client needs of an answer's head.
struct AnswerHead {
    status: u16,
    /// Bytes of the head, blank line included.
    length: usize,
    /// `None`: the body ends with the connection.
    content_length: Option<usize>,
    keep_alive: bool,
}

impl AnswerHead {
    /// `Ok(None)` while the head is incomplete.
    fn parse(bytes: &[u8]) -> Result<Option<Self>, String> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_ANSWER_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let length = match response.parse(bytes) {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(error) => return Err(format!("invalid answer head: {error}")),
        };
        let status = response.code.unwrap_or_default();
        let mut keep_alive = response.version == Some(1);
        let mut content_length = None;
        for header in response.headers.iter() {
            if header.name.eq_ignore_ascii_case("content-length") {
                let value = std::str::from_utf8(header.value)
                    .ok()
                    .and_then(|text| text.trim().parse::<usize>().ok())
                    .ok_or("invalid content-length")?;
                content_length = Some(value);
            } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                return Err("chunked answers are not supported".into());
            } else if header.name.eq_ignore_ascii_case("connection") {
                keep_alive = !header.value.eq_ignore_ascii_case(b"close");
            }
        }
        // 1xx, 204 and 304 answers have no body.
        if status < 200 || status == 204 || status == 304 {
            content_length = Some(0);
        }
        Ok(Some(Self {
            status,
            length,
            content_length,
            keep_alive: keep_alive && content_length.is_some(),
        }))
    }
}

/// Sends `method path` with `body` to the target of request `index` and reads the whole answer.
async fn exchange(
    transport: &mut Transport,
    config: &LoadConfig,
    index: usize,
    (method, path, body): (reqwest::Method, String, Option<Bytes>),
) -> Result<(u16, Bytes), TransportError> {
    match transport {
        Transport::Own(connection) => {
            tokio::time::timeout(config.request_timeout, connection.send(method, &path, body))
                .await
                .unwrap_or_else(|_| {
                    // The connection may still carry the late answer: start afresh.
                    connection.stream = None;
                    Err(TransportError::Timeout)
                })
        }
        Transport::Pooled(client) => {
            let target = &config.targets[index % config.targets.len()];
            let mut request = client.request(method, format!("{target}{path}"));
            if let Some(body) = body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body);
            }
            let response = request
                .send()
                .await
                .map_err(|e| TransportError::from_reqwest(&e))?;
            let status = response.status().as_u16();
            // Read the whole body: the latency is "until the answer is in", as a client sees it.
            let bytes = rekor_raft::read_answer(response, MAX_ANSWER_BYTES)
                .await
                .map_err(|e| match e {
                    rekor_raft::AnswerError::Http(e) => TransportError::from_reqwest(&e),
                    too_large => TransportError::Other(too_large.to_string()),
                })?;
            Ok((status, Bytes::from(bytes)))
        }
    }
}

/// Sends one request and records its outcome. `started` is when the request counts as issued.
async fn one_request(
    transport: &mut Transport,
    config: &LoadConfig,
    workload: &Workload,
    tally: &Tally,
    index: usize,
    started: Instant,
) {
    let Some(request) = workload.request(index) else {
        return;
    };
    tally.sent.fetch_add(1, Ordering::Relaxed);
    let outcome = exchange(transport, config, index, request).await;
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
        Err(error) => tally.error(format!("transport: {}", error.key())),
    }
}

/// The innermost cause of a transport error (e.g. "connection closed before message
/// completed"), which says more than the outer "error sending request".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
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
            // Plain-HTTP targets: each client keeps its own connection to one of them, the
            // clients spread over the targets in turn; otherwise all share reqwest's pool.
            let own_connections = config
                .targets
                .iter()
                .all(|target| OwnConnection::for_target(target).is_some());
            let mut clients = Vec::with_capacity(concurrency);
            for number in 0..concurrency.max(1) {
                let mut transport = if own_connections {
                    let target = &config.targets[number % config.targets.len()];
                    match OwnConnection::for_target(target) {
                        Some(connection) => Transport::Own(connection),
                        None => Transport::Pooled(client.clone()),
                    }
                } else {
                    Transport::Pooled(client.clone())
                };
                let (config, workload, tally, next) = (
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
                        one_request(
                            &mut transport,
                            &config,
                            &workload,
                            &tally,
                            index,
                            Instant::now(),
                        )
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
                let (mut transport, config, workload, tally) = (
                    Transport::Pooled(client.clone()),
                    config.clone(),
                    workload.clone(),
                    tally.clone(),
                );
                tasks.spawn(async move {
                    one_request(&mut transport, &config, &workload, &tally, index, scheduled).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers `answers_per_connection` requests on each connection and then
    /// closes it, saying so in the last answer (as a server at its keep-alive limit does);
    /// counts connections.
    async fn closing_server(answers_per_connection: usize) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 4096];
                    for answer in 1..=answers_per_connection {
                        let mut head = Vec::new();
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut buffer).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&buffer[..n]),
                            }
                        }
                        let close = if answer == answers_per_connection {
                            "connection: close\r\n"
                        } else {
                            ""
                        };
                        let response =
                            format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n{close}\r\nok");
                        if stream.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (format!("http://{address}"), connections)
    }

    #[tokio::test]
    async fn own_connections_are_remade_when_the_server_closes_them() {
        let (target, connections) = closing_server(3).await;
        let config = LoadConfig {
            targets: vec![target],
            arrival: Arrival::Closed { concurrency: 2 },
            duration: Duration::from_millis(600),
            proof_sample_every: 0,
            request_timeout: Duration::from_secs(5),
        };
        let workload = Workload::Get {
            paths: Arc::new(vec!["/a".into()]),
        };
        let report = run_load(&config, &workload).await.unwrap();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert!(report.succeeded >= 12, "{}", report.succeeded);
        // Every connection served at most three requests, so more were made than clients.
        let made = connections.load(Ordering::Relaxed) as u64;
        assert!(
            made * 3 >= report.succeeded,
            "{made} for {}",
            report.succeeded
        );
        assert!(made > 2, "{made}");
    }

    /// The own connection itself (not reqwest's pool) remakes its connection each time the
    /// server closes it: ten requests on a server closing after three take four connections.
    #[tokio::test]
    async fn an_own_connection_reconnects_after_the_server_closes_it() {
        let (target, connections) = closing_server(3).await;
        let mut connection = OwnConnection::for_target(&target).unwrap();
        for _ in 0..10 {
            let answer = connection.send(reqwest::Method::GET, "/a", None).await;
            assert!(
                matches!(&answer, Ok((200, body)) if body.as_ref() == b"ok"),
                "{:?}",
                answer.as_ref().map_err(TransportError::key)
            );
        }
        assert_eq!(connections.load(Ordering::Relaxed), 4);
    }

    /// A server that answers each connection's first request with `answer` (raw bytes, written
    /// one byte at a time so the client sees it in pieces) and closes the connection.
    async fn raw_answer_server(answer: &'static [u8]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buffer[..n]),
                        }
                    }
                    for byte in answer {
                        if stream.write_all(&[*byte]).await.is_err() {
                            return;
                        }
                        let _ = stream.flush().await;
                    }
                });
            }
        });
        format!("http://{address}")
    }

    #[tokio::test]
    async fn an_answer_in_pieces_and_one_ended_by_the_connection_are_read_whole() {
        let target =
            raw_answer_server(b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\n\r\nhello").await;
        let mut connection = OwnConnection::for_target(&target).unwrap();
        let answer = connection.send(reqwest::Method::GET, "/a", None).await;
        assert!(
            matches!(&answer, Ok((201, body)) if body.as_ref() == b"hello"),
            "{:?}",
            answer.as_ref().map_err(TransportError::key)
        );

        let target =
            raw_answer_server(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end").await;
        let mut connection = OwnConnection::for_target(&target).unwrap();
        for _ in 0..2 {
            let answer = connection.send(reqwest::Method::GET, "/a", None).await;
            assert!(
                matches!(&answer, Ok((200, body)) if body.as_ref() == b"until the end"),
                "{:?}",
                answer.as_ref().map_err(TransportError::key)
            );
            assert!(
                connection.stream.is_none(),
                "a closed connection is not kept"
            );
        }
    }

    #[tokio::test]
    async fn chunked_and_truncated_answers_are_errors() {
        let target = raw_answer_server(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        )
        .await;
        let mut connection = OwnConnection::for_target(&target).unwrap();
        match connection.send(reqwest::Method::GET, "/a", None).await {
            Err(TransportError::Other(text)) => assert!(text.contains("chunked"), "{text}"),
            other => panic!("{:?}", other.map_err(|e| e.key())),
        }

        let target = raw_answer_server(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort").await;
        let mut connection = OwnConnection::for_target(&target).unwrap();
        match connection.send(reqwest::Method::GET, "/a", None).await {
            Err(TransportError::Other(text)) => assert!(text.contains("closed"), "{text}"),
            other => panic!("{:?}", other.map_err(|e| e.key())),
        }
    }

    /// The request goes out as one well-formed HTTP/1.1 message: the server parses it with
    /// httparse and echoes the body it read by `content-length`.
    #[tokio::test]
    async fn a_post_arrives_with_its_body_and_headers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut received = Vec::new();
            let mut buffer = [0u8; 4096];
            loop {
                let n = stream.read(&mut buffer).await.unwrap();
                assert!(n > 0, "closed early");
                received.extend_from_slice(&buffer[..n]);
                let mut headers = [httparse::EMPTY_HEADER; 16];
                let mut request = httparse::Request::new(&mut headers);
                if let httparse::Status::Complete(head) = request.parse(&received).unwrap() {
                    assert_eq!(request.method, Some("POST"));
                    assert_eq!(request.path, Some("/api/v2/log/entries"));
                    let header = |name: &str| {
                        request
                            .headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case(name))
                            .map(|h| String::from_utf8_lossy(h.value).into_owned())
                    };
                    assert_eq!(header("host"), Some(address.to_string()));
                    assert_eq!(header("content-type").as_deref(), Some("application/json"));
                    let length: usize = header("content-length").unwrap().parse().unwrap();
                    if received.len() >= head + length {
                        let body = received[head..head + length].to_vec();
                        let answer =
                            format!("HTTP/1.1 201 Created\r\ncontent-length: {length}\r\n\r\n");
                        stream.write_all(answer.as_bytes()).await.unwrap();
                        stream.write_all(&body).await.unwrap();
                        return;
                    }
                }
            }
        });
        let mut connection = OwnConnection::for_target(&format!("http://{address}")).unwrap();
        let body = Bytes::from(vec![b'x'; 100_000]);
        let answer = connection
            .send(
                reqwest::Method::POST,
                "/api/v2/log/entries",
                Some(body.clone()),
            )
            .await;
        assert!(
            matches!(&answer, Ok((201, echoed)) if *echoed == body),
            "{:?}",
            answer
                .as_ref()
                .map(|(status, _)| *status)
                .map_err(TransportError::key)
        );
    }

    #[test]
    fn only_plain_http_base_urls_get_own_connections() {
        assert!(OwnConnection::for_target("http://127.0.0.1:80").is_some());
        assert!(OwnConnection::for_target("https://127.0.0.1:443").is_none());
        assert!(OwnConnection::for_target("http://127.0.0.1:80/prefix").is_none());
        assert!(OwnConnection::for_target("http://").is_none());
    }
}
