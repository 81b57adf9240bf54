//! Prometheus metrics of the signer: requests by outcome, latency, and whether the last
//! signature succeeded (the alert rules in deploy/ watch these).

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// The signer's metrics, registered once per process.
#[derive(Clone)]
pub struct SignerMetrics {
    /// `rekor_signer_requests_total{backend, outcome}`.
    pub requests: IntCounterVec,
    /// `rekor_signer_request_seconds{backend}`.
    pub latency: HistogramVec,
    /// `rekor_signer_up{backend}`: 1 when the last signature succeeded.
    pub up: IntGaugeVec,
}

impl SignerMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "rekor_signer_requests_total",
                "Checkpoint signature attempts, by backend and outcome (ok, unavailable, refused, timeout, bad_signature).",
            ),
            &["backend", "outcome"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "rekor_signer_request_seconds",
                "Time of one checkpoint signature attempt, by backend.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["backend"],
        )?;
        let up = IntGaugeVec::new(
            Opts::new(
                "rekor_signer_up",
                "1 when the last checkpoint signature attempt succeeded, 0 when it failed.",
            ),
            &["backend"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(up.clone()))?;
        Ok(Self {
            requests,
            latency,
            up,
        })
    }
}
