//! Kernels described in a sweep file's `[kernel]` table (no GPU): every bad description is
//! an error naming the file and line before anything runs, and the shipped examples pass the
//! same checks and (tier 2) compile with NVRTC, their references included.

mod nvrtc_support;

use kernlab::kernels::{DType, Family, Shape};
use kernlab::tune::space::DeviceLimits;
use kernlab::tune::user::{check, eval, UserFamily};
use nvrtc_support::nvrtc_available;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const KERNEL: &str = r#"
#ifndef THREADS
#define THREADS 128
#endif
extern "C" __global__ void scale(const float* x, float* y, int n, float a) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i];
}
"#;

const REFERENCE: &str = r#"
extern "C" __global__ void scale_ref(const float* x, float* y, int n, float a) {
    for (int i = threadIdx.x; i < n; i += blockDim.x) y[i] = a * x[i];
}
"#;

/// A valid description; tests replace one line of it.
const SWEEP: &str = r#"family = "scale"
dtypes = ["fp32"]
shapes = ["1000"]
[kernel]
dims = ["n"]
flops = "n"
[[kernel.buffer]]
name = "x"
dims = ["n"]
role = "input"
[[kernel.buffer]]
name = "y"
dims = ["n"]
role = "output"
[[kernel.scalar]]
name = "count"
type = "i32"
value = "n"
[[kernel.scalar]]
name = "a"
type = "f32"
value = 0.5
[[kernel.launch]]
entry = "scale"
grid = ["ceil_div(n, THREADS)"]
block = ["THREADS"]
smem = "0"
args = ["x", "y", "count", "a"]
[kernel.reference]
file = "ref.cu"
[[kernel.reference.launch]]
entry = "scale_ref"
grid = ["1"]
block = ["256"]
args = ["x", "y", "count", "a"]
[[variant]]
name = "v"
file = "scale.cu"
params = { THREADS = [128, 256] }
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

/// The sweep with `from` replaced by `to` (which must occur), beside its two templates.
fn fixture(from: &str, to: &str) -> Fixture {
    assert!(SWEEP.contains(from), "{from}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("scale.cu"), KERNEL).unwrap();
    std::fs::write(dir.path().join("ref.cu"), REFERENCE).unwrap();
    let path = dir.path().join("scale.toml");
    std::fs::write(&path, SWEEP.replacen(from, to, 1)).unwrap();
    Fixture { _dir: dir, path }
}

fn line_of(f: &Fixture, needle: &str) -> usize {
    let text = std::fs::read_to_string(&f.path).unwrap();
    text.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle}")) + 1
}

/// Loads and checks every planned shape for sm_90a, as `kernlab sweep --dry-run` does.
fn check_all(path: &Path, shapes: &[&str]) -> anyhow::Result<usize> {
    let fam = Arc::new(UserFamily::load(path)?);
    let shapes: Vec<String> = shapes.iter().map(|s| s.to_string()).collect();
    let plan = kernlab::tune::runner::plan_shapes(&fam, &fam.sweep, &shapes, &[])?;
    check::check_plan(&fam.desc, &fam.sweep, &plan, &DeviceLimits::for_arch("sm_90a")?)
}

/// The error of `from` → `to`; asserts it names the line holding `to` and says `what`.
fn assert_error(from: &str, to: &str, what: &str) {
    let f = fixture(from, to);
    let e = format!("{:#}", check_all(&f.path, &[]).expect_err(to));
    let at = format!("{}:{}:", f.path.display(), line_of(&f, to.lines().next().unwrap()));
    assert!(e.contains(&at), "{e}\nwanted {at}");
    assert!(e.contains(what), "{e}\nwanted {what:?}");
}

#[test]
fn the_fixture_itself_passes() {
    let f = fixture("", "");
    assert_eq!(check_all(&f.path, &[]).unwrap(), 2);
    let fam = UserFamily::load(&f.path).unwrap();
    let s = Shape::parse("1000", &["n"]).unwrap();
    let fam = Arc::new(fam);
    assert_eq!(fam.flops(&s), 1000.0);
    // Default min_bytes: x read and y written once.
    assert_eq!(fam.min_bytes(&s, DType::F32), 8000.0);
    assert_eq!(fam.entries("v").unwrap(), &["scale"]);
    assert!(fam.entries("w").is_err());
}

#[test]
fn a_missing_entry_point_names_the_launch() {
    assert_error("entry = \"scale\"", "entry = \"scal\"", "entry point \"scal\" is not in");
    assert_error("entry = \"scale_ref\"", "entry = \"nope\"", "it declares scale_ref");
}

#[test]
fn an_argument_count_that_cannot_match_is_refused() {
    let e = "scale takes 4 parameters";
    assert_error(
        "args = [\"x\", \"y\", \"count\", \"a\"]\n[kernel.reference]",
        "args = [\"x\", \"y\", \"count\"]\n[kernel.reference]",
        e,
    );
    assert_error(
        "args = [\"x\", \"y\", \"count\", \"a\"]\n[kernel.reference]",
        "args = [\"x\", \"count\", \"y\", \"a\"]\n[kernel.reference]",
        "is a pointer",
    );
    assert_error(
        "args = [\"x\", \"y\", \"count\", \"a\"]\n[kernel.reference]",
        "args = [\"x\", \"y\", \"cnt\", \"a\"]\n[kernel.reference]",
        "unknown argument \"cnt\"",
    );
}

#[test]
fn launch_geometry_out_of_range_and_unknown_names_are_refused() {
    let grid = "grid = [\"ceil_div(n, THREADS)\"]";
    // (a line of the fixture, what it becomes, part of the error naming that line)
    for (from, to, what) in [
        (grid, "grid = [\"n - n\"]", "grid.x = `n - n` is 0"),
        (grid, "grid = [\"1\", \"0 - 4\"]", "grid.y = `0 - 4` is -4"),
        (grid, "grid = [\"1\", \"70000\"]", "at most 65535 for grid.y"),
        (grid, "grid = [\"1\", \"1\", \"1\", \"1\"]", "one to three expressions"),
        ("block = [\"THREADS\"]", "block = [\"THREADS * 16\"]", "at most 1024 for block.x"),
        ("block = [\"THREADS\"]", "block = [\"THREADS\", \"8\"]", "the device allows 1024 per block"),
        ("smem = \"0\"", "smem = \"max_smem + 1\"", "between 0 and the device's 232448 bytes"),
        // Names an expression may not use where it stands.
        (grid, "grid = [\"ceil_div(n, THREAD)\"]", "unknown name \"THREAD\""),
        ("flops = \"n\"", "flops = \"n * THREADS\"", "flops"),
        ("flops = \"n\"", "flops = \"n * dtype_bytes\"", "unknown name \"dtype_bytes\""),
        ("dims = [\"n\"]\nrole = \"input\"", "dims = [\"m\"]\nrole = \"input\"", "unknown name \"m\""),
        // The reference has no tunables.
        ("grid = [\"1\"]", "grid = [\"THREADS\"]", "unknown name \"THREADS\""),
    ] {
        assert_error(from, to, what);
    }
}

#[test]
fn buffer_sizes_that_overflow_are_refused() {
    assert_error(
        "dims = [\"n\"]\nrole = \"output\"",
        "dims = [\"n\", \"4611686018427387904\"]\nrole = \"output\"",
        "overflows",
    );
    assert_error(
        "dims = [\"n\"]\nrole = \"input\"",
        "dims = [\"n - 1000\"]\nrole = \"input\"",
        "every dim must be at least 1",
    );
    // Only scratch buffers may take their size from a tunable.
    assert_error(
        "dims = [\"n\"]\nrole = \"output\"",
        "dims = [\"THREADS\"]\nrole = \"output\"",
        "only scratch buffers",
    );
}

#[test]
fn buffers_beyond_free_memory_are_refused_with_the_largest_named() {
    let f = fixture("", "");
    let fam = UserFamily::load(&f.path).unwrap();
    let gib = 1usize << 30;
    let e = format!("{:#}", eval::check_fits(&fam.desc, "1000 fp32", &[(0, 3 * gib), (1, gib)], 2 * gib).unwrap_err());
    assert!(e.contains("need 4.00 GiB") && e.contains("2.00 GiB of device memory"), "{e}");
    assert!(e.contains(&format!("x ({}:{})", f.path.display(), line_of(&f, "[[kernel.buffer]]"))), "{e}");
    assert!(eval::check_fits(&fam.desc, "1000 fp32", &[(0, gib)], 2 * gib).is_ok());
}

#[test]
fn other_mistakes_say_what_to_do() {
    assert_error("role = \"output\"", "role = \"result\"", "expected input, output, inout or scratch");
    assert_error("type = \"i32\"", "type = \"int8\"", "expected i32, u32, i64, u64 or f32");
    let f = fixture("name = \"a\"", "name = \"x\"");
    let e = format!("{:#}", UserFamily::load(&f.path).err().unwrap());
    let second = SWEEP.lines().position(|l| l == "name = \"a\"").unwrap() + 1;
    assert!(e.contains(&format!("{}:{second}: \"x\" is declared twice", f.path.display())), "{e}");
    let f = fixture("family = \"scale\"", "family = \"gemm\"");
    let e = format!("{:#}", UserFamily::load(&f.path).err().unwrap());
    assert!(e.contains(&format!("{}:1:", f.path.display())) && e.contains("built-in family"), "{e}");
}

#[test]
fn a_bad_description_fails_the_dry_run_command_before_compiling() {
    let f = fixture("block = [\"THREADS\"]", "block = [\"THREADS * 16\"]");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kernlab"))
        .args(["sweep", f.path.to_str().unwrap(), "--dry-run"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    assert!(text.contains(&format!("{}:{}:", f.path.display(), line_of(&f, "THREADS * 16"))), "{text}");
    assert!(!text.contains("compiled"), "nothing may compile before the checks pass:\n{text}");
}

fn examples() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_example_passes_the_checks_on_its_shapes_and_selftest_shapes() {
    let ex = examples();
    assert!(ex.len() >= 3, "{ex:?}");
    for p in ex {
        let fam = UserFamily::load(&p).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
        assert!(check_all(&p, &[]).unwrap_or_else(|e| panic!("{e:#}")) > 0);
        let st: Vec<&str> = fam.desc.selftest_shapes.iter().map(String::as_str).collect();
        assert!(!st.is_empty(), "{}: no selftest_shapes", p.display());
        check_all(&p, &st).unwrap_or_else(|e| panic!("{}: selftest shapes: {e:#}", p.display()));
    }
}

/// Tier 2: each example's variants, reference and peer compile with NVRTC for sm_90a, as
/// `kernlab sweep <example> --dry-run` does it.
#[test]
fn every_example_compiles_with_nvrtc() {
    if !nvrtc_available() {
        return;
    }
    for p in examples() {
        // A ground-truth space of >10,000 kernels would take an hour here; its corners are
        // compiled by `the_tiled_gemm_corners_compile_with_nvrtc` instead.
        if kernels_to_compile(&p) > MAX_KERNELS_TO_COMPILE {
            eprintln!("{}: too many kernels to compile all of them, skipped", p.display());
            continue;
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kernlab"))
            .args(["sweep", p.to_str().unwrap(), "--dry-run", "--arch", "sm_90a"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{}:\n{text}", p.display());
        assert!(text.contains(" 0 failed") && !text.contains("FAIL"), "{}:\n{text}", p.display());
    }
}

/// The deliberately faulty kernel of the GPU check passes every check before the run (its
/// faults are for the worker to contain).
#[test]
fn the_faulty_fixture_passes_the_checks() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/user/faulty/faulty.toml");
    assert_eq!(check_all(&p, &[]).unwrap_or_else(|e| panic!("{e:#}")), 4);
}

/// Examples whose space is larger are compiled through a sample of their corners.
const MAX_KERNELS_TO_COMPILE: usize = 1000;

/// Distinct kernels of an example over its default shapes and dtypes.
fn kernels_to_compile(path: &Path) -> usize {
    let fam = Arc::new(UserFamily::load(path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display())));
    let plan = kernlab::tune::runner::plan_shapes(&fam, &fam.sweep, &[], &[]).unwrap();
    let limits = DeviceLimits::for_arch("sm_90a").unwrap();
    let mut keys = std::collections::BTreeSet::new();
    for (dt, shape) in &plan {
        let e = fam.sweep.enumerate(&shape.dims, dt.bytes() as i64, &limits).unwrap();
        keys.extend(e.kept.into_iter().map(|c| (c.variant, c.params, dt.name())));
    }
    keys.len()
}

fn tiled_gemm() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tiled_gemm/tiled_gemm.toml")
}

/// The search-strategy replay (issue #16) needs one shape with at least 10,000 valid
/// candidates to measure in full.
#[test]
fn the_tiled_gemm_space_is_large_enough_for_ground_truth() {
    let fam = Arc::new(UserFamily::load(&tiled_gemm()).unwrap());
    assert_eq!(fam.sweep.shapes.len(), 1, "one big shape: {:?}", fam.sweep.shapes);
    let plan = kernlab::tune::runner::plan_shapes(&fam, &fam.sweep, &[], &[]).unwrap();
    let limits = DeviceLimits::for_arch("sm_90a").unwrap();
    let (dt, shape) = &plan[0];
    let e = fam.sweep.enumerate(&shape.dims, dt.bytes() as i64, &limits).unwrap();
    assert!(e.kept.len() >= 10_000, "{} valid candidates at {}", e.kept.len(), shape.label());
    assert!(kernels_to_compile(&tiled_gemm()) > MAX_KERNELS_TO_COMPILE);
}

/// Tier 2: the tiled GEMM's corners (most tunables at their smallest and largest, the largest
/// register tile, within the constraints) compile for sm_90a.
#[test]
fn the_tiled_gemm_corners_compile_with_nvrtc() {
    if !nvrtc_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = tiled_gemm();
    let text = std::fs::read_to_string(&src).unwrap();
    let params = text.lines().find(|l| l.starts_with("params = ")).expect("one-line params");
    let corners = "params = { BM = [32, 256], BN = [32, 256], BK = [8, 32], TM = [2, 8], TN = [8], \
                   VEC = [2, 8], PAD = [1], DOUBLE_BUF = [0, 1], UNROLL = [4], TRANSPOSE_A_SMEM = [0, 1] }";
    let sample = text.replace(params, corners).replace("family = \"tiled_gemm\"", "family = \"tiled_gemm_corners\"");
    let path = dir.path().join("tiled_gemm.toml");
    std::fs::write(&path, sample).unwrap();
    std::fs::copy(src.with_extension("cu"), dir.path().join("tiled_gemm.cu")).unwrap();
    // Keep the sample small: a corner per tunable is enough to reach every code path.
    assert!(kernels_to_compile(&path) <= 128, "{}", kernels_to_compile(&path));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kernlab"))
        .args(["sweep", "tiled_gemm_corners", "--file", path.to_str().unwrap(), "--dry-run", "--arch", "sm_90a"])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains(" 0 failed") && !text.contains("FAIL"), "{text}");
}
