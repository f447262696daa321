//! gemm_int4's sweep file and family contract, without a GPU: the space loads, every default
//! shape keeps a sensible number of candidates that meet the kernels' launch contracts, the
//! selftest shapes keep candidates of each variant under every selftest format, and bad
//! shapes are clear errors.

use kernlab::kernels::gemm_int4::{
    bulk_plan, gemv_plan, gemv_tc_plan, mma_geometry, wgmma_plan, wgmma_rs_plan, with_format, GemmInt4, Int4Format,
    SELFTEST_FORMATS,
};
use kernlab::kernels::{family, DType, Family, Shape};
use kernlab::tune::runner::plan_shapes;
use kernlab::tune::space::{Candidate, DeviceLimits, Sweep};
use std::path::Path;

fn sweep() -> Sweep {
    Sweep::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("sweeps/gemm_int4.toml").as_path(), GemmInt4.shape_dims())
        .unwrap()
}

fn kept(s: &Sweep, shape: &Shape, arch: &str) -> Vec<Candidate> {
    s.enumerate(&shape.dims, 2, &DeviceLimits::for_arch(arch).unwrap()).unwrap().kept
}

/// The launch contract of the candidate's kernel holds for this shape (as `run` checks it).
fn launchable(c: &Candidate, s: &Shape, dt: DType) -> anyhow::Result<()> {
    let (m, n, k) = (s.get("M"), s.get("N"), s.get("K"));
    let fmt = Int4Format::from_params(&c.params, dt)?;
    match c.variant.as_str() {
        "int4_gemv" => gemv_plan(m, n, k, &fmt, &c.params).map(|_| ()),
        "int4_gemv_tc" => gemv_tc_plan(m, n, k, &fmt, &c.params).map(|_| ()),
        "int4_gemv_bulk" => bulk_plan(m, n, k, &fmt, &c.params).map(|_| ()),
        "int4_mma" => mma_geometry(m, n, k, &fmt, &c.params).map(|_| ()),
        "int4_mma_wgmma" => wgmma_plan(m, n, k, &fmt, &c.params).map(|_| ()),
        "int4_wgmma_rs" => wgmma_rs_plan(m, n, k, &fmt, &c.params).map(|_| ()),
        v => anyhow::bail!("unknown variant {v}"),
    }
}

#[test]
fn family_is_registered() {
    let f = family("gemm_int4").unwrap();
    assert_eq!(f.peer(), "cublas");
    assert_eq!(f.shape_dims(), &["M", "N", "K"]);
}

#[test]
fn default_shapes_are_the_llama3_8b_projections_at_four_batch_sizes() {
    let s = sweep();
    assert_eq!(s.family, "gemm_int4");
    let plan = plan_shapes(&GemmInt4, &s, &[], &[]).unwrap();
    assert_eq!(plan.len(), 20);
    for (n, k) in [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336), (128256, 4096)] {
        for m in [1, 16, 128, 2048] {
            assert!(plan.iter().any(|(_, sh)| sh.label() == format!("{m}x{n}x{k}")), "{m}x{n}x{k} missing");
        }
    }
}

#[test]
fn every_default_shape_keeps_a_measurable_space_that_meets_the_launch_contracts() {
    let s = sweep();
    let mut total = 0;
    for (dt, shape) in plan_shapes(&GemmInt4, &s, &[], &[]).unwrap() {
        let m = shape.get("M");
        let cands = kept(&s, &shape, "sm_90a");
        // The upper bound keeps the whole-grid sweep of the 20 shapes inside a device call
        // (M = 16 carries int4_gemv_tc's ZP_MMA and NUM_WARPS = 16 choices: up to about 290
        // there; decode candidates time in a fraction of a second).
        assert!((12..=300).contains(&cands.len()), "{}: {} candidates", shape.label(), cands.len());
        let count = |v: &str| cands.iter().filter(|c| c.variant == v).count();
        let (gemv, gemv_tc, mma, wgmma, rs) = (
            count("int4_gemv"),
            count("int4_gemv_tc"),
            count("int4_mma"),
            count("int4_mma_wgmma"),
            count("int4_wgmma_rs"),
        );
        println!(
            "{}: {gemv} int4_gemv, {gemv_tc} int4_gemv_tc, {mma} int4_mma, {wgmma} int4_mma_wgmma, {rs} int4_wgmma_rs",
            shape.label()
        );
        assert_eq!(gemv > 0, m <= 16, "{}: int4_gemv is for M <= 16", shape.label());
        assert_eq!(gemv_tc > 0, m <= 16, "{}: int4_gemv_tc is for M <= 16", shape.label());
        assert_eq!(mma > 0, m >= 16, "{}: int4_mma is for M >= 16", shape.label());
        assert_eq!(wgmma > 0, m >= 64, "{}: int4_mma_wgmma is for M >= 64 (sm_90)", shape.label());
        assert!(rs > 0, "{}: int4_wgmma_rs takes every M (sm_90)", shape.label());
        for c in &cands {
            launchable(c, &shape, dt).unwrap_or_else(|e| panic!("{} {:?}: {e:#}", shape.label(), c));
            // The default sweep measures one format: g128 symmetric.
            assert_eq!(Int4Format::from_params(&c.params, dt).unwrap(), Int4Format::default_for(dt));
        }
        total += cands.len();
    }
    // About 0.3 s each keeps the whole default grid near 10 minutes (sweeps on the GPU machine
    // usually pass --budget); over half are decode candidates (int4_gemv_bulk's among them),
    // which take a fraction of that.
    assert!(total <= 2400, "{total} candidates in the default sweep");
}

#[test]
fn selftest_shapes_keep_candidates_of_each_variant_in_every_format() {
    let s = sweep();
    for text in GemmInt4.selftest_shapes() {
        let shape = Shape::parse(text, GemmInt4.shape_dims()).unwrap();
        let m = shape.get("M");
        for arch in ["sm_80", "sm_86", "sm_90a"] {
            let cands = kept(&s, &shape, arch);
            let hopper = arch == "sm_90a";
            for (variant, wanted) in [
                ("int4_gemv", m <= 16),
                ("int4_gemv_tc", m <= 16),
                ("int4_mma", m >= 16),
                ("int4_mma_wgmma", m >= 64 && hopper),
                ("int4_wgmma_rs", hopper),
            ] {
                let of: Vec<&Candidate> = cands.iter().filter(|c| c.variant == variant).collect();
                assert_eq!(!of.is_empty(), wanted, "{text} on {arch}: {variant}");
                for c in of {
                    for (label, overlay) in SELFTEST_FORMATS {
                        let c2 = Candidate { variant: c.variant.clone(), params: with_format(&c.params, overlay) };
                        for dt in [DType::BF16, DType::F16] {
                            launchable(&c2, &shape, dt).unwrap_or_else(|e| panic!("{text} {label} {c2:?}: {e:#}"));
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn split_k_with_empty_splits_is_in_the_selftest_space() {
    // K = 128 with VEC = 4 is 4 chunks of 32 codes: SPLITK = 8 leaves splits with no work,
    // whose partials must still be written as zeros.
    let s = sweep();
    let shape = Shape::parse("1x8x128", GemmInt4.shape_dims()).unwrap();
    assert!(kept(&s, &shape, "sm_90a")
        .iter()
        .any(|c| c.variant == "int4_gemv" && c.params["SPLITK"] == 8 && c.params["VEC"] == 4));
}

#[test]
fn k_not_a_multiple_of_the_group_is_a_clear_error_naming_the_shape() {
    let s = sweep();
    let e = format!("{:#}", plan_shapes(&GemmInt4, &s, &["1x4096x4000".into()], &[]).unwrap_err());
    assert!(e.contains("1x4096x4000") && e.contains("group size 128"), "{e}");
    let e = format!("{:#}", plan_shapes(&GemmInt4, &s, &["1x4096x4096".into()], &["fp32".into()]).unwrap_err());
    assert!(e.contains("bf16 or fp16"), "{e}");
}

#[test]
fn cli_dry_run_rejects_a_bad_shape() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kernlab"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["sweep", "gemm_int4", "--shape", "16x4096x4100", "--dry-run", "--no-compile", "--arch", "sm_90a"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("16x4096x4100") && err.contains("not a multiple of the group size"), "{err}");
}

#[test]
fn flop_and_byte_counts() {
    let f = family("gemm_int4").unwrap();
    let s = Shape::parse("1x4096x14336", f.shape_dims()).unwrap();
    assert_eq!(f.flops(&s), 2.0 * 4096.0 * 14336.0);
    // X + Y in bf16, packed codes at half a byte, one bf16 scale per 128 weights.
    let want = (14336.0 + 4096.0) * 2.0 + 4096.0 * 14336.0 / 2.0 + 4096.0 * 14336.0 / 128.0 * 2.0;
    assert_eq!(f.min_bytes(&s, DType::BF16), want);
    // int4 reads about 3.9x fewer bytes than the bf16 peer at M = 1.
    let bf16_bytes = 4096.0 * 14336.0 * 2.0;
    assert!((3.8..4.0).contains(&(bf16_bytes / want)));
}
