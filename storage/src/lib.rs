//! The transparency log's data model: RFC 6962 Merkle math, C2SP tlog-tiles tiles and
//! entry bundles, proofs over tiles, signed notes, checkpoints and cosignatures, and
//! the tile store (the only module that does IO). No networking, no Raft.
//!
//! One module per specification:
//! - [`merkle`]: RFC 6962 hashing, the compact range, RFC 9162 proof verification.
//! - [`tiles`]: C2SP tlog-tiles paths, partial widths, tile and bundle encodings.
//! - [`integrate`]: the integration core ([`integrate::TreeBuilder`]).
//! - [`proof`]: inclusion and consistency proofs built from tiles.
//! - [`repair`]: naming and rebuilding damaged right-edge objects.
//! - [`note`]: C2SP signed-note, key IDs, note signers and verifiers.
//! - [`checkpoint`]: C2SP tlog-checkpoint bodies, signing and verification.
//! - [`cosignature`]: C2SP tlog-cosignature `cosignature/v1`.
//! - [`tile_store`]: the object-store-backed tile store.
//!
//! Typical paths through the crate:
//!
//! ```text
//! integrator:  TreeBuilder::resume_checked(&store, size, &root)   // reads the right edge only
//!              builder.stage(&entries) -> StagedStep              // hashed on a copy; .root()
//!              staged.write(&store) -> TreeBuilder                // concurrent, durable, idempotent
//! proofs:      proof::tiles_for_inclusion(index, size) -> store.fetch_tile_set(&ids)
//!              proof::build_inclusion_proof(index, size, &set) -> merkle::verify_inclusion(..)
//! checkpoints: Checkpoint::new(origin, size, root).sign(&signer)  // one log signature line
//!              checkpoint::append_cosignatures(&signed, &witness_lines)
//! ```
#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod cosignature;
pub mod integrate;
pub mod merkle;
pub mod note;
pub mod proof;
pub mod repair;
pub mod tile_store;
pub mod tiles;
