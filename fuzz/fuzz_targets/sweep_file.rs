//! cargo-fuzz target; the body is kernlab::tune::fuzzing::sweep_file (driven by cargo test too).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kernlab::tune::fuzzing::sweep_file(data));
