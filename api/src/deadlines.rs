//! Deadlines between requests on one connection: a request's first byte within the keep-alive
//! time, then its whole head within the header deadline, for every request on the connection.
//!
//! actix-http has one deadline for request heads, `client_request_timeout`, and it is wrong for
//! a public listener in two ways:
//! - **It runs from accept, not from the request's first byte.** HTTP client pools open spare
//!   connections in the background and keep them unused. When the header deadline passes,
//!   actix answers such a connection `408` as if it had sent a slow request. A client that sends
//!   a request on it at that moment reads the `408` as its answer. Under load the window is
//!   wide, because actix looks at its timers before it reads: a request that arrived while the
//!   worker was busy elsewhere still gets the `408`. The hostile scenario's honest clients got
//!   such 408s, tens of milliseconds after sending, on a saturated two-core machine.
//! - **It covers only the first request on a connection.** The head of a second request may
//!   trickle in for as long as the client likes.
//!
//! So the listeners turn actix's deadline off and wrap each connection's byte stream in a
//! [`DeadlineStream`] instead, under actix-http. It keeps a [`ConnectionClock`], which the body
//! guard ([`crate::limits::guard_body`]) tells when a request's handler starts and ends. The
//! connection is always in one of three phases:
//! - **idle** (no request in progress, no byte of the next one): after `idle` without a byte in
//!   either direction the connection is closed quietly, as an idle keep-alive connection is: no
//!   request was made, so there is nothing to answer;
//! - **head** (a request's first byte arrived, its handler has not started): the head must be
//!   complete within `head`, or the client is answered `408` and the connection is closed;
//! - **busy** (a handler is running): no deadline here. The body has its own deadline in
//!   [`crate::limits`].
//!
//! Data wins a race with a deadline: the stream is read before the timer is looked at, so a
//! request that arrived before the deadline is served however late its worker gets to it.
//!
//! HTTP/2 multiplexes requests, so phases mean nothing after its connection preface. An HTTP/2
//! connection is timed as idle until its first byte, then as a head until its 24-byte preface
//! is complete, then not at all.
//!
//! The read listener (`node/src/read_listener`) parses its own requests and counts the same way.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus::{IntCounterVec, Opts, Registry};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::limits::ListenerLimits;
use crate::response::{status_body, GrpcCode};

/// Length of the HTTP/2 connection preface (RFC 9113 §3.4).
const HTTP2_PREFACE_BYTES: usize = 24;

/// The two deadlines of a connection between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Longest a connection may sit with no request in progress and no byte moving.
    pub idle: Duration,
    /// Longest a request's head may take from its first byte.
    pub head: Duration,
}

impl Deadlines {
    /// A listener's deadlines: its keep-alive time, and its header deadline.
    pub fn of(limits: &ListenerLimits) -> Self {
        Self {
            idle: limits.keep_alive,
            head: limits.header_timeout,
        }
    }
}

/// The protocol a connection speaks, which decides what is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// Which deadline closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Idle,
    Head,
}

impl Expiry {
    pub fn label(self) -> &'static str {
        match self {
            Expiry::Idle => "idle",
            Expiry::Head => "head",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle {
        since: Instant,
    },
    Head {
        since: Instant,
    },
    /// HTTP/2 after its preface: not timed.
    Untimed,
}

struct ClockState {
    deadlines: Deadlines,
    protocol: Protocol,
    phase: Cell<Phase>,
    /// Requests whose handler is running (one at a time on HTTP/1.1).
    in_progress: Cell<u32>,
    bytes_read: Cell<usize>,
}

/// The phase of one connection, shared by its [`DeadlineStream`] and the requests on it (it is
/// in their connection data, for [`ConnectionClock::request_started`]).
#[derive(Clone)]
pub struct ConnectionClock(Rc<ClockState>);

impl ConnectionClock {
    /// A new connection's clock: idle from now.
    pub fn new(deadlines: Deadlines, protocol: Protocol) -> Self {
        Self(Rc::new(ClockState {
            deadlines,
            protocol,
            phase: Cell::new(Phase::Idle {
                since: Instant::now(),
            }),
            in_progress: Cell::new(0),
            bytes_read: Cell::new(0),
        }))
    }

    /// A request's handler starts; the connection is busy until the returned guard drops.
    pub fn request_started(&self) -> RequestInProgress {
        let state = &self.0;
        state.in_progress.set(state.in_progress.get() + 1);
        RequestInProgress(self.clone())
    }

    /// The deadline the connection is under now, if any, and which one it is.
    pub fn deadline(&self) -> Option<(Instant, Expiry)> {
        let state = &self.0;
        if state.in_progress.get() > 0 {
            return None;
        }
        match state.phase.get() {
            Phase::Idle { since } => Some((since + state.deadlines.idle, Expiry::Idle)),
            Phase::Head { since } => Some((since + state.deadlines.head, Expiry::Head)),
            Phase::Untimed => None,
        }
    }

    fn bytes_read(&self, count: usize) {
        let state = &self.0;
        let total = state.bytes_read.get().saturating_add(count);
        state.bytes_read.set(total);
        if state.protocol == Protocol::Http2 && total >= HTTP2_PREFACE_BYTES {
            state.phase.set(Phase::Untimed);
            return;
        }
        if state.in_progress.get() == 0 {
            if let Phase::Idle { .. } = state.phase.get() {
                state.phase.set(Phase::Head {
                    since: Instant::now(),
                });
            }
        }
    }

    fn bytes_written(&self) {
        let state = &self.0;
        // An answer still being written keeps its connection from idling out.
        if let Phase::Idle { .. } = state.phase.get() {
            state.phase.set(Phase::Idle {
                since: Instant::now(),
            });
        }
    }

    fn request_finished(&self) {
        let state = &self.0;
        let left = state.in_progress.get().saturating_sub(1);
        state.in_progress.set(left);
        if left == 0 && state.phase.get() != Phase::Untimed {
            state.phase.set(Phase::Idle {
                since: Instant::now(),
            });
        }
    }
}

/// A request's handler is running on its connection; dropping this ends it.
pub struct RequestInProgress(ConnectionClock);

impl Drop for RequestInProgress {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// `rekor_http_connections_timed_out_total{listener,deadline}`: connections closed by a deadline
/// between requests.
#[derive(Clone)]
pub struct DeadlineMetrics {
    pub timed_out: IntCounterVec,
}

impl DeadlineMetrics {
    /// Creates the metric and registers it on `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let timed_out = IntCounterVec::new(
            Opts::new(
                "rekor_http_connections_timed_out_total",
                "Connections closed between requests: idle past the keep-alive time (quietly), \
                 or a request head not complete within the header deadline (408)",
            ),
            &["listener", "deadline"],
        )?;
        registry.register(Box::new(timed_out.clone()))?;
        Ok(Self { timed_out })
    }
}

/// A connection's byte stream under its deadlines (module docs). Reading past a deadline ends
/// the stream, so actix-http closes the connection as if the client had.
pub struct DeadlineStream<S> {
    inner: S,
    clock: ConnectionClock,
    timer: Pin<Box<Sleep>>,
    expired: bool,
    /// Nothing written since the last completed flush: a 408 cannot land inside an answer.
    flushed: bool,
    metrics: Option<(DeadlineMetrics, &'static str)>,
}

impl<S> DeadlineStream<S> {
    pub fn new(inner: S, deadlines: Deadlines, protocol: Protocol) -> Self {
        let clock = ConnectionClock::new(deadlines, protocol);
        let first = clock.deadline().map_or_else(Instant::now, |(at, _)| at);
        Self {
            inner,
            clock,
            timer: Box::pin(tokio::time::sleep_until(first)),
            expired: false,
            flushed: true,
            metrics: None,
        }
    }

    /// Counts expiries on `metrics` under `listener`.
    pub fn with_metrics(mut self, metrics: DeadlineMetrics, listener: &'static str) -> Self {
        self.metrics = Some((metrics, listener));
        self
    }

    /// The clock, for the requests' connection data.
    pub fn clock(&self) -> &ConnectionClock {
        &self.clock
    }

    /// The wrapped stream (a TLS stream, for its peer certificates).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn note_written(&mut self, written: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(bytes)) = written {
            if *bytes > 0 {
                self.flushed = false;
                self.clock.bytes_written();
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> DeadlineStream<S> {
    /// Best effort: the answer goes out only if the socket takes it now.
    fn answer_head_timeout(&mut self, cx: &mut Context<'_>) {
        if !self.flushed {
            return;
        }
        let body = status_body(GrpcCode::DeadlineExceeded, "request header timeout");
        let mut answer = format!(
            "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        answer.extend_from_slice(&body);
        let mut inner = Pin::new(&mut self.inner);
        if let Poll::Ready(Ok(_)) = inner.as_mut().poll_write(cx, &answer) {
            let _ = inner.poll_flush(cx);
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for DeadlineStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = buf.filled().len() - before;
                if read > 0 {
                    this.clock.bytes_read(read);
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => {}
        }
        let Some((deadline, expiry)) = this.clock.deadline() else {
            return Poll::Pending;
        };
        if this.timer.deadline() != deadline {
            this.timer.as_mut().reset(deadline);
        }
        if this.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.expired = true;
        if let Some((metrics, listener)) = &this.metrics {
            metrics
                .timed_out
                .with_label_values(&[listener, expiry.label()])
                .inc();
        }
        if expiry == Expiry::Head {
            this.answer_head_timeout(cx);
        }
        // End of stream: actix-http closes the connection.
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for DeadlineStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.note_written(&written);
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.note_written(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            this.flushed = true;
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The middleware that marks requests busy on a listener without a body guard (which marks
/// them itself): `.wrap(from_fn(busy_while_handled))`.
pub async fn busy_while_handled<B: actix_web::body::MessageBody>(
    request: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<B>,
) -> Result<actix_web::dev::ServiceResponse<B>, actix_web::Error> {
    let _in_progress = request
        .conn_data::<ConnectionClock>()
        .map(ConnectionClock::request_started);
    next.call(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

    const DEADLINES: Deadlines = Deadlines {
        idle: Duration::from_secs(75),
        head: Duration::from_secs(5),
    };

    fn connection(protocol: Protocol) -> (DeadlineStream<DuplexStream>, DuplexStream) {
        let (server, client) = duplex(64 * 1024);
        (DeadlineStream::new(server, DEADLINES, protocol), client)
    }

    /// What the server side reads next: its bytes, or `None` at the end of the stream.
    async fn read_some(stream: &mut DeadlineStream<DuplexStream>) -> Option<Vec<u8>> {
        let mut buffer = vec![0u8; 1024];
        let read = stream.read(&mut buffer).await.expect("reads");
        (read > 0).then(|| buffer[..read].to_vec())
    }

    /// Everything the client receives until the server side is dropped.
    async fn received(mut client: DuplexStream) -> Vec<u8> {
        let mut bytes = Vec::new();
        client.read_to_end(&mut bytes).await.expect("reads");
        bytes
    }

    #[tokio::test(start_paused = true)]
    async fn an_unused_connection_is_kept_past_the_header_deadline_and_closed_quietly_when_idle() {
        let (mut stream, client) = connection(Protocol::Http1);
        let started = Instant::now();
        assert_eq!(read_some(&mut stream).await, None, "closed at last");
        assert_eq!(
            started.elapsed(),
            DEADLINES.idle,
            "at the idle deadline, not the header's"
        );
        drop(stream);
        assert!(received(client).await.is_empty(), "nothing is answered");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_sent_just_before_the_idle_deadline_is_read_however_late_the_reader() {
        let (mut stream, mut client) = connection(Protocol::Http1);
        tokio::time::advance(DEADLINES.idle - Duration::from_millis(1)).await;
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        // The worker gets to the connection only after both deadlines passed: data wins.
        tokio::time::advance(DEADLINES.idle + DEADLINES.head).await;
        assert_eq!(
            read_some(&mut stream).await.as_deref(),
            Some(&b"GET / HTTP/1.1\r\n\r\n"[..])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_is_answered_408_at_the_header_deadline_from_its_first_byte() {
        let (mut stream, mut client) = connection(Protocol::Http1);
        tokio::time::advance(Duration::from_secs(30)).await;
        client.write_all(b"GET / HT").await.unwrap();
        assert!(read_some(&mut stream).await.is_some());
        let first_byte = Instant::now();
        assert_eq!(read_some(&mut stream).await, None);
        assert_eq!(first_byte.elapsed(), DEADLINES.head);
        drop(stream);
        let answer = String::from_utf8(received(client).await).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{answer}"
        );
        assert!(answer.contains("connection: close\r\n"), "{answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap();
        let status: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(status["message"], "request header timeout", "{answer}");
    }

    #[tokio::test(start_paused = true)]
    async fn every_request_on_a_connection_gets_the_header_deadline() {
        let (mut stream, mut client) = connection(Protocol::Http1);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(read_some(&mut stream).await.is_some());
        let request = stream.clock().request_started();
        // No deadline while the handler runs, however long.
        tokio::time::advance(DEADLINES.idle * 2).await;
        assert_eq!(stream.clock().deadline(), None);
        drop(request);
        stream.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        stream.flush().await.unwrap();
        // The second request's head stalls.
        client.write_all(b"GET /second").await.unwrap();
        assert!(read_some(&mut stream).await.is_some());
        let first_byte = Instant::now();
        assert_eq!(read_some(&mut stream).await, None);
        assert_eq!(first_byte.elapsed(), DEADLINES.head);
        drop(stream);
        let answers = String::from_utf8(received(client).await).unwrap();
        assert!(
            answers.starts_with("HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 408 "),
            "{answers}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_408_lands_inside_an_answer_not_yet_flushed() {
        let (mut stream, mut client) = connection(Protocol::Http1);
        client.write_all(b"GET / HT").await.unwrap();
        assert!(read_some(&mut stream).await.is_some());
        stream.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        assert_eq!(read_some(&mut stream).await, None);
        drop(stream);
        assert_eq!(received(client).await, b"HTTP/1.1 200 OK\r\n");
    }

    #[tokio::test(start_paused = true)]
    async fn http2_is_timed_only_until_its_preface() {
        let (mut stream, mut client) = connection(Protocol::Http2);
        client.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        assert!(read_some(&mut stream).await.is_some());
        assert!(matches!(stream.clock().deadline(), Some((_, Expiry::Head))));
        client.write_all(b"\r\nSM\r\n\r\n").await.unwrap();
        assert!(read_some(&mut stream).await.is_some());
        assert_eq!(stream.clock().deadline(), None, "untimed after 24 bytes");
    }
}
