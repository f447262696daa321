//! Tier 2 (no GPU): every kernel template compiles with NVRTC for the target architectures,
//! at its defaults and at a spread-out sample of its sweep space on the default shapes.

mod nvrtc_support;

use kernlab::gpu::nvrtc::{self, CompileRequest};
use kernlab::kernels::{self, DType, Family, Shape};
use kernlab::tune::compile;
use kernlab::tune::space::{DeviceLimits, Strategy, Sweep};
use kernlab::tune::strategy;
use nvrtc_support::{assert_all_compile, Job};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const ARCHS: &[&str] = &["sm_80", "sm_86", "sm_90a"];
const SAMPLE_PER_VARIANT: usize = 3;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every shipped sweep file (sorted), loaded with its family.
fn shipped_sweeps() -> Vec<(&'static dyn Family, Sweep)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root().join("sweeps"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().map(|e| e == "toml").unwrap_or(false))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let fam = kernels::family(&family_of(p)).unwrap();
            (fam, Sweep::load(p, fam.shape_dims()).unwrap())
        })
        .collect()
}

fn family_of(path: &Path) -> String {
    let v: toml::Value = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["family"].as_str().unwrap().to_string()
}

#[test]
fn every_template_compiles_at_its_defaults_for_every_arch() {
    let mut jobs = Vec::new();
    for (_, sweep) in shipped_sweeps() {
        for v in &sweep.variants {
            for arch in ARCHS {
                let cc: i64 = arch.trim_start_matches("sm_").trim_end_matches('a').parse().unwrap();
                if v.min_cc.map(|m| cc < m).unwrap_or(false) {
                    continue;
                }
                for dt in [DType::BF16, DType::F16] {
                    jobs.push(Job::new(
                        format!("{} {} {}", sweep.family, v.name, dt.name()),
                        CompileRequest {
                            name: v.file.display().to_string(),
                            source: v.source.clone(),
                            defines: dt.defines(),
                            arch: arch.to_string(),
                        },
                    ));
                }
            }
        }
    }
    assert!(jobs.len() >= 6, "expected the shipped sweeps to hold several variants");
    assert_all_compile(jobs);
}

#[test]
fn a_sample_of_every_sweep_space_compiles() {
    let mut jobs = Vec::new();
    for (fam, sweep) in shipped_sweeps() {
        for arch in ["sm_90a", "sm_80"] {
            let limits = DeviceLimits::for_arch(arch).unwrap();
            let mut by_variant: BTreeMap<String, Vec<kernlab::tune::space::Candidate>> = BTreeMap::new();
            for s in &sweep.shapes {
                let shape = Shape::parse(s, fam.shape_dims()).unwrap();
                for c in sweep.enumerate(&shape.dims, 2, &limits).unwrap().kept {
                    let list = by_variant.entry(c.variant.clone()).or_default();
                    if !list.contains(&c) {
                        list.push(c);
                    }
                }
            }
            for (variant, cands) in by_variant {
                for c in strategy::select(&cands, Strategy::Grid, SAMPLE_PER_VARIANT, 0) {
                    let req = compile::request(&sweep, &c, DType::BF16, arch);
                    jobs.push(Job::new(format!("{} {variant} {:?}", sweep.family, c.params), req));
                }
            }
        }
    }
    assert_all_compile(jobs);
}

#[test]
fn helper_kernels_and_the_fault_fixture_compile() {
    let util = CompileRequest {
        name: "util.cu".into(),
        source: std::fs::read_to_string(root().join("kernels/util/util.cu")).unwrap(),
        defines: BTreeMap::new(),
        arch: "sm_80".into(),
    };
    let m = nvrtc::compile(&util).unwrap();
    for e in ["fill_uniform_bf16", "compare_bf16", "l2_flush_read"] {
        assert!(m.resources.contains_key(e), "util.cu lacks {e}");
    }
    let fixture = root().join("tests/fixtures/faulty_gemm.toml");
    let sweep = Sweep::load(&fixture, &["M", "N", "K"]).unwrap();
    let e = sweep
        .enumerate(
            &Shape::parse("64x64x64", &["M", "N", "K"]).unwrap().dims,
            2,
            &DeviceLimits::for_arch("sm_90a").unwrap(),
        )
        .unwrap();
    assert_eq!(e.kept.len(), 7);
    let jobs = e
        .kept
        .iter()
        .map(|c| Job::new(format!("fixture {:?}", c.params), compile::request(&sweep, c, DType::BF16, "sm_90a")))
        .collect();
    assert_all_compile(jobs);
}

#[test]
fn compile_errors_carry_the_log_and_the_defines() {
    let req = CompileRequest {
        name: "broken.cu".into(),
        source: "extern \"C\" __global__ void k() { int x = BM; }".into(),
        defines: [("BN".to_string(), "64".to_string())].into_iter().collect(),
        arch: "sm_90a".into(),
    };
    let err = format!("{:#}", nvrtc::compile(&req).unwrap_err());
    assert!(err.contains("broken.cu") && err.contains("-DBN=64") && err.contains("BM"), "{err}");
}
