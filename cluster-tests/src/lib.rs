//! Multi-process test harness: real `rekor-node` processes on loopback ports, each with its own
//! data directory, driven over HTTP exactly as clients and operators drive them.
//!
//! The binary is `$REKOR_NODE_BIN`, or `target/debug/rekor-node` of this workspace (the test
//! command builds it before running the tests).

pub mod chaos;
pub mod client;
pub mod hostile;
pub mod kms_fakes;
pub mod load;
pub mod moto;
pub mod pki;
pub mod podman;
pub mod process;
pub mod s3;
pub mod softhsm;
pub mod witness;

pub use client::{check_logged_entry, EntryFactory, LogClient, SubmitResult};
pub use process::{free_port, node_binary, wait_until, Cluster, NodeProcess, NodeSpec, Signer};
