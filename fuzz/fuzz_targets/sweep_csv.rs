//! cargo-fuzz target; the body is kernlab::tune::fuzzing::sweep_csv (driven by cargo test too).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kernlab::tune::fuzzing::sweep_csv(data));
