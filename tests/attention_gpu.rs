//! GPU checks of the attention families (ignored by default: CI has no GPU).
//!
//!     cargo test --release --test attention_gpu -- --ignored --nocapture
//!
//! For every attention family, at every selftest shape and in bf16 and fp16: the device
//! reference against f64 on the CPU, then a spread of the sweep's candidates for that shape
//! (first, last and evenly spaced, at most `KL_ATTN_CANDIDATES`, default 6) compiled, run
//! on NaN-poisoned outputs and compared with the reference, on two seeds.

use kernlab::gpu::cache::{self, ModuleCache};
use kernlab::gpu::device::Gpu;
use kernlab::gpu::util::Util;
use kernlab::kernels::{family, DType, Shape};
use kernlab::tune::compile::request;
use kernlab::tune::space::Sweep;
use std::collections::BTreeMap;
use std::path::Path;

const FAMILIES: [&str; 4] =
    ["attention_prefill", "attention_prefill_varlen", "attention_decode", "attention_decode_varlen"];

#[test]
#[ignore]
fn attention_families_on_the_gpu() {
    let gpu = Gpu::open(0).expect("a GPU");
    let cache = ModuleCache::open(&cache::default_dir()).unwrap();
    let util = Util::new(&gpu, &cache).unwrap();
    let arch = gpu.props.arch();
    let limits = gpu.props.limits();
    let per_shape: usize = std::env::var("KL_ATTN_CANDIDATES").ok().and_then(|s| s.parse().ok()).unwrap_or(6);
    // the project root: here when run from it (the GPU machine), else the source tree
    let cwd = std::env::current_dir().unwrap();
    let root = if cwd.join("sweeps").is_dir() { cwd } else { Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf() };
    let mut failures = Vec::new();
    let mut checked = 0;
    println!("GPU: {} (cc {})", gpu.props.name, gpu.props.cc());
    for fname in FAMILIES {
        let fam = family(fname).unwrap();
        let sweep = Sweep::load(&root.join(format!("sweeps/{fname}.toml")), fam.shape_dims()).unwrap();
        for dt in [DType::BF16, DType::F16] {
            let tol = sweep.tolerance.get(dt.name()).copied().unwrap_or(dt.default_tolerance());
            for text in fam.selftest_shapes() {
                let shape = Shape::parse(text, fam.shape_dims()).unwrap();
                let mut p = fam.problem(&gpu, &shape, dt).unwrap();
                p.randomize(&gpu, &util, 11).unwrap();
                let ref_err = p.reference_vs_cpu(&gpu).unwrap().unwrap();
                let ref_ok = ref_err <= tol / 2.0;
                println!(
                    "{fname} {} {text}: reference vs f64 CPU {ref_err:.2e} {}",
                    dt.name(),
                    if ref_ok { "ok" } else { "FAIL" }
                );
                if !ref_ok {
                    failures.push(format!("{fname} {} {text}: reference vs CPU {ref_err:.2e}", dt.name()));
                }
                let en = sweep.enumerate(&shape.dims, dt.bytes() as i64, &limits).unwrap();
                assert!(!en.kept.is_empty(), "{fname} {text}: no candidate survives the constraints");
                let n = en.kept.len();
                let mut picks: Vec<usize> = (0..per_shape.min(n))
                    .map(|i| if per_shape > 1 { i * (n - 1) / (per_shape.min(n) - 1).max(1) } else { 0 })
                    .collect();
                picks.dedup();
                for i in picks {
                    let c = &en.kept[i];
                    let req = request(&sweep, c, dt, &arch);
                    let m = cache.get_or_compile(&req).unwrap();
                    let mut ks = BTreeMap::new();
                    for e in fam.entries(&c.variant).unwrap() {
                        ks.insert(e.to_string(), gpu.load(&m.cubin, e).unwrap());
                    }
                    let mut worst = 0.0f64;
                    let mut msg = String::new();
                    for seed in [101u64, 202] {
                        p.randomize(&gpu, &util, seed).unwrap();
                        p.poison(&gpu, &util).unwrap();
                        if let Err(e) = p.run(&gpu, &c.variant, &ks, &c.params).and_then(|_| gpu.synchronize()) {
                            msg = format!("{e:#}");
                            worst = f64::INFINITY;
                            break;
                        }
                        let cmp = p.check(&gpu, &util).unwrap();
                        worst = worst.max(cmp.rel_err());
                        if cmp.non_finite > 0 {
                            msg = format!("{} non-finite outputs", cmp.non_finite);
                        }
                    }
                    checked += 1;
                    let ok = worst <= tol;
                    println!("    {} {:?}: {worst:.2e} {} {msg}", c.variant, c.params, if ok { "ok" } else { "FAIL" });
                    if !ok {
                        failures.push(format!("{fname} {} {text} {:?}: {worst:.2e} {msg}", dt.name(), c.params));
                    }
                }
            }
        }
    }
    println!("{checked} candidate runs, {} failures", failures.len());
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
}
