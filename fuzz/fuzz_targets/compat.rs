//! libFuzzer target: see `soabus_fuzz::compat` (tests/src/fuzz.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| soabus_fuzz::compat(data));
