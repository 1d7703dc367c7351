//! libFuzzer target: see `soabus_fuzz::envelope` (tests/src/fuzz.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| soabus_fuzz::envelope(data));
