//! Witnessing: before the leader publishes a checkpoint it asks the witnesses of its policy to
//! cosign it (C2SP tlog-witness, tlog-tiles.md §9–§10; rekor-v2-api.md §9), appends one
//! verified cosignature line per witness, and checks the policy's quorum.
//!
//! - [`policy`]: the Sigsum-format policy file (`--witness-policy`).
//! - [`client`]: the `add-checkpoint` client with the `409` resync, consistency proofs from our own
//!   tiles, per-witness memory of the last cosigned size, and the fail-open / require-quorum rule.
//! - [`response`]: what is taken from a witness's answer (one line per key, bounded).
//! - [`evidence`]: which answers are evidence of a rollback or fork, and when it is enough to halt.
//! - [`halt`]: the publication halt that evidence at the quorum sets.

pub mod client;
pub mod evidence;
pub mod halt;
pub mod policy;
pub mod response;

pub use client::{CommittedLeaves, WitnessSettings, Witnessing};
pub use halt::PublicationHalt;
pub use policy::WitnessPolicy;
