//! Helpers shared by several integration tests (each test crate includes this with `mod common;`).
// Each test crate uses some of these, none all of them.
#![allow(dead_code)]

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

/// Files below `dir` (recursively) whose name ends with one of `exts`, sorted.
pub fn files_below(dir: &std::path::Path, exts: &[&str]) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("reading {}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().and_then(|x| x.to_str()).is_some_and(|x| exts.contains(&x)) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
