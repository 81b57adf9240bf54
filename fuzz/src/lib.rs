//! The properties the fuzz targets check, one module per target. Each `check` panics (which
//! libFuzzer reports as a crash) when an input breaks a property; returning is a pass.
//!
//! `decode` is the decoding-only subset of `request`, for long inputs and a per-input timeout.
//!
//! The same properties run in the normal test suite as proptests:
//! `api/tests/proptest_inputs.rs` and `storage/tests/proptest_inputs.rs`.
#![forbid(unsafe_code)]

pub mod decode;
pub mod note;
pub mod request;
pub mod tile_path;

/// Reads a file of the repository's test vectors (`testdata/` at the workspace root).
pub(crate) fn testdata(path: &str) -> String {
    let full = format!("{}/../testdata/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {full}: {e}"))
}

/// The DER inside a PEM block.
pub(crate) fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap_or_else(|e| panic!("test PEM is not base64: {e}"))
}
