//! Witnessing: before the leader publishes a checkpoint it asks the witnesses of its policy to
//! cosign it (C2SP tlog-witness, tlog-tiles.md §9–§10; rekor-v2-api.md §9), appends the
//! cosignature lines that verify, and checks the policy's quorum.
//!
//! - [`policy`]: the Sigsum-format policy file (`--witness-policy`).
//! - [`client`]: the `add-checkpoint` client with the `409` resync, consistency proofs from our own
//!   tiles, per-witness memory of the last cosigned size, and the fail-open / require-quorum rule.

pub mod client;
pub mod policy;

pub use client::{WitnessSettings, Witnessing};
pub use policy::WitnessPolicy;
