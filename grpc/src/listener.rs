//! Accepting gRPC connections: at most `max_connections` open at once (beyond that, accepting
//! pauses, as on the HTTP listeners), TLS handshakes concurrently and each within a deadline, so
//! a client that opens a socket and says nothing holds one slot for a few seconds at most.
//!
//! TLS is terminated here with tokio-rustls and the node's own rustls `ServerConfig` (the
//! aws-lc-rs provider; the certificate resolver that reloads the files), not by tonic's TLS
//! feature; tonic serves the streams this yields.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tracing::{debug, warn};

use crate::metrics::GrpcMetrics;

/// How long to wait before accepting again after `accept` failed (e.g. out of file descriptors).
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// One accepted connection, plain or TLS, holding its slot until it is dropped.
pub struct Connection {
    stream: Transport,
    info: TcpConnectInfo,
    _slot: Slot,
}

enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// A connection slot: the permit and the open-connections gauge.
struct Slot {
    _permit: OwnedSemaphorePermit,
    metrics: GrpcMetrics,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit, metrics: GrpcMetrics) -> Self {
        metrics.connections.inc();
        Slot {
            _permit: permit,
            metrics,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.connections.dec();
    }
}

impl Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().stream {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().stream {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().stream {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().stream {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().stream {
            Transport::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Transport::Plain(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// How connections are accepted.
#[derive(Clone)]
pub struct AcceptSettings {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Starts accepting on `listener`; the stream yields each connection once it is ready to serve
/// (after its TLS handshake). Accepting stops when the stream is dropped.
pub fn incoming(
    listener: std::net::TcpListener,
    settings: AcceptSettings,
    metrics: GrpcMetrics,
) -> std::io::Result<impl Stream<Item = std::io::Result<Connection>>> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let (ready, receiver) = mpsc::channel(64);
    tokio::spawn(accept_loop(listener, settings, metrics, ready));
    Ok(futures::stream::unfold(
        receiver,
        |mut receiver| async move {
            let connection = receiver.recv().await?;
            Some((Ok(connection), receiver))
        },
    ))
}

async fn accept_loop(
    listener: TcpListener,
    settings: AcceptSettings,
    metrics: GrpcMetrics,
    ready: mpsc::Sender<Connection>,
) {
    let slots = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let acceptor = settings.tls.clone().map(TlsAcceptor::from);
    loop {
        let permit = tokio::select! {
            _ = ready.closed() => return,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            _ = ready.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(%error, "accepting a gRPC connection failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let info = TcpConnectInfo {
            local_addr: tcp.local_addr().ok(),
            remote_addr: Some(remote),
        };
        let slot = Slot::new(permit, metrics.clone());
        match &acceptor {
            None => {
                let connection = Connection {
                    stream: Transport::Plain(tcp),
                    info,
                    _slot: slot,
                };
                if ready.send(connection).await.is_err() {
                    return;
                }
            }
            Some(acceptor) => {
                let handshake = acceptor.accept(tcp);
                let ready = ready.clone();
                let metrics = metrics.clone();
                let timeout = settings.handshake_timeout;
                tokio::spawn(async move {
                    match tokio::time::timeout(timeout, handshake).await {
                        Ok(Ok(tls)) => {
                            let connection = Connection {
                                stream: Transport::Tls(Box::new(tls)),
                                info,
                                _slot: slot,
                            };
                            let _ = ready.send(connection).await;
                        }
                        Ok(Err(error)) => {
                            metrics.refused.with_label_values(&["handshake"]).inc();
                            debug!(%remote, %error, "gRPC TLS handshake failed");
                        }
                        Err(_) => {
                            metrics.refused.with_label_values(&["handshake"]).inc();
                            debug!(%remote, "gRPC TLS handshake timed out");
                        }
                    }
                });
            }
        }
    }
}
