//! The read listener (`--read-listen`): the checkpoint, hash tiles and entry bundles over plain
//! HTTP/1.1, with stored entry bundles sent from their files by `sendfile(2)`.
//!
//! Why a listener of its own: actix-http copies every response body into its connection's write
//! buffer before the socket sees it. For an 8 KiB tile that copy is noise; for a 250 KB entry
//! bundle it is most of the work, and the public listener serves bundles at half of nginx's rate
//! (docs/benchmarks.md). Here an entry bundle on a local tile store goes from the page cache to
//! the socket without entering this process; everything else (the checkpoint, hash tiles, which
//! are small enough that one write from the read cache beats opening a file, partial bundles cut
//! from wider ones, objects on a bucket) is read through the node's backend exactly as the
//! public listener reads it, and answered with the same status, body and headers. It is meant as
//! the origin of a CDN or of a TLS-terminating proxy, the way upstream serves its tiles from a
//! bucket rather than from the API server: no TLS and no write API here.
//!
//! Bounds (DESIGN.md, "bounded work"), from the public listener's limits: at most
//! `max_connections` connections (beyond them, accepting pauses); a new request's first byte
//! within the keep-alive time; its whole head within the header deadline and [`MAX_HEAD_BYTES`];
//! no request bodies (a request announcing one is answered 400 and its connection closed); each
//! answer sent within [`SEND_TIMEOUT`].
//!
//! It runs on threads and tokio runtimes of its own: a `sendfile` from a cold disk blocks its
//! thread while the disk reads, and that must never delay Raft's tasks on the node's runtime.

mod request;
mod response;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::{Bytes, BytesMut};
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};
use rekor_api::backend::{LogBackend, TileRequest};
use rekor_api::limits::ListenerLimits;
use rekor_api::response::{status_body, GrpcCode};
use rekor_storage::tiles::TilePath;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, debug_span, info, warn, Instrument};

use crate::backend::NodeBackend;
use request::{read_head, HeadError, Method, RequestHead, MAX_HEAD_BYTES};
use response::{Body, Kind};

/// Longest one answer may take to send (a 1 MiB bundle at 280 kbit/s): a reader that stops
/// reading loses its connection instead of holding it.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Counters of the read listener.
#[derive(Clone)]
pub struct ReadListenerMetrics {
    requests: IntCounterVec,
    /// The series every answered read touches, looked up once: a labelled lookup hashes its
    /// label values and takes a lock, which on this path costs about what parsing the request
    /// does.
    per_object: Arc<[ObjectMetrics; Object::ALL.len()]>,
    bytes_sent: IntCounter,
    file_bytes_sent: IntCounter,
    connections: IntGauge,
}

/// One object kind's latency histogram and its counter of 200 answers (none for
/// [`Object::Other`], which never answers 200: no series that stays at zero).
struct ObjectMetrics {
    ok: Option<IntCounter>,
    latency: Histogram,
}

/// What a request asked for, as the metrics label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Object {
    Checkpoint,
    Tile,
    Bundle,
    /// Unknown paths and unreadable requests.
    Other,
}

impl Object {
    /// Every kind, in the order of its discriminant.
    const ALL: [Object; 4] = [
        Object::Checkpoint,
        Object::Tile,
        Object::Bundle,
        Object::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            Object::Checkpoint => "checkpoint",
            Object::Tile => "tile",
            Object::Bundle => "bundle",
            Object::Other => "other",
        }
    }
}

impl ReadListenerMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "rekor_read_listener_requests_total",
                "Requests answered by the read listener, by object kind and status code",
            ),
            &["object", "code"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "rekor_read_listener_request_duration_seconds",
                "Time from a complete request head to its answer sent, by object kind",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
            &["object"],
        )?;
        let bytes_sent = IntCounter::new(
            "rekor_read_listener_sent_bytes_total",
            "Bytes the read listener sent, heads and bodies",
        )?;
        let file_bytes_sent = IntCounter::new(
            "rekor_read_listener_file_bytes_total",
            "Body bytes the read listener sent straight from tile files (sendfile)",
        )?;
        let connections = IntGauge::new(
            "rekor_read_listener_connections",
            "Connections the read listener holds open",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(bytes_sent.clone()))?;
        registry.register(Box::new(file_bytes_sent.clone()))?;
        registry.register(Box::new(connections.clone()))?;
        let per_object = Arc::new(Object::ALL.map(|object| {
            ObjectMetrics {
                ok: (object != Object::Other)
                    .then(|| requests.with_label_values(&[object.label(), status_label(200)])),
                latency: latency.with_label_values(&[object.label()]),
            }
        }));
        Ok(Self {
            requests,
            per_object,
            bytes_sent,
            file_bytes_sent,
            connections,
        })
    }

    /// Counts one answer and its time from a complete head to sent.
    fn answered(&self, object: Object, status: u16, took: Duration) {
        let series = &self.per_object[object as usize];
        if let (200, Some(ok)) = (status, &series.ok) {
            ok.inc();
        } else {
            self.requests
                .with_label_values(&[object.label(), status_label(status)])
                .inc();
        }
        series.latency.observe(took.as_secs_f64());
    }
}

/// Starts serving `listener` on threads of its own; it serves until the process exits (reads
/// are idempotent, so nothing is left half done when it does).
///
/// One thread accepts and deals the connections out in turn to one worker thread per core, each
/// a single-threaded runtime that keeps its connections for their lifetime (actix's shape): a
/// request is read, answered and its connection polled again on one thread, with no wake-ups
/// across threads.
pub fn start(
    listener: TcpListener,
    backend: Arc<NodeBackend>,
    limits: ListenerLimits,
    metrics: ReadListenerMetrics,
) -> Result<()> {
    let address = listener
        .local_addr()
        .context("the read listener's address")?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut workers = Vec::with_capacity(threads);
    for index in 0..threads {
        let (sender, receiver) = mpsc::unbounded_channel();
        let runtime = single_thread_runtime()?;
        let backend = backend.clone();
        let metrics = metrics.clone();
        std::thread::Builder::new()
            .name(format!("rekor-read-{index}"))
            .spawn(move || runtime.block_on(work(receiver, backend, limits, metrics)))
            .context("starting a read listener worker")?;
        workers.push(sender);
    }
    let runtime = single_thread_runtime()?;
    listener
        .set_nonblocking(true)
        .context("making the read listener non-blocking")?;
    std::thread::Builder::new()
        .name("rekor-read-accept".into())
        .spawn(move || {
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => accept(listener, workers, limits).await,
                    Err(error) => warn!(%error, "the read listener cannot serve"),
                }
            })
        })
        .context("starting the read listener's thread")?;
    info!(%address, threads, "read listener serving (checkpoint, tiles, bundles)");
    Ok(())
}

fn single_thread_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building a read listener runtime")
}

/// A connection and the slot it holds under the connection cap.
type Accepted = (std::net::TcpStream, OwnedSemaphorePermit);

async fn accept(
    listener: tokio::net::TcpListener,
    workers: Vec<mpsc::UnboundedSender<Accepted>>,
    limits: ListenerLimits,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    for worker in workers.iter().cycle() {
        // A free slot first: at the cap, connections wait in the kernel's backlog.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream.into_std(),
            Err(error) => {
                // Out of descriptors or similar: back off rather than spin.
                warn!(%error, "read listener: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match stream {
            Ok(stream) => {
                if worker.send((stream, slot)).is_err() {
                    warn!("a read listener worker stopped; the listener stops accepting");
                    return;
                }
            }
            Err(error) => debug!(%error, "read listener: taking an accepted connection failed"),
        }
    }
}

/// One worker: serves every connection dealt to it, each on a task of this thread.
async fn work(
    mut connections: mpsc::UnboundedReceiver<Accepted>,
    backend: Arc<NodeBackend>,
    limits: ListenerLimits,
    metrics: ReadListenerMetrics,
) {
    while let Some((stream, slot)) = connections.recv().await {
        let stream = match TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(error) => {
                debug!(%error, "read listener: registering a connection failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            backend: backend.clone(),
            limits,
            metrics: metrics.clone(),
        };
        tokio::spawn(async move {
            connection.metrics.connections.inc();
            connection.serve(stream).await;
            connection.metrics.connections.dec();
            drop(slot);
        });
    }
}

struct Connection {
    backend: Arc<NodeBackend>,
    limits: ListenerLimits,
    metrics: ReadListenerMetrics,
}

/// One answer before it is sent.
struct Answer {
    status: u16,
    kind: Kind,
    body: Body,
    object: Object,
}

impl Connection {
    async fn serve(&self, mut stream: TcpStream) {
        let mut buffer = BytesMut::with_capacity(1024);
        // A connection not used yet is idle like one between requests: a proxy's or CDN's spare
        // gets the keep-alive time, not the header deadline (rekor_api::deadlines).
        let idle = self.limits.keep_alive;
        loop {
            let head =
                match read_head(&mut stream, &mut buffer, idle, self.limits.header_timeout).await {
                    Ok(head) => head,
                    Err(error) => {
                        self.refuse(&mut stream, error).await;
                        return;
                    }
                };
            let started = Instant::now();
            let keep_alive = head.keep_alive && !head.has_body;
            // A debug span, not the public listener's info span: reads are the hot path here, and
            // the request counters and latency histogram already cover them at info level.
            let span = debug_span!("read", method = ?head.method, path = %head.path);
            let answer = self.answer(&head).instrument(span.clone()).await;
            let head_only = head.method == Method::Head;
            let head_bytes =
                response::head(answer.status, answer.kind, answer.body.len(), keep_alive);
            let sent = tokio::time::timeout(
                SEND_TIMEOUT,
                response::send(&mut stream, head_bytes, &answer.body, head_only),
            )
            .instrument(span)
            .await;
            self.metrics
                .answered(answer.object, answer.status, started.elapsed());
            match sent {
                Ok(Ok(bytes)) => {
                    self.metrics.bytes_sent.inc_by(bytes);
                    if let (Body::File { len, .. }, false) = (&answer.body, head_only) {
                        self.metrics.file_bytes_sent.inc_by(*len);
                    }
                }
                Ok(Err(error)) => {
                    debug!(%error, path = %head.path, "read listener: sending an answer failed");
                    return;
                }
                Err(_) => {
                    debug!(path = %head.path, "read listener: the reader took too long");
                    return;
                }
            }
            if !keep_alive {
                return;
            }
        }
    }

    /// Answers a head that never completed, where an answer is due, and closes.
    async fn refuse(&self, stream: &mut TcpStream, error: HeadError) {
        let (status, code, message) = match error {
            HeadError::Idle | HeadError::Io(_) => return,
            HeadError::Timeout => (408, GrpcCode::DeadlineExceeded, "request header timeout"),
            HeadError::TooLarge => (
                431,
                GrpcCode::InvalidArgument,
                "request header fields too large",
            ),
            HeadError::Malformed => (400, GrpcCode::InvalidArgument, "malformed request"),
        };
        debug!(
            ?error,
            limit = MAX_HEAD_BYTES,
            "read listener: refusing a request head"
        );
        let body = Body::Bytes(Bytes::from(status_body(code, message)));
        let head = response::head(status, response::STATUS_JSON, body.len(), false);
        let _ =
            tokio::time::timeout(SEND_TIMEOUT, response::send(stream, head, &body, false)).await;
        self.metrics
            .requests
            .with_label_values(&[Object::Other.label(), status_label(status)])
            .inc();
    }

    async fn answer(&self, head: &RequestHead) -> Answer {
        if head.has_body {
            return status_answer(
                400,
                GrpcCode::InvalidArgument,
                "request bodies are not accepted here",
                Object::Other,
            );
        }
        // `None` for the checkpoint, the parsed tile path otherwise.
        let tile = if head.path == "/api/v2/checkpoint" {
            None
        } else {
            match head
                .path
                .strip_prefix("/api/v2/tile/")
                .and_then(TileRequest::parse)
            {
                Some(request) => Some(request),
                None => return status_answer(404, GrpcCode::NotFound, "Not Found", Object::Other),
            }
        };
        let object = match tile {
            None => Object::Checkpoint,
            Some(TileRequest(TilePath::Entries(_))) => Object::Bundle,
            Some(TileRequest(TilePath::Hash(_))) => Object::Tile,
        };
        if head.method == Method::Other {
            // As the public listener (grpc-gateway): a known path with the wrong method is 501.
            return status_answer(501, GrpcCode::Unimplemented, "Method Not Allowed", object);
        }
        match tile {
            None => self.checkpoint().await,
            Some(request) => self.tile(request, object).await,
        }
    }

    async fn checkpoint(&self) -> Answer {
        match self.backend.checkpoint().await {
            Ok(Some(text)) => Answer {
                status: 200,
                kind: response::CHECKPOINT,
                body: Body::Bytes(text),
                object: Object::Checkpoint,
            },
            Ok(None) => status_answer(404, GrpcCode::NotFound, "Not Found", Object::Checkpoint),
            Err(error) => {
                warn!(%error, "read listener: reading the checkpoint failed");
                internal_error(Object::Checkpoint)
            }
        }
    }

    async fn tile(&self, request: TileRequest, object: Object) -> Answer {
        if !request.is_within(self.backend.served_size()) {
            return status_answer(404, GrpcCode::NotFound, "Not Found", object);
        }
        // Bundles (~250 KB) from their files; hash tiles (at most 8 KiB) from the read cache,
        // where one write is cheaper than opening a file.
        let local_file = match request.0 {
            TilePath::Entries(_) => self.backend.store.local_file(&request.path()),
            TilePath::Hash(_) => None,
        };
        if let Some(path) = local_file {
            match open_whole(&path) {
                Ok(Some(body)) => {
                    return Answer {
                        status: 200,
                        kind: response::IMMUTABLE_OBJECT,
                        body,
                        object,
                    }
                }
                // Not written under this name (a partial cut from a wider tile): the backend.
                Ok(None) => {}
                Err(error) => {
                    warn!(%error, tile = %request, "read listener: opening a tile failed");
                    return internal_error(object);
                }
            }
        }
        match self.backend.read_tile(request).await {
            Ok(Some(bytes)) => Answer {
                status: 200,
                kind: response::IMMUTABLE_OBJECT,
                body: Body::Bytes(bytes),
                object,
            },
            Ok(None) => status_answer(404, GrpcCode::NotFound, "Not Found", object),
            Err(error) => {
                warn!(%error, tile = %request, "read listener: reading a tile failed");
                internal_error(object)
            }
        }
    }
}

/// Opens the file at `path` with its length; `None` if there is none.
fn open_whole(path: &std::path::Path) -> std::io::Result<Option<Body>> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None)
        }
        Err(error) => return Err(error),
    };
    let len = file.metadata()?.len();
    Ok(Some(Body::File { file, len }))
}

fn status_answer(status: u16, code: GrpcCode, message: &str, object: Object) -> Answer {
    Answer {
        status,
        kind: response::STATUS_JSON,
        body: Body::Bytes(Bytes::from(status_body(code, message))),
        object,
    }
}

fn internal_error(object: Object) -> Answer {
    status_answer(500, GrpcCode::Internal, "internal server error", object)
}

fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        400 => "400",
        404 => "404",
        408 => "408",
        431 => "431",
        500 => "500",
        501 => "501",
        _ => "other",
    }
}
