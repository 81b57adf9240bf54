//! Signed notes and checkpoints: arbitrary bytes as a signed checkpoint, a note text and a
//! verifier key (see `rekor_fuzz::note`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rekor_fuzz::note::check(data));
