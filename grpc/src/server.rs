//! The gRPC server: its limits, the services it carries (Rekor, `grpc.health.v1.Health`, server
//! reflection v1 and v1alpha) and serving until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rekor_api::limits::{BodyBudget, ListenerLimits};
use rekor_api::{ApiState, LogBackend};
use tonic::transport::Server;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::budget::BudgetLayer;
use crate::listener::{incoming, AcceptSettings};
use crate::metrics::GrpcMetrics;
use crate::pb::dev::sigstore::rekor::v2::rekor_server::RekorServer;
use crate::service::RekorService;
use crate::SERVICE_NAME;

/// How often health follows whether the node serves a checkpoint.
const HEALTH_POLL: Duration = Duration::from_secs(1);

/// Bounds of the gRPC listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcLimits {
    /// Largest request message (the HTTP body cap, `--max-request-body-size`).
    pub max_message_bytes: usize,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Longest a TLS handshake may take.
    pub handshake_timeout: Duration,
    /// Longest one RPC may take, body included (a client's shorter `grpc-timeout` wins).
    pub request_timeout: Duration,
    /// HTTP/2 streams one connection may have open at once.
    pub max_concurrent_streams: u32,
    /// Largest header list (request metadata) a client may send.
    pub max_header_list_bytes: u32,
    /// HTTP/2 PING interval on idle connections, and how long an answer may take before the
    /// connection is closed: dead peers free their slot.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// Bytes of request bodies held at once across all connections ([`crate::budget`]).
    pub body_budget_bytes: usize,
}

impl GrpcLimits {
    /// The public HTTP listener's bounds, applied to gRPC: same connection cap, handshake
    /// deadline = header deadline, same body budget.
    pub fn like_http(
        http: &ListenerLimits,
        max_message_bytes: usize,
        request_timeout: Duration,
    ) -> Self {
        GrpcLimits {
            max_message_bytes,
            max_connections: http.max_connections,
            handshake_timeout: http.header_timeout,
            request_timeout,
            max_concurrent_streams: 100,
            max_header_list_bytes: 16 * 1024,
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            body_budget_bytes: http.body_budget_bytes,
        }
    }
}

/// Why the gRPC server stopped on an error.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("gRPC listener: {0}")]
    Listener(#[from] std::io::Error),
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The gRPC listener's server, over the same [`ApiState`] as the HTTP listener.
pub struct GrpcServer {
    state: ApiState,
    limits: GrpcLimits,
    metrics: GrpcMetrics,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl GrpcServer {
    /// Registers the gRPC metrics on `registry`.
    pub fn new(
        state: ApiState,
        limits: GrpcLimits,
        registry: &prometheus::Registry,
    ) -> Result<Self, prometheus::Error> {
        Ok(GrpcServer {
            state,
            limits,
            metrics: GrpcMetrics::register(registry)?,
            tls: None,
        })
    }

    /// Serves TLS with `config` (the public listener's: same certificate, same reloading);
    /// ALPN is set to `h2`, the only protocol gRPC speaks.
    pub fn with_tls(mut self, mut config: rustls::ServerConfig) -> Self {
        config.alpn_protocols = vec![b"h2".to_vec()];
        self.tls = Some(Arc::new(config));
        self
    }

    /// Serves on `listener` (bound by the caller, so a port in use fails at start-up) until
    /// `shutdown` resolves; in-flight RPCs then finish.
    pub async fn serve(
        self,
        listener: std::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), GrpcError> {
        let limits = &self.limits;
        let (health, health_service) = tonic_health::server::health_reporter();
        // Not serving until the node serves a checkpoint.
        set_health(&health, ServingStatus::NotServing).await;
        let watcher = tokio::spawn(follow_health(health, self.state.backend().clone()));

        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;
        let rekor = RekorServer::new(RekorService::new(self.state.clone(), self.metrics.clone()))
            .max_decoding_message_size(limits.max_message_bytes);

        let connections = incoming(
            listener,
            AcceptSettings {
                max_connections: limits.max_connections,
                handshake_timeout: limits.handshake_timeout,
                tls: self.tls.clone(),
            },
            self.metrics.clone(),
        )?;
        let budget = Arc::new(BodyBudget::new(limits.body_budget_bytes));
        let result = Server::builder()
            .timeout(limits.request_timeout)
            .max_concurrent_streams(limits.max_concurrent_streams)
            .http2_max_header_list_size(limits.max_header_list_bytes)
            .http2_keepalive_interval(Some(limits.keepalive_interval))
            .http2_keepalive_timeout(Some(limits.keepalive_timeout))
            // Rapid-reset (CVE-2023-44487) bounds: hyper's defaults, made explicit.
            .http2_max_pending_accept_reset_streams(Some(20))
            .trace_fn(|request| tracing::info_span!("grpc", method = %request.uri().path()))
            .layer(BudgetLayer::new(budget, self.metrics.clone()))
            .add_service(rekor)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .serve_with_incoming_shutdown(connections, shutdown)
            .await;
        watcher.abort();
        Ok(result?)
    }
}

/// Reflection over every service this listener carries: both reflection versions list all four
/// services, whichever one a client asks.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .include_reflection_service(false)
        .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
}

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    health.set_service_status(SERVICE_NAME, status).await;
}

/// SERVING while the node serves a checkpoint (it can answer reads, and a submission can be
/// proven) and is ready as `/healthz` judges it (it hears from a quorum, its tile store
/// answers); NOT_SERVING otherwise.
async fn follow_health(health: HealthReporter, backend: Arc<dyn LogBackend>) {
    let mut serving = false;
    loop {
        let now = matches!(backend.checkpoint().await, Ok(Some(_)))
            && backend.readiness().await.is_ready();
        if now != serving {
            serving = now;
            let status = if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            set_health(&health, status).await;
        }
        tokio::time::sleep(HEALTH_POLL).await;
    }
}
