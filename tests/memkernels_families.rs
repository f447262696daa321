//! Tier 1 (CPU): the memory-bound families' counts, shapes and sweep files.

use kernlab::kernels::{self, DType, Family, Shape};
use kernlab::tune::space::{DeviceLimits, Sweep};
use std::path::PathBuf;

const FAMILIES: &[&str] = &["softmax", "rmsnorm", "rope", "swiglu"];

fn sweep_path(family: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("sweeps/{family}.toml"))
}

fn fam(name: &str) -> &'static dyn Family {
    kernels::family(name).unwrap()
}

fn shape(f: &dyn Family, s: &str) -> Shape {
    Shape::parse(s, f.shape_dims()).unwrap()
}

#[test]
fn families_are_registered_with_torch_as_peer() {
    for name in FAMILIES {
        let f = fam(name);
        assert_eq!(f.name(), *name);
        assert_eq!(f.peer(), "torch");
        assert!(!f.selftest_shapes().is_empty());
    }
}

#[test]
fn byte_and_flop_counts_are_each_stream_once() {
    let e = 2.0;
    let f = fam("softmax");
    assert_eq!(f.min_bytes(&shape(f, "32768x4096"), DType::BF16), 2.0 * 32768.0 * 4096.0 * e);
    assert_eq!(f.min_bytes(&shape(f, "32x131072"), DType::F32), 2.0 * 32.0 * 131072.0 * 4.0);
    // rmsnorm with residual: x, h in; residual, y out; the weight once.
    let f = fam("rmsnorm");
    assert_eq!(f.min_bytes(&shape(f, "16384x4096"), DType::BF16), (4.0 * 16384.0 * 4096.0 + 4096.0) * e);
    assert_eq!(f.flops(&shape(f, "1x4096")), 5.0 * 4096.0);
    // rope: Q (32 heads) and K (8 heads) read and written, plus offsets and the table.
    let f = fam("rope");
    let el = 4.0 * 2048.0 * 40.0 * 128.0;
    assert_eq!(f.min_bytes(&shape(f, "4x2048x32x8x128"), DType::BF16), 2.0 * el * e + 4.0 * 4.0 + 4.0 * 64.0);
    assert_eq!(f.flops(&shape(f, "4x2048x32x8x128")), 3.0 * el);
    // swiglu: gate and up in, one output.
    let f = fam("swiglu");
    assert_eq!(f.min_bytes(&shape(f, "8192x14336"), DType::F16), 3.0 * 8192.0 * 14336.0 * e);
    assert_eq!(f.flops(&shape(f, "1x14336")), 4.0 * 14336.0);
}

#[test]
fn shapes_parse_in_each_familys_notation() {
    assert_eq!(shape(fam("rope"), "8x1x32x8x128").get("Hkv"), 8);
    assert_eq!(shape(fam("swiglu"), "1x14336").get("ffn"), 14336);
    assert_eq!(shape(fam("rmsnorm"), "8x4096").get("dim"), 4096);
    assert!(Shape::parse("32768x4096x1", fam("softmax").shape_dims()).is_err());
    assert!(Shape::parse("1x4096x32x8", fam("rope").shape_dims()).is_err());
    // Odd head dimensions cannot be split into halves.
    assert!(fam("rope").validate(&shape(fam("rope"), "1x1x32x8x127"), DType::BF16).is_err());
    for name in FAMILIES {
        let f = fam(name);
        for s in f.selftest_shapes() {
            let sh = Shape::parse(s, f.shape_dims()).unwrap_or_else(|e| panic!("{name} selftest shape {s}: {e:#}"));
            f.validate(&sh, DType::BF16).unwrap();
        }
    }
}

#[test]
fn unknown_variants_are_errors() {
    for name in FAMILIES {
        assert!(fam(name).entries("no_such_variant").is_err());
    }
}

#[test]
fn sweep_files_load_and_enumerate_for_every_arch_and_dtype() {
    for name in FAMILIES {
        let f = fam(name);
        let sweep = Sweep::load(&sweep_path(name), f.shape_dims()).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(sweep.family, *name);
        assert!(!sweep.shapes.is_empty());
        for v in &sweep.variants {
            f.entries(&v.name).unwrap_or_else(|e| panic!("{name}: sweep variant {}: {e:#}", v.name));
        }
        for arch in ["sm_80", "sm_86", "sm_90a"] {
            let limits = DeviceLimits::for_arch(arch).unwrap();
            for dt in [DType::BF16, DType::F16, DType::F32] {
                for s in &sweep.shapes {
                    let sh = shape(f, s);
                    let e = sweep.enumerate(&sh.dims, dt.bytes() as i64, &limits).unwrap();
                    assert!(
                        !e.kept.is_empty(),
                        "{name} {s} {} {arch}: nothing left to measure: {:?}",
                        dt.name(),
                        e.dropped
                    );
                    let dropped: usize = e.dropped.iter().map(|(_, n)| n).sum();
                    assert_eq!(dropped + e.kept.len(), e.total);
                }
            }
        }
    }
}

/// `kernlab selftest` runs variants at the awkward shapes: each shape must leave at least one
/// candidate (and the long-row softmax variant must take every shape).
#[test]
fn selftest_shapes_keep_candidates() {
    let limits = DeviceLimits::for_arch("sm_90a").unwrap();
    for name in FAMILIES {
        let f = fam(name);
        let sweep = Sweep::load(&sweep_path(name), f.shape_dims()).unwrap();
        for s in f.selftest_shapes() {
            for dt in [DType::BF16, DType::F32] {
                let e = sweep.enumerate(&shape(f, s).dims, dt.bytes() as i64, &limits).unwrap();
                assert!(!e.kept.is_empty(), "{name} {s} {}: no candidate: {:?}", dt.name(), e.dropped);
                if *name == "softmax" {
                    assert!(
                        e.kept.iter().any(|c| c.variant == "softmax_online"),
                        "softmax {s}: online variant dropped"
                    );
                }
            }
        }
    }
}

#[test]
fn register_capacity_constraints_cover_the_row() {
    // Every kept softmax_rows / rmsnorm_rows candidate holds the whole row, so `run` never
    // refuses a candidate the sweep kept.
    let limits = DeviceLimits::for_arch("sm_90a").unwrap();
    for (name, variant, col) in [("softmax", "softmax_rows", "cols"), ("rmsnorm", "rmsnorm_rows", "dim")] {
        let f = fam(name);
        let sweep = Sweep::load(&sweep_path(name), f.shape_dims()).unwrap();
        let shapes: Vec<&str> =
            sweep.shapes.iter().map(|s| s.as_str()).chain(f.selftest_shapes().iter().copied()).collect();
        for s in shapes {
            let sh = shape(f, s);
            for c in sweep.enumerate(&sh.dims, 2, &limits).unwrap().kept.iter().filter(|c| c.variant == variant) {
                let cap = c.params["THREADS_PER_ROW"] * c.params["VEC"] * c.params["CHUNKS"];
                assert!(cap >= sh.get(col), "{name} {s}: {:?} holds {cap}", c.params);
            }
        }
    }
}
