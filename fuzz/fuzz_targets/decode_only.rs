//! Decoding only: arbitrary bytes of up to 4 MiB through `CreateEntryRequest::from_json`, fast
//! enough per input for libFuzzer's `-timeout` to catch a slow decoding (see
//! `rekor_fuzz::decode`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| rekor_fuzz::decode::check(body));
