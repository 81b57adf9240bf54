//! Request decoding: arbitrary bytes as a `POST /api/v2/log/entries` body, through the pure
//! pipeline and the HTTP handler (see `rekor_fuzz::request`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: rekor_fuzz::request::init(),
    |body: &[u8]| rekor_fuzz::request::check(body)
);
