//! What one request body may cost a listener, decided before and while it is read.
//!
//! A listener that reads bodies at the client's pace and holds what it read is open to the
//! cheapest attacks there are: a client that sends a body one byte a minute holds a worker slot
//! and a buffer forever, and a few hundred clients that each start a 4 MiB body hold a gigabyte.
//! Connection-level bounds are applied where the servers are built: the connection cap is an
//! actix server setting, and the deadlines between requests (keep-alive, header deadline) are
//! [`crate::deadlines`], which this middleware tells when each request's handler runs. This
//! module adds the two bounds on bodies that actix-web does not have, as a middleware in front
//! of every route of a listener:
//!
//! - a **body deadline**: the whole body must arrive within [`BodyGuard`]'s timeout of the
//!   request's headers, or the request is answered 408 and the connection closed;
//! - a **budget of bytes held** by bodies being read and the requests holding them, shared by
//!   every connection of the listener: a chunk that would take the total over the budget is
//!   refused with a fast 503 (a client may retry), and nothing is allocated for it. A request
//!   whose declared `Content-Length` cannot fit in what is left is refused before a byte of its
//!   body is read.
//!
//! Bytes are counted as they arrive, never reserved from `Content-Length` up front: a client that
//! stalls mid-body holds only what it sent, so stalled connections cannot starve honest ones of
//! budget (the deadline then frees their connections).
//!
//! As with the deadlines between requests, data wins a race with the deadline: body bytes that
//! arrived in time are taken however late a busy worker polls for them.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{HttpMessage, HttpResponse};
use futures::Stream;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::deadlines::ConnectionClock;
use crate::response::{status_body, GrpcCode};

/// Connection and body bounds of one listener. The connection cap is applied by the server, the
/// deadlines between requests by [`crate::deadlines`], the body fields by [`BodyGuard`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Longest a client may take to send a request's headers, from their first byte
    /// ([`crate::deadlines`]).
    pub header_timeout: Duration,
    /// Longest a client may take to send a whole body, counted from its headers.
    pub body_timeout: Duration,
    /// How long an idle connection stays open before its first request and between requests.
    pub keep_alive: Duration,
    /// Most connections the listener holds open at once (beyond it, accepting pauses).
    pub max_connections: usize,
    /// Most bytes of request bodies held at once across the listener's requests.
    pub body_budget_bytes: usize,
}

impl ListenerLimits {
    /// The public listener's defaults: a header deadline of 5 s (actix-web's own), a body
    /// deadline of 10 s (a 4 MiB body at 3.3 Mbit/s), keep-alive 75 s (longer than the idle
    /// timeout of common client pools and load balancers, 60 s, so the client side closes
    /// first), 4,096 connections and 256 MiB of bodies (64 bodies of the largest size).
    pub const PUBLIC: ListenerLimits = ListenerLimits {
        header_timeout: Duration::from_secs(5),
        body_timeout: Duration::from_secs(10),
        keep_alive: Duration::from_secs(75),
        max_connections: 4096,
        body_budget_bytes: 256 * 1024 * 1024,
    };

    /// The internal listener's defaults: peers are few and keep their connections, but Raft
    /// payloads and snapshot chunks are large, so bodies get 30 s and 512 MiB.
    pub const INTERNAL: ListenerLimits = ListenerLimits {
        header_timeout: Duration::from_secs(5),
        body_timeout: Duration::from_secs(30),
        keep_alive: Duration::from_secs(75),
        max_connections: 1024,
        body_budget_bytes: 512 * 1024 * 1024,
    };

    /// `max_connections` split over `workers` actix workers (actix-web counts per worker).
    pub fn max_connections_per_worker(&self, workers: usize) -> usize {
        self.max_connections.div_ceil(workers.max(1)).max(1)
    }
}

/// Metrics of the body bounds, labelled by listener.
#[derive(Clone)]
pub struct BodyMetrics {
    /// `rekor_http_body_bytes_held{listener}`.
    pub held_bytes: IntGaugeVec,
    /// `rekor_http_body_refused_total{listener,reason}`, reason `budget` or `deadline`.
    pub refused: IntCounterVec,
}

impl BodyMetrics {
    /// Creates the metrics and registers them on `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = BodyMetrics {
            held_bytes: IntGaugeVec::new(
                Opts::new(
                    "rekor_http_body_bytes_held",
                    "Bytes of request bodies held by requests in progress",
                ),
                &["listener"],
            )?,
            refused: IntCounterVec::new(
                Opts::new(
                    "rekor_http_body_refused_total",
                    "Requests refused while reading their body: over the byte budget (503) or \
                     past the body deadline (408)",
                ),
                &["listener", "reason"],
            )?,
        };
        registry.register(Box::new(metrics.held_bytes.clone()))?;
        registry.register(Box::new(metrics.refused.clone()))?;
        Ok(metrics)
    }
}

/// The shared byte budget of one listener.
#[derive(Debug)]
pub struct BodyBudget {
    limit: usize,
    held: AtomicUsize,
}

impl BodyBudget {
    pub fn new(limit: usize) -> Self {
        BodyBudget {
            limit,
            held: AtomicUsize::new(0),
        }
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Takes `bytes` from the budget if they fit.
    pub fn try_take(&self, bytes: usize) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    /// Returns `bytes` taken earlier.
    pub fn give_back(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Whether `bytes` more could be taken now (a hint: another request may take them first).
    fn has_room_for(&self, bytes: usize) -> bool {
        self.held().saturating_add(bytes) <= self.limit
    }
}

/// The body bounds of one listener, shared by its workers. Cheap to clone.
#[derive(Clone)]
pub struct BodyGuard {
    listener: &'static str,
    timeout: Duration,
    budget: Arc<BodyBudget>,
    metrics: Option<BodyMetrics>,
}

impl BodyGuard {
    /// Bounds for the listener named `listener` (the metrics label).
    pub fn new(listener: &'static str, limits: &ListenerLimits) -> Self {
        BodyGuard {
            listener,
            timeout: limits.body_timeout,
            budget: Arc::new(BodyBudget::new(limits.body_budget_bytes)),
            metrics: None,
        }
    }

    /// Reports held bytes and refusals on `metrics`.
    pub fn with_metrics(mut self, metrics: BodyMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The shared budget (for tests and status).
    pub fn budget(&self) -> &Arc<BodyBudget> {
        &self.budget
    }

    fn refused(&self, refusal: Refusal) -> HttpResponse {
        if let Some(metrics) = &self.metrics {
            metrics
                .refused
                .with_label_values(&[self.listener, refusal.label()])
                .inc();
        }
        refusal.response()
    }

    fn held_changed(&self, delta: i64) {
        if let Some(metrics) = &self.metrics {
            metrics
                .held_bytes
                .with_label_values(&[self.listener])
                .add(delta);
        }
    }
}

/// The middleware: mount with
/// `.wrap(from_fn(move |req, next| guard_body(guard.clone(), req, next)))`.
/// It must be the outermost middleware that can see a body, so that no inner one reads the
/// body unguarded.
pub async fn guard_body<B: MessageBody>(
    guard: BodyGuard,
    mut request: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|bytes| !guard.budget.has_room_for(bytes)) {
        let response = guard.refused(Refusal::Budget);
        return Ok(request.into_response(response).map_into_right_body());
    }
    // The connection is busy until this request's answer is ready: no deadline between
    // requests runs meanwhile.
    let _in_progress = request
        .conn_data::<ConnectionClock>()
        .map(ConnectionClock::request_started);
    let refusal = Rc::new(Cell::new(None));
    let held = Rc::new(HeldBytes {
        guard: guard.clone(),
        bytes: Cell::new(0),
    });
    let payload = request.take_payload();
    let guarded = GuardedPayload {
        inner: payload,
        deadline: Box::pin(tokio::time::sleep(guard.timeout)),
        held: held.clone(),
        refusal: refusal.clone(),
        done: false,
    };
    request.set_payload(Payload::Stream {
        payload: Box::pin(guarded),
    });
    let response = next.call(request).await?;
    drop(held);
    match refusal.get() {
        Some(reason) => {
            let (request, _) = response.into_parts();
            let response = guard.refused(reason);
            Ok(ServiceResponse::new(request, response).map_into_right_body())
        }
        None => Ok(response.map_into_left_body()),
    }
}

/// Why a body was refused while it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Budget,
    Deadline,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::Budget => "budget",
            Refusal::Deadline => "deadline",
        }
    }

    fn response(self) -> HttpResponse {
        let (status, code, message) = match self {
            Refusal::Budget => (
                StatusCode::SERVICE_UNAVAILABLE,
                GrpcCode::Unavailable,
                "server busy reading other requests; retry",
            ),
            Refusal::Deadline => (
                StatusCode::REQUEST_TIMEOUT,
                GrpcCode::DeadlineExceeded,
                "request body not received in time",
            ),
        };
        HttpResponse::build(status)
            .insert_header((header::CONTENT_TYPE, "application/json"))
            // The rest of the body is not read: the connection cannot be reused.
            .insert_header((header::CONNECTION, "close"))
            .body(status_body(code, message))
    }
}

/// The bytes one request holds; given back to the budget when the request is done.
struct HeldBytes {
    guard: BodyGuard,
    bytes: Cell<usize>,
}

impl HeldBytes {
    fn take(&self, bytes: usize) -> bool {
        if !self.guard.budget.try_take(bytes) {
            return false;
        }
        self.bytes.set(self.bytes.get() + bytes);
        self.guard.held_changed(bytes as i64);
        true
    }
}

impl Drop for HeldBytes {
    fn drop(&mut self) {
        let bytes = self.bytes.get();
        self.guard.budget.give_back(bytes);
        self.guard.held_changed(-(bytes as i64));
    }
}

/// The request's payload, counted against the budget and cut off at the deadline.
struct GuardedPayload {
    inner: Payload,
    deadline: Pin<Box<tokio::time::Sleep>>,
    held: Rc<HeldBytes>,
    refusal: Rc<Cell<Option<Refusal>>>,
    done: bool,
}

impl GuardedPayload {
    fn refuse(&mut self, refusal: Refusal) -> Poll<Option<Result<Bytes, PayloadError>>> {
        self.done = true;
        self.refusal.set(Some(refusal));
        let kind = match refusal {
            Refusal::Budget => std::io::ErrorKind::OutOfMemory,
            Refusal::Deadline => std::io::ErrorKind::TimedOut,
        };
        Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
            kind,
            refusal.label(),
        )))))
    }
}

impl Stream for GuardedPayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        // Data first: bytes that arrived before the deadline are taken however late this
        // request's worker polls. A client cannot outrun the deadline this way: its body is
        // capped, so bytes that are always ready end soon.
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if self.held.take(chunk.len()) {
                    Poll::Ready(Some(Ok(chunk)))
                } else {
                    self.refuse(Refusal::Budget)
                }
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Pending if self.deadline.as_mut().poll(cx).is_ready() => {
                self.refuse(Refusal::Deadline)
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A payload with `chunks` ready, then nothing more for ever, under a 10 s deadline.
    fn payload_then_stall(chunks: Vec<&'static [u8]>) -> GuardedPayload {
        let ready = futures::stream::iter(
            chunks
                .into_iter()
                .map(|chunk| Ok::<_, PayloadError>(Bytes::from_static(chunk))),
        );
        let inner = futures::StreamExt::chain(ready, futures::stream::pending());
        let guard = BodyGuard::new("test", &ListenerLimits::PUBLIC);
        GuardedPayload {
            inner: Payload::Stream {
                payload: Box::pin(inner),
            },
            deadline: Box::pin(tokio::time::sleep(guard.timeout)),
            held: Rc::new(HeldBytes {
                guard,
                bytes: Cell::new(0),
            }),
            refusal: Rc::new(Cell::new(None)),
            done: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn body_bytes_that_arrived_before_the_deadline_are_taken_after_it() {
        use futures::StreamExt;
        let mut payload = payload_then_stall(vec![b"{\"a\":", b"1}"]);
        // The request's worker gets to the body only after the deadline passed.
        tokio::time::advance(ListenerLimits::PUBLIC.body_timeout * 2).await;
        assert_eq!(payload.next().await.unwrap().unwrap(), &b"{\"a\":"[..]);
        assert_eq!(payload.next().await.unwrap().unwrap(), &b"1}"[..]);
        // Nothing more arrives: now the deadline refuses it.
        assert!(payload.next().await.unwrap().is_err());
        assert_eq!(payload.refusal.get(), Some(Refusal::Deadline));
    }

    #[test]
    fn budget_takes_only_what_fits_and_gives_back() {
        let budget = BodyBudget::new(10);
        assert!(budget.try_take(6));
        assert!(!budget.try_take(5));
        assert!(budget.try_take(4));
        assert_eq!(budget.held(), 10);
        budget.give_back(6);
        assert!(budget.has_room_for(6));
        assert!(!budget.has_room_for(7));
    }

    #[test]
    fn connections_are_split_over_workers() {
        let limits = ListenerLimits {
            max_connections: 10,
            ..ListenerLimits::PUBLIC
        };
        assert_eq!(limits.max_connections_per_worker(3), 4);
        assert_eq!(limits.max_connections_per_worker(0), 10);
    }
}
