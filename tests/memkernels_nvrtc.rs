//! Tier 2 (no GPU): the memory-bound templates and their references compile with NVRTC for
//! sm_80, sm_86 and sm_90a, at their defaults in every dtype and at a sample of each sweep
//! space, without spilling.

use kernlab::gpu::nvrtc::{self, CompileRequest};
use kernlab::kernels::{self, DType, Shape};
use kernlab::tune::compile;
use kernlab::tune::space::{Candidate, DeviceLimits, Strategy, Sweep};
use kernlab::tune::strategy;
use rayon::prelude::*;
use std::collections::BTreeSet;
use std::path::PathBuf;

const ARCHS: &[&str] = &["sm_80", "sm_86", "sm_90a"];
const FAMILIES: &[&str] = &["softmax", "rmsnorm", "rope", "swiglu"];
const DTYPES: &[DType] = &[DType::BF16, DType::F16, DType::F32];
const SAMPLE_PER_VARIANT: usize = 4;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(family: &str) -> Sweep {
    let f = kernels::family(family).unwrap();
    Sweep::load(&root().join(format!("sweeps/{family}.toml")), f.shape_dims()).unwrap()
}

/// Compiles every job; fails listing each compile error, missing entry point or spill.
fn compile_all(jobs: Vec<(String, CompileRequest, Vec<&'static str>)>) {
    let failures: Vec<String> = jobs
        .par_iter()
        .filter_map(|(label, req, entries)| match nvrtc::compile(req) {
            Ok(m) => {
                if let Some(e) = entries.iter().find(|e| !m.resources.contains_key(**e)) {
                    return Some(format!("{label}: no entry point {e}"));
                }
                let spills: u32 = m.resources.values().map(|r| r.spill_store_bytes + r.spill_load_bytes).sum();
                (spills > 0).then(|| format!("{label}: spills {spills} bytes"))
            }
            Err(e) => Some(format!("{label}: {e:#}")),
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} compilations failed:\n{}",
        failures.len(),
        jobs.len(),
        failures.join("\n\n")
    );
}

#[test]
fn templates_and_references_compile_at_defaults_in_every_dtype_and_arch() {
    let mut jobs = Vec::new();
    for family in FAMILIES {
        let fam = kernels::family(family).unwrap();
        let sweep = load(family);
        let reference = root().join(format!("kernels/{family}/reference.cu"));
        let ref_source = nvrtc::load_source(&reference).unwrap();
        for arch in ARCHS {
            for dt in DTYPES {
                let req = |name: String, source: String| CompileRequest {
                    name,
                    source,
                    defines: dt.defines(),
                    arch: arch.to_string(),
                };
                for v in &sweep.variants {
                    let entries = fam.entries(&v.name).unwrap().to_vec();
                    jobs.push((
                        format!("{family} {} {} {arch}", v.name, dt.name()),
                        req(v.file.display().to_string(), v.source.clone()),
                        entries,
                    ));
                }
                let entry: &'static str = match *family {
                    "softmax" => "softmax_reference",
                    "rmsnorm" => "rmsnorm_reference",
                    "rope" => "rope_reference",
                    _ => "swiglu_reference",
                };
                jobs.push((
                    format!("{family} reference {} {arch}", dt.name()),
                    req(reference.display().to_string(), ref_source.clone()),
                    vec![entry],
                ));
            }
        }
    }
    compile_all(jobs);
}

#[test]
fn a_sample_of_each_sweep_space_compiles_for_every_arch() {
    let mut jobs = Vec::new();
    for family in FAMILIES {
        let fam = kernels::family(family).unwrap();
        let sweep = load(family);
        for arch in ARCHS {
            let limits = DeviceLimits::for_arch(arch).unwrap();
            for dt in [DType::BF16, DType::F32] {
                // Union over default and selftest shapes, per variant, then a spread-out sample.
                let shapes = sweep.shapes.iter().map(|s| s.as_str()).chain(fam.selftest_shapes().iter().copied());
                let mut kept: BTreeSet<Candidate> = BTreeSet::new();
                for s in shapes {
                    let sh = Shape::parse(s, fam.shape_dims()).unwrap();
                    kept.extend(sweep.enumerate(&sh.dims, dt.bytes() as i64, &limits).unwrap().kept);
                }
                for v in &sweep.variants {
                    let cands: Vec<Candidate> = kept.iter().filter(|c| c.variant == v.name).cloned().collect();
                    for c in strategy::select(&cands, Strategy::Random, SAMPLE_PER_VARIANT, 7) {
                        let entries = fam.entries(&c.variant).unwrap().to_vec();
                        let label = format!("{family} {} {} {arch} {:?}", c.variant, dt.name(), c.params);
                        jobs.push((label, compile::request(&sweep, &c, dt, arch), entries));
                    }
                }
            }
        }
    }
    compile_all(jobs);
}
