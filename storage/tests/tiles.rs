//! C2SP tlog-tiles layout rules (tlog-tiles.md §2–§4) and the spec's worked
//! examples (restated in `testdata/c2sp/examples.json`).

use rekor_storage::tiles::{
    self, parse_tile_path, BundleId, TileError, TileId, TilePath, TILE_WIDTH,
};

fn tile(level: u8, index: u64, width: u16) -> TileId {
    TileId::new(level, index, width).unwrap()
}

#[test]
fn index_paths_use_x_prefixed_three_digit_groups() {
    for (n, want) in [
        (0, "000"),
        (5, "005"),
        (999, "999"),
        (1000, "x001/000"),
        (1234, "x001/234"),
        (19_669, "x019/669"),
        (1_234_067, "x001/x234/067"),
        (u64::MAX, "x018/x446/x744/x073/x709/x551/615"),
    ] {
        assert_eq!(tiles::index_path(n), want);
    }
}

#[test]
fn tile_and_bundle_paths() {
    assert_eq!(tile(0, 1234, 256).path(), "tile/0/x001/234");
    assert_eq!(tile(1, 1, 17).path(), "tile/1/001.p/17");
    assert_eq!(tile(63, 0, 1).path(), "tile/63/000.p/1");
    assert_eq!(
        BundleId::new(273, 112).unwrap().path(),
        "tile/entries/273.p/112"
    );
    assert_eq!(BundleId::new(0, 256).unwrap().path(), "tile/entries/000");
    assert_eq!(TileId::new(64, 0, 1), Err(TileError::InvalidLevel(64)));
    assert_eq!(TileId::new(0, 0, 0), Err(TileError::InvalidWidth(0)));
    assert_eq!(TileId::new(0, 0, 257), Err(TileError::InvalidWidth(257)));
}

#[test]
fn well_formed_paths_parse_and_round_trip() {
    for (path, want) in [
        ("0/000", TilePath::Hash(tile(0, 0, 256))),
        ("0/x001/234", TilePath::Hash(tile(0, 1234, 256))),
        ("1/001.p/17", TilePath::Hash(tile(1, 1, 17))),
        (
            "63/x001/x234/067.p/255",
            TilePath::Hash(tile(63, 1_234_067, 255)),
        ),
        (
            "entries/273.p/112",
            TilePath::Entries(BundleId::new(273, 112).unwrap()),
        ),
        (
            "entries/x018/x446/x744/x073/x709/x551/615",
            TilePath::Entries(BundleId::new(u64::MAX, 256).unwrap()),
        ),
    ] {
        assert_eq!(parse_tile_path(path), Ok(want), "{path}");
        let round = match want {
            TilePath::Hash(t) => t.path(),
            TilePath::Entries(b) => b.path(),
        };
        assert_eq!(round, format!("tile/{path}"));
    }
}

/// tlog-tiles.md §2: every malformed form is rejected.
#[test]
fn malformed_paths_are_rejected() {
    for bad in [
        "",
        "0",
        "0/",
        "/000",
        "00/000",                                   // leading zero in the level
        "01/000",                                   // leading zero in the level
        "64/000",                                   // level above 63
        "-1/000",                                   // sign
        "+1/000",                                   // sign
        "a/000",                                    // not a number
        "0/0",                                      // group not 3 digits
        "0/00",                                     // group not 3 digits
        "0/0000",                                   // group not 3 digits
        "0/x000",                                   // x on the last group
        "0/x123",                                   // x on the last group
        "0/001/234",                                // missing x on a leading group
        "0/x001/x234",                              // x on the last group
        "0/x000/001",                               // non-canonical zero leading group
        "0/xx01/234",                               // bad prefix
        "0/X001/234",                               // upper-case X
        "0/x1/234",                                 // short leading group
        "0/12a",                                    // non-digit
        "0/x018/x446/x744/x073/x709/x551/616",      // u64 overflow
        "0/x100/x000/x000/x000/x000/x000/x000/000", // overflow
        "0/000.p/0",                                // width 0
        "0/000.p/256",                              // width 256 is never partial
        "0/000.p/300",                              // width too large
        "0/000.p/01",                               // leading zero in width
        "0/000.p/",                                 // empty width
        "0/000.p",                                  // missing width
        "0/000.p/1/",                               // trailing slash
        "0/000/",                                   // trailing slash
        "0/000.p/1.p/1",                            // doubled suffix
        "entries/0",                                // bundle group not 3 digits
        "entries/000.p/256",                        // bundle width 256
        "entries",                                  // no index
        "entry/000",                                // wrong word
        "data/000",                                 // static-ct data tiles are not ours
        "0/ 000",                                   // whitespace
        "0/000 ",                                   // whitespace
    ] {
        assert!(
            matches!(parse_tile_path(bad), Err(TileError::MalformedPath(_))),
            "accepted {bad:?}"
        );
    }
}

/// tlog-tiles: a tree of 70,000 is 273 full level-0 tiles plus a partial of width
/// 112, one full level-1 tile plus a partial of width 17, and a level-2 partial of 1.
#[test]
fn tiles_for_tree_of_70000() {
    assert_eq!(tiles::partial_tile_width(0, 70_000), 112);
    assert_eq!(tiles::partial_tile_width(1, 70_000), 17);
    assert_eq!(tiles::partial_tile_width(2, 70_000), 1);
    assert_eq!(tiles::partial_tile_width(3, 70_000), 0);
    let all: Vec<TileId> = tiles::tiles_touched(0, 70_000).collect();
    let level = |l: u8| all.iter().filter(move |t| t.level == l);
    assert_eq!(level(0).filter(|t| t.is_full()).count(), 273);
    assert_eq!(
        level(0)
            .filter(|t| !t.is_full())
            .copied()
            .collect::<Vec<_>>(),
        vec![tile(0, 273, 112)]
    );
    assert_eq!(
        level(1).copied().collect::<Vec<_>>(),
        vec![tile(1, 0, 256), tile(1, 1, 17)]
    );
    assert_eq!(level(2).copied().collect::<Vec<_>>(), vec![tile(2, 0, 1)]);
    assert_eq!(all.len(), 273 + 1 + 2 + 1);
    let paths: Vec<String> = all
        .iter()
        .filter(|t| !t.is_full() || t.level > 0)
        .map(|t| t.path())
        .collect();
    assert_eq!(
        paths,
        [
            "tile/0/273.p/112",
            "tile/1/000",
            "tile/1/001.p/17",
            "tile/2/000.p/1"
        ]
    );
    let bundles: Vec<BundleId> = tiles::bundles_touched(0, 70_000).collect();
    assert_eq!(bundles.len(), 274);
    assert_eq!(bundles[273].path(), "tile/entries/273.p/112");
}

#[test]
fn tree_of_256_has_a_full_level0_tile_and_a_level1_partial() {
    let all: Vec<TileId> = tiles::tiles_touched(0, 256).collect();
    assert_eq!(all, vec![tile(0, 0, 256), tile(1, 0, 1)]);
    assert_eq!(tiles::tiles_touched(0, 0).count(), 0);
    assert_eq!(tiles::tiles_touched(5, 5).count(), 0);
}

#[test]
fn growth_touches_only_changed_tiles() {
    assert_eq!(
        tiles::tiles_touched(3, 4).collect::<Vec<_>>(),
        vec![tile(0, 0, 4)]
    );
    assert_eq!(
        tiles::tiles_touched(255, 257).collect::<Vec<_>>(),
        vec![tile(0, 0, 256), tile(0, 1, 1), tile(1, 0, 1)]
    );
    assert_eq!(
        tiles::tiles_touched(256, 300).collect::<Vec<_>>(),
        vec![tile(0, 1, 44)]
    );
    assert_eq!(
        tiles::bundles_touched(250, 600).collect::<Vec<_>>(),
        vec![
            BundleId::new(0, 256).unwrap(),
            BundleId::new(1, 256).unwrap(),
            BundleId::new(2, 88).unwrap()
        ]
    );
}

#[test]
fn tile_and_bundle_encodings() {
    let hashes = [[1u8; 32], [2u8; 32]];
    let bytes = tiles::encode_tile(&hashes);
    assert_eq!(bytes.len(), 64);
    assert_eq!(tiles::decode_tile(&bytes, 2).unwrap(), hashes);
    assert!(tiles::decode_tile(&bytes, 3).is_err());
    assert!(tiles::decode_tile(&bytes[..63], 2).is_err());
    assert!(tiles::decode_tile(&[], 0).is_err());

    // tlog-tiles.md §4 example: `00 03 'one' 00 03 'two' 00 05 'three'`.
    let b = tiles::encode_bundle(&["one", "two", "three"]).unwrap();
    assert_eq!(b, b"\x00\x03one\x00\x03two\x00\x05three");
    assert_eq!(
        tiles::decode_bundle(&b).unwrap(),
        vec![&b"one"[..], b"two", b"three"]
    );
    assert!(tiles::decode_bundle(&b[..b.len() - 1]).is_err());
    assert!(tiles::decode_bundle(&[0]).is_err());
    let max = vec![7u8; 65_535];
    let enc = tiles::encode_bundle(&[&max]).unwrap();
    assert_eq!(&enc[..2], &[0xff, 0xff]);
    assert_eq!(tiles::decode_bundle(&enc).unwrap(), vec![max.as_slice()]);
    assert_eq!(
        tiles::encode_bundle(&[vec![0u8; 65_536]]),
        Err(TileError::EntryTooLarge(65_536))
    );
    assert_eq!(TILE_WIDTH, 256);
}
