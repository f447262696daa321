//! Tier 2 (no GPU): the memory-bound templates and their references compile with NVRTC for
//! sm_80, sm_86 and sm_90a, at their defaults in every dtype and at a sample of each sweep
//! space, without spilling.

mod nvrtc_support;

use kernlab::gpu::nvrtc::{self, CompileRequest};
use kernlab::kernels::{self, DType, Family, Shape};
use kernlab::tune::compile;
use kernlab::tune::space::{Candidate, DeviceLimits, Strategy, Sweep};
use kernlab::tune::strategy;
use nvrtc_support::{assert_all_compile, Job};
use std::collections::BTreeSet;
use std::path::PathBuf;

const ARCHS: &[&str] = &["sm_80", "sm_86", "sm_90a"];
const FAMILIES: &[&str] = &["softmax", "rmsnorm", "rope", "swiglu"];
const DTYPES: &[DType] = &[DType::BF16, DType::F16, DType::F32];
const SAMPLE_PER_VARIANT: usize = 4;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The family and its shipped sweep file.
fn load(family: &str) -> (&'static dyn Family, Sweep) {
    let f = kernels::family(family).unwrap();
    (f, Sweep::load(&root().join(format!("sweeps/{family}.toml")), f.shape_dims()).unwrap())
}

#[test]
fn templates_and_references_compile_at_defaults_in_every_dtype_and_arch() {
    let mut jobs = Vec::new();
    for family in FAMILIES {
        let (fam, sweep) = load(family);
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
                    jobs.push(
                        Job::new(
                            format!("{family} {} {}", v.name, dt.name()),
                            req(v.file.display().to_string(), v.source.clone()),
                        )
                        .with_entries(entries),
                    );
                }
                let entry: &'static str = match *family {
                    "softmax" => "softmax_reference",
                    "rmsnorm" => "rmsnorm_reference",
                    "rope" => "rope_reference",
                    _ => "swiglu_reference",
                };
                jobs.push(
                    Job::new(
                        format!("{family} reference {}", dt.name()),
                        req(reference.display().to_string(), ref_source.clone()),
                    )
                    .with_entries(vec![entry]),
                );
            }
        }
    }
    assert_all_compile(jobs);
}

#[test]
fn a_sample_of_each_sweep_space_compiles_for_every_arch() {
    let mut jobs = Vec::new();
    for family in FAMILIES {
        let (fam, sweep) = load(family);
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
                        let label = format!("{family} {} {} {:?}", c.variant, dt.name(), c.params);
                        jobs.push(Job::new(label, compile::request(&sweep, &c, dt, arch)).with_entries(entries));
                    }
                }
            }
        }
    }
    assert_all_compile(jobs);
}
