//! cargo-fuzz target; the body is kernlab::llama::fuzzing::safetensors_shard (replayed by cargo test).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kernlab::llama::fuzzing::safetensors_shard(data));
