//! Load generation and benchmarking (the performance issue): realistic pre-signed write
//! requests, a closed- and open-loop HTTP load runner with HDR latency histograms, and the
//! scenarios of the `bench` command (writes on one and three nodes, the same-run verification
//! ceiling, reads next to nginx, memory and disk figures).
//!
//! - [`requests`]: the request pool — hashedrekord v0.0.2 requests (rekor-v2-api.md §4) signed
//!   before the clock starts, over a mix of key types and verifier kinds.
//! - [`runner`]: drives a [`runner::Workload`] against one or more nodes and reports throughput,
//!   latency percentiles, errors by status and sampled inclusion-proof checks.
//! - [`system`]: what the operating system and a node's `/metrics` say about a node process.
//! - [`growth`]: integration rate, proof latency, disk and memory as a log grows to 10 M
//!   entries, through the node's integration code in process.
//! - [`bench`]: the scenarios and the Markdown/JSON report.

pub mod bench;
pub mod growth;
pub mod requests;
pub mod runner;
pub mod system;
pub mod thread_cpu;

pub use requests::{KeyKind, RequestMix, RequestPool};
pub use runner::{run_load, Arrival, LatencySummary, LoadConfig, LoadReport, Workload};
