//! The Rekor v2 HTTP surface: proto3-JSON request decoding,
//! hashedrekord v0.0.2 (and opt-in legacy dsse v0.0.2) validation, canonical bodies,
//! `TransparencyLogEntry` responses, the error mapping, the tlog-tiles read routes, health and
//! metrics.
//!
//! Section numbers (`§3`, `rekor-v2-api.md §5`) refer to the project's wire contract;
//! `docs/spec-references.md` maps each to the public source it restates (sigstore/rekor-tiles,
//! sigstore/protobuf-specs, C2SP).
//!
//! The crate knows nothing of Raft: whatever sequences entries implements [`LogBackend`].
//!
//! Map:
//! - [`proto_json`], [`request`]: decoding (§3, §4, §12.1).
//! - [`key_details`], [`verifier`], [`verifier_aws_lc`], [`entry`]: validation (§5, §12.2).
//! - [`canonical`]: canonical bodies and hashes (§6).
//! - [`response`]: the 201 body and status bodies (§7, §10).
//! - [`backend`]: the [`LogBackend`] seam and tile paths.
//! - [`cpu_pool`]: the bounded thread pool that decodes and verifies requests.
//! - [`limits`]: body deadlines and the byte budget of a listener.
//! - [`deadlines`]: deadlines between requests on a connection (idle, request head).
//! - [`health`]: `/livez` (liveness) and `/healthz` (readiness).
//! - [`access_log`]: request logging without bodies.
//! - [`submission`]: one entry submission, shared by the HTTP route and gRPC `CreateEntry`.
//! - [`http`]: routes, [`ApiConfig`], [`ApiState`].
//! - [`metrics`]: Prometheus metrics (§14.2).
//! - [`memory_log`]: an in-process backend on the storage crate.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod backend;
pub mod canonical;
pub mod cpu_pool;
pub mod deadlines;
pub mod entry;
pub mod health;
pub mod http;
pub mod key_details;
pub mod limits;
pub mod memory_log;
pub mod metrics;
pub mod proto_json;
pub mod request;
pub mod response;
pub mod submission;
pub mod verifier;
pub mod verifier_aws_lc;

pub use backend::{
    bundle_holding, entry_in_bundle, EntryKind, LogBackend, LoggedEntry, ReadError, Readiness,
    ReadinessCheck, StoredEntry, SubmitError, TileRequest, ValidatedEntry,
};
pub use entry::{EntryError, EntryValidator};
pub use http::{metrics_response, ApiConfig, ApiSetupError, ApiState, Instance};
pub use key_details::{AlgorithmPolicy, HashAlgorithm, PublicKeyDetails};
pub use request::CreateEntryRequest;
pub use submission::{SubmissionError, Submitted};
pub use verifier::{EntryVerifier, RustCryptoVerifier};
pub use verifier_aws_lc::AwsLcVerifier;
