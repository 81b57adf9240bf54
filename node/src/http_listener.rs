//! The node's actix listeners (public, internal, metrics), built from actix-server and
//! actix-http directly instead of actix-web's `HttpServer`.
//!
//! Why: `HttpServer` hands each accepted socket straight to actix-http, whose only deadline on
//! request heads runs from accept and covers only a connection's first request. That deadline
//! answered honest clients' spare pooled connections with 408s and left later requests' heads
//! without a deadline ([`rekor_api::deadlines`] explains both). Here every connection's byte
//! stream, after TLS where there is TLS, is wrapped in a [`DeadlineStream`] that times each
//! request from its first byte, and actix-http's own head deadline is off.
//!
//! Everything else is what `HttpServer` did: per-worker connection caps, keep-alive, the TLS
//! handshake timeout of actix-tls, ALPN with HTTP/2 on TLS listeners, graceful shutdown that
//! closes idle keep-alive connections at once, and an `on_connect` hook that sees the accepted
//! (TLS) stream.

use std::any::Any;
use std::fmt;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_http::body::MessageBody;
use actix_http::{HttpService, Protocol, Request, Response};
use actix_server::{GracefulShutdownSignal, Server};
use actix_service::{fn_service, map_config, IntoServiceFactory, ServiceFactoryExt as _};
use actix_tls::accept::rustls_0_23::{Acceptor, TlsStream};
use actix_web::dev::{AppConfig, Extensions, Service, ServiceFactory};
use actix_web::rt::net::TcpStream;
use rekor_api::deadlines::{DeadlineMetrics, DeadlineStream, Deadlines};
use rekor_api::limits::ListenerLimits;

/// The hook that sees each accepted connection: the TCP stream, or the TLS stream on a TLS
/// listener (the wrapper is not shown to it).
pub type OnConnect = Arc<dyn Fn(&dyn Any, &mut Extensions) + Send + Sync>;

/// How long a client that stopped reading may hold a closing connection (actix-web's default).
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// One listener's settings.
#[derive(Clone)]
pub struct ListenerSettings {
    /// The listener's name in logs and metrics (`public`, `internal`, `metrics`).
    pub name: &'static str,
    pub limits: ListenerLimits,
    pub workers: usize,
    /// Connections per worker; the listener pauses accepting beyond it.
    pub max_connections_per_worker: usize,
    /// Seconds that in-flight requests get to finish when the listener stops.
    pub shutdown_timeout_s: u64,
    /// TLS (HTTP/2 and HTTP/1.1 by ALPN), or plain HTTP/1.1.
    pub tls: Option<rustls::ServerConfig>,
    pub on_connect: Option<OnConnect>,
    pub metrics: Option<DeadlineMetrics>,
}

/// Starts serving `listener` with the actix-web `App` that `app` builds for each worker.
pub fn serve<F, I, S, B>(
    listener: TcpListener,
    settings: ListenerSettings,
    app: F,
) -> std::io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let builder = Server::build()
        .workers(settings.workers)
        .max_concurrent_connections(settings.max_connections_per_worker)
        .shutdown_timeout(settings.shutdown_timeout_s)
        .disable_signals();
    let shutdown = builder.graceful_shutdown_signal();
    let name = format!("rekor-{}", settings.name);
    let builder = match settings.tls.clone() {
        None => builder.listen(name, listener, move || {
            let settings = settings.clone();
            let app = app()
                .into_factory()
                .map_err(|error| error.into().error_response());
            // No route reads the connection's host or scheme from the App's configuration.
            let app = map_config(app, |_| AppConfig::default());
            let http = http_service(&settings, shutdown.clone()).finish(app);
            fn_service(move |io: TcpStream| {
                let peer = io.peer_addr().ok();
                let stream = wrap(io, &settings, rekor_api::deadlines::Protocol::Http1);
                async move { Ok((stream, Protocol::Http1, peer)) }
            })
            .and_then(http)
        })?,
        Some(mut tls) => {
            // What actix-web offers on its rustls listeners: HTTP/2 first, then HTTP/1.1.
            let mut protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            protocols.append(&mut tls.alpn_protocols);
            tls.alpn_protocols = protocols;
            builder.listen(name, listener, move || {
                let settings = settings.clone();
                let app = app()
                    .into_factory()
                    .map_err(|error| error.into().error_response());
                // No route reads the connection's host or scheme from the App's configuration.
                let app = map_config(app, |_| AppConfig::default());
                let http = http_service(&settings, shutdown.clone()).finish(app);
                Acceptor::new(tls.clone())
                    .map_err(|_| ())
                    .and_then(fn_service(move |io: TlsStream<TcpStream>| {
                        let peer = io.get_ref().0.peer_addr().ok();
                        let http2 = io
                            .get_ref()
                            .1
                            .alpn_protocol()
                            .is_some_and(|protocol| protocol == b"h2");
                        let (protocol, timed_as) = if http2 {
                            (Protocol::Http2, rekor_api::deadlines::Protocol::Http2)
                        } else {
                            (Protocol::Http1, rekor_api::deadlines::Protocol::Http1)
                        };
                        let stream = wrap(io, &settings, timed_as);
                        async move { Ok((stream, protocol, peer)) }
                    }))
                    .and_then(http.map_err(|_| ()))
            })?
        }
    };
    Ok(builder.run())
}

fn wrap<T>(
    io: T,
    settings: &ListenerSettings,
    protocol: rekor_api::deadlines::Protocol,
) -> DeadlineStream<T> {
    let stream = DeadlineStream::new(io, Deadlines::of(&settings.limits), protocol);
    match &settings.metrics {
        Some(metrics) => stream.with_metrics(metrics.clone(), settings.name),
        None => stream,
    }
}

/// actix-http's settings for one worker of the listener.
fn http_service<T: 'static, S, B>(
    settings: &ListenerSettings,
    shutdown: GracefulShutdownSignal,
) -> actix_http::HttpServiceBuilder<DeadlineStream<T>, S>
where
    S: ServiceFactory<Request, Config = ()>,
    S::Error: Into<Response<actix_http::body::BoxBody>> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    B: MessageBody + 'static,
{
    let on_connect = settings.on_connect.clone();
    HttpService::<DeadlineStream<T>, S, B>::build()
        .graceful_shutdown_signal(move || {
            let shutdown = shutdown.clone();
            async move { shutdown.notified().await }
        })
        .keep_alive(settings.limits.keep_alive)
        // Heads are timed by the DeadlineStream, from their first byte.
        .client_request_timeout(Duration::ZERO)
        .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
        .on_connect_ext(move |io: &DeadlineStream<T>, data: &mut Extensions| {
            data.insert(io.clock().clone());
            if let Some(hook) = &on_connect {
                hook(io.get_ref() as &dyn Any, data);
            }
        })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn peers_close_idle_connections_before_the_internal_listener_does() {
        let peers_keep: Duration = rekor_raft::PEER_POOL_IDLE_TIMEOUT;
        let listener_keeps = rekor_api::limits::ListenerLimits::INTERNAL.keep_alive;
        assert!(
            peers_keep < listener_keeps,
            "{peers_keep:?} {listener_keeps:?}"
        );
    }
}
