//! One entry submission, whatever protocol carried it: decode (on the verification pool),
//! validate, verify, sequence, self-check the proof, count. The HTTP route
//! (`POST /api/v2/log/entries`) and the gRPC `CreateEntry` both call [`ApiState::submit`], so
//! the rules live here once; each protocol only maps a [`SubmissionError`] to its own answer
//! (rekor-v2-api.md §10; docs/operations.md, "gRPC", has the gRPC table).

use std::sync::Arc;

use tracing::{debug, error, warn};

use crate::backend::{EntryKind, LogBackend, LoggedEntry, SubmitError, ValidatedEntry};
use crate::cpu_pool::CpuPoolError;
use crate::entry::EntryError;
use crate::http::{check_logged_entry, ApiConfig, ApiState};
use crate::metrics::ApiMetrics;
use crate::request::CreateEntryRequest;
use crate::response::transparency_log_entry;

/// An entry that is in the log, with what a TransparencyLogEntry is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub kind: EntryKind,
    pub canonical_body: Vec<u8>,
    pub logged: LoggedEntry,
}

impl Submitted {
    /// The protojson TransparencyLogEntry (the HTTP 201 body).
    pub fn to_json(&self, log_id: &[u8; 32]) -> Vec<u8> {
        transparency_log_entry(log_id, self.kind, &self.canonical_body, &self.logged)
    }
}

/// Why a submission was not logged. Messages are the client-facing texts of §10.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmissionError {
    /// The log is read-only (frozen).
    #[error("this log has been frozen")]
    Frozen,
    /// The request could not be decoded (HTTP 400, InvalidArgument).
    #[error("{0}")]
    Undecodable(String),
    /// The request decoded but is not a valid entry (HTTP 400, InvalidArgument).
    #[error("{0}")]
    Invalid(String),
    /// A valid request that cannot become an entry, e.g. a canonical body over the bundle
    /// record limit (HTTP 500, Unknown).
    #[error("{0}")]
    Unloggable(String),
    /// The log refused or failed to sequence it.
    #[error(transparent)]
    Submit(SubmitError),
    /// The answer's inclusion proof failed the server-side check (HTTP 500, Unknown).
    #[error("failed to integrate entry")]
    ProofCheckFailed,
    /// A bug or a lost verification thread (HTTP 500, Internal).
    #[error("internal server error")]
    Internal,
}

/// Outcome of decoding and validating on a verification thread.
enum Checked {
    Entry(ValidatedEntry),
    Undecodable(String),
    Invalid(EntryError, Option<EntryKind>),
}

impl ApiState {
    /// The configuration this state was built with.
    pub fn config(&self) -> &ApiConfig {
        &self.inner.config
    }

    /// The backend entries are submitted to and reads are served from.
    pub fn backend(&self) -> &Arc<dyn LogBackend> {
        &self.inner.backend
    }

    /// Decodes (with `decode`, on the verification pool: decoding a 4 MiB body is CPU work),
    /// validates, verifies and submits one entry, and checks the answer's proof.
    pub async fn submit<D, E>(&self, decode: D) -> Result<Submitted, SubmissionError>
    where
        D: FnOnce() -> Result<CreateEntryRequest, E> + Send + 'static,
        E: std::fmt::Display,
    {
        let inner = &self.inner;
        if inner.config.read_only {
            return Err(SubmissionError::Frozen);
        }
        let validator = inner.validator.clone();
        let timer = inner.metrics.entry_validation_seconds.start_timer();
        let checked = inner
            .cpu_pool
            .run(move || match decode() {
                Err(e) => Checked::Undecodable(e.to_string()),
                Ok(decoded) => match validator.validate(&decoded) {
                    Ok(entry) => Checked::Entry(entry),
                    Err((error, kind)) => Checked::Invalid(error, kind),
                },
            })
            .await;
        timer.observe_duration();
        let entry = match checked {
            Ok(Checked::Entry(entry)) => entry,
            Ok(Checked::Undecodable(message)) => {
                debug!(%message, "undecodable request");
                return Err(SubmissionError::Undecodable(message));
            }
            Ok(Checked::Invalid(error, kind)) => {
                let message = inner.validator.client_message(&error, kind).to_owned();
                if error.is_client_error() {
                    debug!(reason = %error, "invalid request");
                    return Err(SubmissionError::Invalid(message));
                }
                warn!(reason = %error, "entry cannot be integrated");
                return Err(SubmissionError::Unloggable(message));
            }
            Err(CpuPoolError::Saturated) => {
                return Err(SubmissionError::Submit(SubmitError::Overloaded));
            }
            Err(e) => {
                error!(error = %e, "validation task failed");
                return Err(SubmissionError::Internal);
            }
        };

        let kind = entry.kind;
        let leaf_hash = entry.leaf_hash;
        let canonical_body = entry.canonical_body.clone();
        let logged = inner
            .backend
            .submit(entry)
            .await
            .map_err(SubmissionError::Submit)?;
        check_proof(&inner.metrics, &leaf_hash, &logged)?;
        match kind {
            EntryKind::HashedRekord => inner.metrics.new_hashedrekord_entries.inc(),
            EntryKind::Dsse => inner.metrics.new_dsse_entries.inc(),
        }
        Ok(Submitted {
            kind,
            canonical_body,
            logged,
        })
    }
}

/// [`check_logged_entry`], counted and logged when it fails.
pub(crate) fn check_proof(
    metrics: &ApiMetrics,
    leaf_hash: &[u8; 32],
    logged: &LoggedEntry,
) -> Result<(), SubmissionError> {
    check_logged_entry(leaf_hash, logged).map_err(|reason| {
        metrics.inclusion_proof_failure_total.inc();
        error!(index = logged.log_index, size = logged.tree_size, %reason, "inclusion proof self-check failed");
        SubmissionError::ProofCheckFailed
    })
}
