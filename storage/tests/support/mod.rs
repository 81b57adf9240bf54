//! The repository's test vectors (`testdata/` at the workspace root; sources and licences in
//! its README), found from this crate so a clone needs nothing beside it.
#![allow(dead_code)]

use std::path::PathBuf;

/// The workspace's `testdata/` folder.
pub fn testdata_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata"))
}

/// A file of `testdata/` as text.
pub fn testdata(rel: &str) -> String {
    let full = testdata_dir().join(rel);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}
