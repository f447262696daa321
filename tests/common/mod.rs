//! Helpers shared by several integration tests (each test crate includes this with `mod common;`).

use kernlab::llama::ggml_types::{quantize, GgmlType};

/// `x` encoded as GGUF tensor data of type `t` (the types the test files write).
pub fn ggml_bytes(t: GgmlType, x: &[f32]) -> Vec<u8> {
    match t {
        GgmlType::F32 => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => x.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
        GgmlType::BF16 => x.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect(),
        GgmlType::Q8_0 => quantize::q8_0(x),
        GgmlType::Q4_0 => quantize::q4_0(x),
        GgmlType::Q4_1 => quantize::q4_1(x),
        other => panic!("no writer for {other:?}"),
    }
}
