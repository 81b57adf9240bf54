//! Tile paths (tlog-tiles.md §2): `rekor_storage::tiles::parse_tile_path` and
//! `rekor_api::TileRequest::parse` on arbitrary text, and the reverse direction from
//! arbitrary tile ids.
//!
//! Properties: no panic; both parsers agree; an accepted path is canonical (its `path()` is
//! exactly `tile/` + the input) and parses back to the same value; `is_within` never panics
//! and is monotone in the tree size; every valid id formats to a path that parses back to it.

use rekor_api::TileRequest;
use rekor_storage::tiles::{
    parse_tile_path, BundleId, TileId, TilePath, MAX_TILE_LEVEL, TILE_WIDTH,
};

const SIZES: [u64; 8] = [0, 1, 255, 256, 70_000, 1 << 40, u64::MAX - 1, u64::MAX];

fn path_of(parsed: TilePath) -> String {
    match parsed {
        TilePath::Hash(id) => id.path(),
        TilePath::Entries(id) => id.path(),
    }
}

/// The checks for one input.
pub fn check(data: &[u8]) {
    if let Ok(tail) = std::str::from_utf8(data) {
        check_tail(tail);
    }
    check_id(data);
}

fn check_tail(tail: &str) {
    let parsed = parse_tile_path(tail);
    let request = TileRequest::parse(tail);
    assert_eq!(
        request.map(|r| r.0),
        parsed.clone().ok(),
        "the API and storage parsers disagree on {tail:?}"
    );
    let Ok(parsed) = parsed else {
        return;
    };
    let (level, width) = match parsed {
        TilePath::Hash(id) => (id.level, id.width),
        TilePath::Entries(id) => (0, id.width),
    };
    assert!(
        level <= MAX_TILE_LEVEL,
        "level {level} accepted in {tail:?}"
    );
    assert!(
        (1..=TILE_WIDTH).contains(&width),
        "width {width} accepted in {tail:?}"
    );
    let path = path_of(parsed);
    assert_eq!(
        path,
        format!("tile/{tail}"),
        "a non-canonical path was accepted"
    );
    let again = parse_tile_path(&path["tile/".len()..]);
    assert_eq!(again, Ok(parsed), "{path} does not parse back");
    if let Some(request) = request {
        assert_eq!(request.path(), path);
        assert_eq!(
            TileRequest::parse(&request.path()["tile/".len()..]),
            Some(request)
        );
        check_within(request);
    }
}

/// Once a tile is within a tree, it is within every larger tree.
fn check_within(request: TileRequest) {
    let mut seen_within = false;
    for size in SIZES {
        let within = request.is_within(size);
        assert!(
            within || !seen_within,
            "{request} within a smaller tree but not size {size}"
        );
        seen_within |= within;
    }
}

/// The first 11 bytes as (level, index, width): every valid id round-trips through its path.
fn check_id(data: &[u8]) {
    let Some(bytes) = data.get(..11) else {
        return;
    };
    let level = bytes[0];
    let index = u64::from_be_bytes([
        bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], bytes[8],
    ]);
    let width = u16::from_be_bytes([bytes[9], bytes[10]]);
    if let Ok(id) = TileId::new(level, index, width) {
        let path = id.path();
        assert_eq!(
            parse_tile_path(&path["tile/".len()..]),
            Ok(TilePath::Hash(id)),
            "{path}"
        );
        check_within(TileRequest(TilePath::Hash(id)));
    }
    if let Ok(id) = BundleId::new(index, width) {
        let path = id.path();
        assert_eq!(
            parse_tile_path(&path["tile/".len()..]),
            Ok(TilePath::Entries(id)),
            "{path}"
        );
    }
}
