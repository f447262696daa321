//! NVRTC (no GPU): the ceiling micro-benchmarks and the GEMM configuration `kernlab
//! roofline` times compile for the target architectures, with every entry point present
//! and nothing spilled (a spill in a bandwidth or peak kernel would make its ceiling low).

use kernlab::gpu::nvrtc::{compile, CompileRequest};
use kernlab::measure::{gemm, micro};

const ENTRIES: &[&str] = &[
    "copy_v16_u2",
    "copy_v16_u4",
    "copy_v16_u8",
    "read_v16_u2",
    "read_v16_u4",
    "read_v16_u8",
    "l2_read_v16",
    "fma_f32",
    "mma_peak_bf16",
    "mma_peak_f16",
];

#[test]
fn ceilings_kernels_compile_for_sm80_and_sm90a() {
    for arch in ["sm_80", "sm_90a"] {
        let m = compile(&micro::request(arch)).unwrap_or_else(|e| panic!("{arch}: {e:#}"));
        assert!(!m.cubin.is_empty());
        for e in ENTRIES {
            let r = m.resources.get(*e).unwrap_or_else(|| panic!("{arch}: no entry {e} in {:?}", m.resources.keys()));
            assert_eq!(r.spill_store_bytes + r.spill_load_bytes, 0, "{arch} {e} spills");
            assert_eq!(r.stack_bytes, 0, "{arch} {e} uses a stack");
        }
    }
}

#[test]
fn ceilings_kernels_reject_bad_tunables() {
    let mut req = micro::request("sm_90a");
    req.defines.insert("UNROLL".into(), "0".into());
    let e = compile(&req).unwrap_err();
    assert!(format!("{e:#}").contains("UNROLL"), "{e:#}");
}

#[test]
fn gemm_mma_defaults_compile_in_both_dtypes() {
    for fp16 in [false, true] {
        let mut defines: std::collections::BTreeMap<String, String> =
            gemm::default_params().into_iter().map(|(k, v)| (k, v.to_string())).collect();
        if fp16 {
            defines.insert("KL_FP16".into(), "1".into());
        }
        let req = CompileRequest {
            name: gemm::MMA_FILE.into(),
            source: gemm::mma_source().unwrap(),
            defines,
            arch: "sm_90a".into(),
        };
        let m = compile(&req).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(m.resources.contains_key("gemm_mma"));
    }
}
