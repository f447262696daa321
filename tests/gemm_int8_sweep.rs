//! gemm_int8's sweep file and family contract, without a GPU: the space loads, every default
//! shape keeps a measurable number of candidates that meet the kernel's launch contract, the
//! selftest shapes keep candidates (split-K with empty splits among them), and bad shapes are
//! clear errors.

use kernlab::kernels::gemm_int8::{check_shape, gemv_plan, workspace_bytes, GemmInt8, GEMV_MAX_M, MAX_SPLITK};
use kernlab::kernels::{family, DType, Family, Shape};
use kernlab::tune::runner::plan_shapes;
use kernlab::tune::space::{Candidate, DeviceLimits, Sweep};
use std::path::Path;

fn sweep() -> Sweep {
    Sweep::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("sweeps/gemm_int8.toml").as_path(), GemmInt8.shape_dims())
        .unwrap()
}

fn kept(s: &Sweep, shape: &Shape, arch: &str) -> Vec<Candidate> {
    s.enumerate(&shape.dims, 2, &DeviceLimits::for_arch(arch).unwrap()).unwrap().kept
}

#[test]
fn family_is_registered() {
    let f = family("gemm_int8").unwrap();
    assert_eq!(f.peer(), "cublas");
    assert_eq!(f.shape_dims(), &["M", "N", "K"]);
    assert_eq!(f.entries("int8_gemv").unwrap(), &["int8_gemv", "gemm_splitk_reduce"]);
    assert!(kernlab::kernels::families().iter().any(|f| f.name() == "gemm_int8"));
}

#[test]
fn default_shapes_are_the_llama3_8b_decode_projections_and_awkward_ones() {
    let s = sweep();
    assert_eq!(s.family, "gemm_int8");
    let plan = plan_shapes(&GemmInt8, &s, &[], &[]).unwrap();
    for (n, k) in [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)] {
        for m in [1, 8] {
            assert!(plan.iter().any(|(_, sh)| sh.label() == format!("{m}x{n}x{k}")), "{m}x{n}x{k} missing");
        }
    }
    assert!(plan.iter().any(|(_, sh)| sh.label() == "3x1000x4112"));
}

#[test]
fn every_default_shape_keeps_a_measurable_space_that_meets_the_launch_contract() {
    let s = sweep();
    for arch in ["sm_80", "sm_86", "sm_90a"] {
        for (dt, shape) in plan_shapes(&GemmInt8, &s, &[], &[]).unwrap() {
            let (m, n, k) = (shape.get("M"), shape.get("N"), shape.get("K"));
            let cands = kept(&s, &shape, arch);
            println!("{arch} {}: {} candidates", shape.label(), cands.len());
            assert!((10..=120).contains(&cands.len()), "{arch} {}: {} candidates", shape.label(), cands.len());
            for c in &cands {
                assert_eq!(c.variant, "int8_gemv");
                check_shape(&c.variant, &c.params, m, n, k, dt)
                    .unwrap_or_else(|e| panic!("{} {:?}: {e:#}", shape.label(), c.params));
                // The smallest power of two >= M: no wasted accumulators.
                let mm = c.params["M_MAX"];
                assert!(mm >= m && mm < 2 * m, "{} {:?}", shape.label(), c.params);
                assert!(workspace_bytes(&c.variant, &c.params, m, n) <= (MAX_SPLITK * m * n * 4) as usize);
            }
        }
    }
}

#[test]
fn selftest_shapes_keep_candidates_that_launch_in_both_dtypes() {
    let s = sweep();
    for text in GemmInt8.selftest_shapes() {
        let shape = Shape::parse(text, GemmInt8.shape_dims()).unwrap();
        let (m, n, k) = (shape.get("M"), shape.get("N"), shape.get("K"));
        assert!(m <= GEMV_MAX_M, "{text}");
        for arch in ["sm_80", "sm_86", "sm_90a"] {
            let cands = kept(&s, &shape, arch);
            assert!(!cands.is_empty(), "{text} on {arch}: no candidates");
            for c in &cands {
                for dt in [DType::BF16, DType::F16] {
                    GemmInt8.validate(&shape, dt).unwrap();
                    check_shape(&c.variant, &c.params, m, n, k, dt).unwrap_or_else(|e| panic!("{text} {c:?}: {e:#}"));
                }
            }
        }
    }
}

#[test]
fn split_k_with_empty_splits_and_unrolled_tails_are_in_the_selftest_space() {
    let s = sweep();
    // K = 16 is one chunk: SPLITK = 4 leaves three splits with no work, whose partials must
    // still be written as zeros.
    let tiny = Shape::parse("1x8x16", GemmInt8.shape_dims()).unwrap();
    assert!(kept(&s, &tiny, "sm_90a").iter().any(|c| c.params["SPLITK"] == 4));
    // K = 4112 is 257 chunks: 8 warp steps and a tail of one chunk, with UNROLL = 4.
    let odd = Shape::parse("3x1000x4112", GemmInt8.shape_dims()).unwrap();
    assert!(kept(&s, &odd, "sm_90a").iter().any(|c| c.params["UNROLL"] == 4 && c.params["SPLITK"] == 1));
    assert!(kept(&s, &odd, "sm_90a").iter().any(|c| c.params["SPLITK"] > 1));
}

#[test]
fn bad_shapes_are_clear_errors_naming_the_shape() {
    let s = sweep();
    let e = format!("{:#}", plan_shapes(&GemmInt8, &s, &["1x4096x4100".into()], &[]).unwrap_err());
    assert!(e.contains("1x4096x4100") && e.contains("not a multiple of 16"), "{e}");
    let e = format!("{:#}", plan_shapes(&GemmInt8, &s, &["32x4096x4096".into()], &[]).unwrap_err());
    assert!(e.contains("32x4096x4096") && e.contains("decode kernels only"), "{e}");
    let e = format!("{:#}", plan_shapes(&GemmInt8, &s, &["1x4096x4096".into()], &["fp32".into()]).unwrap_err());
    assert!(e.contains("bf16 or fp16"), "{e}");
    // The launch contract of a configuration compiled for a smaller M.
    let c = kept(&s, &Shape::parse("1x4096x4096", GemmInt8.shape_dims()).unwrap(), "sm_90a").remove(0);
    let e = format!("{:#}", check_shape("int8_gemv", &c.params, 8, 4096, 4096, DType::BF16).unwrap_err());
    assert!(e.contains("M_MAX = 1") && e.contains("8x4096x4096"), "{e}");
    assert!(gemv_plan(1, 4096, 4096, &c.params).is_ok());
}

#[test]
fn cli_dry_run_rejects_a_bad_shape() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kernlab"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["sweep", "gemm_int8", "--shape", "1x4096x4100", "--dry-run", "--no-compile", "--arch", "sm_90a"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1x4096x4100") && err.contains("not a multiple of 16"), "{err}");
}

#[test]
fn cli_lists_the_family() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kernlab"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["list"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("gemm_int8") && text.contains("int8_gemv"), "{text}");
}

#[test]
fn flop_and_byte_counts() {
    let f = family("gemm_int8").unwrap();
    let s = Shape::parse("1x4096x14336", f.shape_dims()).unwrap();
    assert_eq!(f.flops(&s), 2.0 * 4096.0 * 14336.0);
    // Codes at a byte, one bf16 scale per row, X + Y in bf16.
    let want = 4096.0 * 14336.0 + 2.0 * 4096.0 + 2.0 * 14336.0 + 2.0 * 4096.0;
    assert_eq!(f.min_bytes(&s, DType::BF16), want);
    // int8 reads about half the bytes of the bf16 peer at M = 1.
    let bf16_bytes = 4096.0 * 14336.0 * 2.0;
    assert!((1.99..2.0).contains(&(bf16_bytes / want)));
}
