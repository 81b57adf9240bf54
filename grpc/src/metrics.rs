//! Prometheus metrics of the gRPC listener. The HTTP listener's request metrics are upstream's
//! `rekor_v2_http_*` (labelled by HTTP status); these are their gRPC twins, labelled by method
//! and gRPC status code name.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// The listener's metrics. Cheap to clone.
#[derive(Clone)]
pub struct GrpcMetrics {
    /// `rekor_grpc_requests_total{method,code}`.
    pub requests: IntCounterVec,
    /// `rekor_grpc_request_seconds{method}`.
    pub latency: HistogramVec,
    /// `rekor_grpc_connections`: connections open now.
    pub connections: IntGauge,
    /// `rekor_grpc_refused_total{reason}`: connections or requests turned away
    /// (`handshake`, `budget`).
    pub refused: IntCounterVec,
}

impl GrpcMetrics {
    /// Creates the metrics and registers them on `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = GrpcMetrics {
            requests: IntCounterVec::new(
                Opts::new(
                    "rekor_grpc_requests_total",
                    "gRPC requests by method and status code",
                ),
                &["method", "code"],
            )?,
            latency: HistogramVec::new(
                HistogramOpts::new("rekor_grpc_request_seconds", "gRPC request latency").buckets(
                    vec![
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                        10.0, 20.0,
                    ],
                ),
                &["method"],
            )?,
            connections: IntGauge::new("rekor_grpc_connections", "Open gRPC connections")?,
            refused: IntCounterVec::new(
                Opts::new(
                    "rekor_grpc_refused_total",
                    "gRPC connections or requests refused: TLS handshake failed or timed out, \
                     or the request-body byte budget was exhausted",
                ),
                &["reason"],
            )?,
        };
        registry.register(Box::new(metrics.requests.clone()))?;
        registry.register(Box::new(metrics.latency.clone()))?;
        registry.register(Box::new(metrics.connections.clone()))?;
        registry.register(Box::new(metrics.refused.clone()))?;
        Ok(metrics)
    }

    /// Counts one finished RPC.
    pub fn observe(&self, method: &str, code: tonic::Code, started: std::time::Instant) {
        let code = format!("{code:?}");
        self.requests.with_label_values(&[method, &code]).inc();
        self.latency
            .with_label_values(&[method])
            .observe(started.elapsed().as_secs_f64());
    }
}
