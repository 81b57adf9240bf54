//! Prometheus metrics of the HTTP surface, with upstream rekor-tiles names where they exist
//! (rekor-v2-api.md §14.2). Registered on a registry the caller owns.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

/// The API's metrics. Cheap to clone (each metric is an `Arc` inside).
#[derive(Clone)]
pub struct ApiMetrics {
    pub new_hashedrekord_entries: IntCounter,
    pub new_dsse_entries: IntCounter,
    pub http_requests_total: IntCounterVec,
    pub http_api_latency: HistogramVec,
    pub http_api_request_size: HistogramVec,
    pub inclusion_proof_failure_total: IntCounter,
    /// Time spent decoding and verifying one POST body (not in upstream).
    pub entry_validation_seconds: Histogram,
    /// Queued verification jobs skipped because the client had gone (not in upstream).
    pub verify_jobs_abandoned: IntCounter,
}

impl ApiMetrics {
    /// Creates the metrics and registers them on `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let labels = &["code", "method"];
        let metrics = ApiMetrics {
            new_hashedrekord_entries: IntCounter::new(
                "rekor_v2_new_hashedrekord_entries",
                "New hashedrekord entries logged",
            )?,
            new_dsse_entries: IntCounter::new(
                "rekor_v2_new_dsse_entries",
                "New legacy dsse entries logged",
            )?,
            http_requests_total: IntCounterVec::new(
                Opts::new(
                    "rekor_v2_http_requests_total",
                    "HTTP requests by status code and method",
                ),
                labels,
            )?,
            http_api_latency: HistogramVec::new(
                HistogramOpts::new(
                    "rekor_v2_http_api_latency",
                    "HTTP request latency in seconds",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    20.0,
                ]),
                labels,
            )?,
            http_api_request_size: HistogramVec::new(
                HistogramOpts::new(
                    "rekor_v2_http_api_request_size",
                    "HTTP request body size in bytes",
                )
                .buckets(prometheus::exponential_buckets(64.0, 4.0, 10)?),
                labels,
            )?,
            inclusion_proof_failure_total: IntCounter::new(
                "rekor_v2_inclusion_proof_failure_total",
                "Inclusion proofs that failed the server-side check before answering",
            )?,
            entry_validation_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "rekor_v2_entry_validation_seconds",
                    "Time to decode, validate and verify one entry",
                )
                .buckets(prometheus::exponential_buckets(0.0001, 2.0, 16)?),
            )?,
            verify_jobs_abandoned: IntCounter::new(
                "rekor_verify_jobs_abandoned_total",
                "Queued decode-and-verify jobs skipped because the client had gone",
            )?,
        };
        registry.register(Box::new(metrics.new_hashedrekord_entries.clone()))?;
        registry.register(Box::new(metrics.new_dsse_entries.clone()))?;
        registry.register(Box::new(metrics.http_requests_total.clone()))?;
        registry.register(Box::new(metrics.http_api_latency.clone()))?;
        registry.register(Box::new(metrics.http_api_request_size.clone()))?;
        registry.register(Box::new(metrics.inclusion_proof_failure_total.clone()))?;
        registry.register(Box::new(metrics.entry_validation_seconds.clone()))?;
        registry.register(Box::new(metrics.verify_jobs_abandoned.clone()))?;
        Ok(metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abandoned_verification_jobs_are_exported() {
        let registry = Registry::new();
        let metrics = ApiMetrics::register(&registry).unwrap();
        metrics.verify_jobs_abandoned.inc();
        let family = registry
            .gather()
            .into_iter()
            .find(|f| f.name() == "rekor_verify_jobs_abandoned_total")
            .expect("registered");
        assert_eq!(family.get_metric()[0].get_counter().get_value(), 1.0);
    }
}
