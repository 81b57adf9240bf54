//! The transparency log's data model: RFC 6962 Merkle math, C2SP tlog-tiles tiles and
//! entry bundles, proofs over tiles, signed notes, checkpoints and cosignatures, and
//! the tile store (the only module that does IO).
//!
//! One module per specification (see `../shared/STYLE.md`):
//! - [`merkle`]: RFC 6962 hashing, the compact range, RFC 9162 proof verification.
#![forbid(unsafe_code)]

pub mod merkle;
