//! Metrics of the node's TLS: certificate expiry, handshakes, refused peers and reloads.

use std::time::SystemTime;

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

/// Cheap to clone; every clone updates the same series.
#[derive(Clone)]
pub struct TlsMetrics {
    /// notAfter of each loaded certificate, as a Unix time: `listener` is `public` or
    /// `internal`, `kind` is `certificate` or `ca` (the earliest-expiring CA of the bundle).
    pub expiry: IntGaugeVec,
    /// TLS connections established, by listener.
    pub handshakes: IntCounterVec,
    /// Client certificates refused during the handshake (not from the cluster CA, expired, or
    /// without the client-auth usage), by listener.
    pub certificates_refused: IntCounterVec,
    /// Internal requests refused after the handshake, by reason (`secret`, `no_certificate`,
    /// `wrong_role`, `identity_mismatch`).
    pub requests_refused: IntCounterVec,
    /// Reloads of certificate files that changed, by listener and result (`ok`, `error`).
    pub reloads: IntCounterVec,
}

impl std::fmt::Debug for TlsMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsMetrics")
    }
}

impl TlsMetrics {
    /// Creates the metrics and registers them on `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self {
            expiry: IntGaugeVec::new(
                Opts::new(
                    "rekor_tls_certificate_expiry_timestamp_seconds",
                    "When a loaded certificate expires (notAfter, Unix time)",
                ),
                &["listener", "kind"],
            )?,
            handshakes: IntCounterVec::new(
                Opts::new(
                    "rekor_tls_handshakes_total",
                    "TLS connections established",
                ),
                &["listener"],
            )?,
            certificates_refused: IntCounterVec::new(
                Opts::new(
                    "rekor_tls_client_certificates_refused_total",
                    "Client certificates refused during the TLS handshake",
                ),
                &["listener"],
            )?,
            requests_refused: IntCounterVec::new(
                Opts::new(
                    "rekor_internal_requests_refused_total",
                    "Internal requests refused: wrong secret, no certificate, wrong role, or an id that is not the certificate's",
                ),
                &["reason"],
            )?,
            reloads: IntCounterVec::new(
                Opts::new(
                    "rekor_tls_reloads_total",
                    "Reloads of changed certificate files, by result",
                ),
                &["listener", "result"],
            )?,
        };
        registry.register(Box::new(metrics.expiry.clone()))?;
        registry.register(Box::new(metrics.handshakes.clone()))?;
        registry.register(Box::new(metrics.certificates_refused.clone()))?;
        registry.register(Box::new(metrics.requests_refused.clone()))?;
        registry.register(Box::new(metrics.reloads.clone()))?;
        Ok(metrics)
    }

    /// Records when a certificate of `listener` expires.
    pub fn set_expiry(&self, listener: &str, kind: &str, not_after: Option<SystemTime>) {
        let seconds = not_after
            .and_then(|at| at.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |since| {
                i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
            });
        self.expiry
            .with_label_values(&[listener, kind])
            .set(seconds);
    }
}
