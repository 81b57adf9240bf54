//! Tile paths: arbitrary bytes as the part of a read path after `tile/`, and as a tile id
//! (see `rekor_fuzz::tile_path`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rekor_fuzz::tile_path::check(data));
