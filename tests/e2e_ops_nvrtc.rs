//! Tier 2 (no GPU): the Llama op kernels (kernels/llama/ops.cu) compile with NVRTC for the
//! target architectures, export every entry point the model launches, and do not spill.

use kernlab::gpu::nvrtc;
use kernlab::llama::gpu::ops::{compile_request, OPS_ENTRIES};

#[test]
fn ops_compile_for_sm80_and_sm90a() {
    for arch in ["sm_80", "sm_90a"] {
        let m = nvrtc::compile(&compile_request(arch)).unwrap_or_else(|e| panic!("ops.cu for {arch}: {e:#}"));
        for e in OPS_ENTRIES {
            let r = m
                .resources
                .get(*e)
                .unwrap_or_else(|| panic!("{arch}: entry {e} missing; have {:?}", m.resources.keys()));
            assert_eq!(r.spill_store_bytes, 0, "{arch}: {e} spills");
        }
    }
}
