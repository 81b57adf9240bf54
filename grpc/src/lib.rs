//! The Rekor v2 gRPC service, `dev.sigstore.rekor.v2.Rekor`, next to the HTTP API.
//!
//! Upstream rekor-tiles serves its API over gRPC and translates HTTP into it; we serve HTTP
//! natively (the `rekor-api` crate) and offer gRPC for the clients that speak it (grpcurl, the
//! upstream CLIENTS.md examples, generated stubs). The wire contract is upstream's protos: our own
//! restatement of them is in `proto/` (same packages, names and field numbers; cluster-tests
//! compare the descriptors we serve with `testdata/upstream-grpc/`).
//!
//! There is one submission path: [`service`] turns the decoded protobuf message into the
//! `rekor_api::CreateEntryRequest` the JSON decoder produces and calls
//! `rekor_api::ApiState::submit`, the function the HTTP route calls. Only the error mapping is
//! gRPC's own ([`status`]).
//!
//! Map:
//! - [`pb`]: the generated messages and server stubs (build.rs, protox + tonic-prost-build).
//! - [`service`]: the `Rekor` methods: CreateEntry, GetCheckpoint, GetTile, GetEntryBundle.
//! - [`status`]: submission and read errors as gRPC statuses.
//! - [`listener`]: accepting connections: the connection cap, TLS handshakes with a deadline.
//! - [`budget`]: the shared byte budget of request bodies being read.
//! - [`server`]: limits, health, reflection, and serving until shutdown.
//! - [`metrics`]: `rekor_grpc_requests_total` and latency.
#![forbid(unsafe_code)]

pub mod budget;
pub mod listener;
pub mod metrics;
pub mod pb;
pub mod server;
pub mod service;
pub mod status;

pub use server::{GrpcLimits, GrpcServer};

/// The full name of the Rekor service (health checks use it).
pub const SERVICE_NAME: &str = "dev.sigstore.rekor.v2.Rekor";
