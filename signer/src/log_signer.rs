//! [`LogSigner`]: the log's key name and key ID bound to a [`KeyBackend`], with a deadline per
//! attempt, retries with backoff for what may pass, and a check of every signature against the
//! public key before it leaves the process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rekor_storage::checkpoint::Checkpoint;
use rekor_storage::note::{self, Note, NoteSignature, NoteVerifier, VerifierKey};
use tracing::{debug, warn};

use crate::backend::{KeyAlgorithm, KeyBackend};
use crate::metrics::SignerMetrics;
use crate::SignerError;

/// How long one signature may take and how often a failed one is tried again.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// The deadline of one attempt.
    pub attempt_timeout: Duration,
    /// The most time one [`LogSigner::sign_note`] call spends, retries included.
    pub total_timeout: Duration,
    /// The wait after the first failure; it doubles after each further failure…
    pub initial_backoff: Duration,
    /// …up to this. Kept short so that publication resumes soon after the signer is back.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempt_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(400),
        }
    }
}

/// The log's signer: origin, key ID and log ID of one key, and the backend that holds it.
pub struct LogSigner {
    name: String,
    key_id: u32,
    log_id: [u8; 32],
    spki: Vec<u8>,
    algorithm: KeyAlgorithm,
    verifier: Box<dyn NoteVerifier>,
    backend: Arc<dyn KeyBackend>,
    retry: RetryPolicy,
    metrics: Option<SignerMetrics>,
    backend_label: &'static str,
}

impl LogSigner {
    /// Binds `backend`'s key to the log's `origin` (its checkpoint key name). `backend_label`
    /// names the backend in metrics (`file`, `pkcs11`, `awskms`, ...).
    pub fn new(
        origin: &str,
        backend: Arc<dyn KeyBackend>,
        backend_label: &'static str,
    ) -> Result<Self, SignerError> {
        let spki = backend.public_key_der().to_vec();
        let algorithm = KeyAlgorithm::of_spki_der(&spki)?;
        let log_id = note::log_id(origin, &spki)
            .map_err(|error| SignerError::UnsupportedKey(error.to_string()))?;
        let verifier = note::verifier_from_spki_der(origin, &spki)
            .map_err(|error| SignerError::UnsupportedKey(error.to_string()))?;
        Ok(Self {
            name: origin.to_owned(),
            key_id: note::key_id_from_hash(&log_id),
            log_id,
            spki,
            algorithm,
            verifier,
            backend,
            retry: RetryPolicy::default(),
            metrics: None,
            backend_label,
        })
    }

    /// Uses `retry` instead of the default policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Counts requests and their latency in `metrics`.
    pub fn with_metrics(mut self, metrics: SignerMetrics) -> Self {
        metrics.up.with_label_values(&[self.backend_label]).set(1);
        self.metrics = Some(metrics);
        self
    }

    /// The key name (the log's origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key ID of signature lines.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The 32-byte log ID (`logId.keyId`).
    pub fn log_id(&self) -> [u8; 32] {
        self.log_id
    }

    /// The public key as DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    /// The key type.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// Where the key is, for logs.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// The C2SP note verifier key (`<name>+<key id>+<base64(type ‖ key)>`): Ed25519 carries the
    /// raw 32-byte key, ECDSA (transparency-dev convention) the DER SPKI.
    pub fn verifier_key(&self) -> String {
        let key = match self.algorithm {
            KeyAlgorithm::Ed25519 => &self.spki[self.spki.len().saturating_sub(32)..],
            KeyAlgorithm::EcdsaP256 => &self.spki[..],
        };
        let mut type_and_key = vec![self.algorithm.note_type_byte()];
        type_and_key.extend_from_slice(key);
        VerifierKey {
            name: self.name.clone(),
            key_id: self.key_id,
            type_and_key,
        }
        .to_vkey()
    }

    /// Signs `checkpoint`, giving the serialised signed note.
    pub async fn sign_checkpoint(&self, checkpoint: &Checkpoint) -> Result<String, SignerError> {
        self.sign_note(&checkpoint.body()).await
    }

    /// Signs a note text (ending in a newline), giving the serialised signed note. One call
    /// makes one signature; failures that may pass are retried with backoff within the policy's
    /// total timeout; a signature that does not verify is never returned.
    pub async fn sign_note(&self, text: &str) -> Result<String, SignerError> {
        let started = Instant::now();
        let mut backoff = self.retry.initial_backoff;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = self.attempt(text).await;
            match result {
                Ok(signature) => {
                    let note = Note {
                        text: text.to_owned(),
                        signatures: vec![signature],
                    };
                    return Ok(note.to_string());
                }
                Err(error) => {
                    let elapsed = started.elapsed();
                    let retry =
                        error.is_transient() && elapsed + backoff < self.retry.total_timeout;
                    warn!(
                        signer = %self.backend.describe(),
                        attempt,
                        %error,
                        retry,
                        "checkpoint signature failed"
                    );
                    if !retry {
                        return Err(error);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.retry.max_backoff);
                }
            }
        }
    }

    /// One signature with its deadline, checked, and counted.
    async fn attempt(&self, text: &str) -> Result<NoteSignature, SignerError> {
        let started = Instant::now();
        let result = match tokio::time::timeout(
            self.retry.attempt_timeout,
            self.backend.sign(text.as_bytes()),
        )
        .await
        {
            Err(_) => Err(SignerError::Timeout(self.retry.attempt_timeout)),
            Ok(Err(error)) => Err(error),
            Ok(Ok(signature)) if self.verifier.verify(text.as_bytes(), &signature) => {
                Ok(NoteSignature {
                    name: self.name.clone(),
                    key_id: self.key_id,
                    signature,
                })
            }
            Ok(Ok(_)) => Err(SignerError::BadSignature),
        };
        let elapsed = started.elapsed();
        debug!(signer = %self.backend.describe(), ?elapsed, ok = result.is_ok(), "signature");
        if let Some(metrics) = &self.metrics {
            let outcome = result.as_ref().map_or_else(SignerError::outcome, |_| "ok");
            metrics
                .requests
                .with_label_values(&[self.backend_label, outcome])
                .inc();
            metrics
                .latency
                .with_label_values(&[self.backend_label])
                .observe(elapsed.as_secs_f64());
            metrics
                .up
                .with_label_values(&[self.backend_label])
                .set(i64::from(result.is_ok()));
        }
        result
    }
}
