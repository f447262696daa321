//! Sweep files: a kernel family's search space, its constraints and its default shapes.
//!
//! ```toml
//! family = "gemm"
//! dtypes = ["bf16"]
//! shapes = ["1x4096x4096", "2048x28672x4096"]
//! strategy = "grid"            # or "random"
//! budget = 0                   # candidates per shape; 0 = all
//! [tolerance]
//! bf16 = 2e-2
//!
//! [[variant]]
//! name = "mma_multistage"
//! file = "kernels/gemm/mma_multistage.cu"
//! when = "M > 16"              # shapes this variant is tried on (optional)
//! params = { BM = [64, 128], BN = [64, 128], BK = [32], WM = [32, 64], WN = [32, 64], STAGES = [3, 4] }
//! derived = { NUM_WARPS = "(BM / WM) * (BN / WN)", smem_bytes = "STAGES * (BM + BN) * BK * 2" }
//! constraints = ["BM % WM == 0", "NUM_WARPS <= 8", "smem_bytes <= max_smem"]
//! ```
//!
//! Constraints are integer expressions (evalexpr) over the parameters, the derived values,
//! the shape's dimensions and the device limits (`max_smem`, `max_threads`, `sm_count`, `cc`).
//! Every error names the file and, where it can, the line.

use anyhow::{anyhow, bail, Context, Result};
use evalexpr::{
    build_operator_tree, ContextWithMutableFunctions, ContextWithMutableVariables, DefaultNumericTypes, Function,
    HashMapContext, Node, Value,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Device limits that constraints may name. Filled from the GPU, or from the architecture
/// for `--dry-run`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceLimits {
    /// Opt-in dynamic shared memory per block, bytes.
    pub max_smem: i64,
    pub max_threads: i64,
    pub sm_count: i64,
    /// Compute capability as major*10+minor (90 for Hopper).
    pub cc: i64,
}

impl DeviceLimits {
    /// Typical limits of an architecture, for enumerating without a GPU.
    pub fn for_arch(arch: &str) -> Result<DeviceLimits> {
        let digits: String = arch.trim_start_matches("sm_").chars().take_while(|c| c.is_ascii_digit()).collect();
        let cc: i64 = digits.parse().map_err(|_| anyhow!("bad architecture {arch:?}"))?;
        let max_smem = match cc {
            80 | 87 => 166_912,
            86 | 89 => 101_376,
            90..=99 => 232_448,
            100..=109 => 232_448,
            120..=129 => 101_376,
            75 => 65_536,
            _ => 49_152,
        };
        let sm_count = match cc {
            80 => 108,
            86 => 84,
            89 => 128,
            90 => 132,
            _ => 100,
        };
        Ok(DeviceLimits { max_smem, max_threads: 1024, sm_count, cc })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSweep {
    family: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    dtypes: Vec<String>,
    #[serde(default)]
    shapes: Vec<String>,
    #[serde(default)]
    tolerance: BTreeMap<String, f64>,
    #[serde(default)]
    strategy: Option<String>,
    #[serde(default)]
    budget: Option<usize>,
    #[serde(default)]
    time_limit_s: Option<f64>,
    #[serde(default, rename = "variant")]
    variants: Vec<RawVariant>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariant {
    name: String,
    file: String,
    #[serde(default)]
    when: Option<String>,
    #[serde(default)]
    min_cc: Option<i64>,
    #[serde(default)]
    params: BTreeMap<String, Vec<i64>>,
    #[serde(default)]
    derived: BTreeMap<String, String>,
    #[serde(default)]
    constraints: Vec<String>,
}

/// How candidates are chosen from the space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Every valid candidate, in a fixed order.
    Grid,
    /// A seeded random sample of `budget` valid candidates.
    Random,
}

impl Strategy {
    pub fn parse(s: &str) -> Result<Strategy> {
        match s {
            "grid" | "exhaustive" => Ok(Strategy::Grid),
            "random" => Ok(Strategy::Random),
            other => bail!("unknown strategy {other:?}: expected \"grid\" or \"random\""),
        }
    }
}

/// An expression with the line it came from, compiled once.
#[derive(Debug, Clone)]
pub struct Expr {
    pub text: String,
    pub line: usize,
    tree: Node<DefaultNumericTypes>,
}

/// One variant's space.
#[derive(Debug, Clone)]
pub struct VariantSpace {
    pub name: String,
    pub file: PathBuf,
    pub source: String,
    pub when: Option<Expr>,
    pub min_cc: Option<i64>,
    /// Tunables and their values, by name (sorted).
    pub params: BTreeMap<String, Vec<i64>>,
    /// Derived values in evaluation order (sorted by name; each may use params and shape only,
    /// or derived values before it alphabetically).
    pub derived: Vec<(String, Expr)>,
    pub constraints: Vec<Expr>,
}

/// A parsed, validated sweep file.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub path: PathBuf,
    pub family: String,
    pub description: String,
    pub dtypes: Vec<String>,
    pub shapes: Vec<String>,
    pub tolerance: BTreeMap<String, f64>,
    pub strategy: Strategy,
    pub budget: usize,
    pub time_limit_s: Option<f64>,
    pub variants: Vec<VariantSpace>,
}

/// One point of the space.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Candidate {
    pub variant: String,
    pub params: BTreeMap<String, i64>,
}

/// The result of enumerating a space for one shape.
#[derive(Debug, Clone, Default)]
pub struct Enumeration {
    pub kept: Vec<Candidate>,
    /// How many were dropped by each rule ("BM % WM == 0", "not for this shape: M > 16", ...).
    pub dropped: Vec<(String, usize)>,
    pub total: usize,
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1).unwrap_or(0)
}

fn where_(path: &Path, line: usize) -> String {
    if line > 0 {
        format!("{}:{line}", path.display())
    } else {
        path.display().to_string()
    }
}

fn compile_expr(path: &Path, text: &str, raw: &str) -> Result<Expr> {
    let line = line_of(text, raw);
    let tree = build_operator_tree::<DefaultNumericTypes>(raw)
        .map_err(|e| anyhow!("{}: bad expression {raw:?}: {e}", where_(path, line)))?;
    Ok(Expr { text: raw.to_string(), line, tree })
}

/// Integer ceiling division, available in expressions as `ceil_div(a, b)`.
fn add_functions(ctx: &mut HashMapContext<DefaultNumericTypes>) {
    let f = Function::new(|arg: &Value<DefaultNumericTypes>| {
        let t = arg.as_fixed_len_tuple(2)?;
        let (a, b) = (t[0].as_int()?, t[1].as_int()?);
        if b == 0 {
            return Err(evalexpr::EvalexprError::CustomMessage("ceil_div by zero".into()));
        }
        Ok(Value::from_int((a + b - 1).div_euclid(b)))
    });
    ctx.set_function("ceil_div".into(), f).ok();
    let f = Function::new(|arg: &Value<DefaultNumericTypes>| {
        let t = arg.as_fixed_len_tuple(2)?;
        Ok(Value::from_int(t[0].as_int()?.min(t[1].as_int()?)))
    });
    ctx.set_function("min".into(), f).ok();
    let f = Function::new(|arg: &Value<DefaultNumericTypes>| {
        let t = arg.as_fixed_len_tuple(2)?;
        Ok(Value::from_int(t[0].as_int()?.max(t[1].as_int()?)))
    });
    ctx.set_function("max".into(), f).ok();
}

/// Names a sweep may always use in expressions besides its own parameters.
pub const DEVICE_NAMES: &[&str] = &["max_smem", "max_threads", "sm_count", "cc", "dtype_bytes"];

impl Sweep {
    /// Reads and validates a sweep file. Template paths are resolved against the folder that
    /// holds `sweeps/` (the project root) and then against the sweep file's own folder.
    pub fn load(path: &Path, shape_dims: &[&str]) -> Result<Sweep> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading sweep file {}", path.display()))?;
        Sweep::parse(path, &text, shape_dims)
    }

    pub fn parse(path: &Path, text: &str, shape_dims: &[&str]) -> Result<Sweep> {
        let raw: RawSweep = toml::from_str(text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        if raw.variants.is_empty() {
            bail!("{}: no [[variant]] sections: a sweep needs at least one kernel variant", path.display());
        }
        let strategy = Strategy::parse(raw.strategy.as_deref().unwrap_or("grid"))
            .with_context(|| where_(path, line_of(text, "strategy")))?;
        let mut variants = Vec::new();
        for rv in raw.variants {
            variants.push(load_variant(path, text, rv, shape_dims)?);
        }
        let mut names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            bail!("{}: variant {:?} is declared twice", path.display(), w[0]);
        }
        for (dt, tol) in &raw.tolerance {
            if !(tol.is_finite() && *tol > 0.0) {
                bail!("{}: tolerance for {dt} must be a positive number, got {tol}", where_(path, line_of(text, dt)));
            }
        }
        Ok(Sweep {
            path: path.to_path_buf(),
            family: raw.family,
            description: raw.description,
            dtypes: if raw.dtypes.is_empty() { vec!["bf16".into()] } else { raw.dtypes },
            shapes: raw.shapes,
            tolerance: raw.tolerance,
            strategy,
            budget: raw.budget.unwrap_or(0),
            time_limit_s: raw.time_limit_s,
            variants,
        })
    }

    /// Sorted union of the tunables of all variants (the CSV's param_* columns).
    pub fn param_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.variants.iter().flat_map(|x| x.params.keys().cloned()).collect();
        v.sort();
        v.dedup();
        v
    }

    pub fn variant(&self, name: &str) -> Option<&VariantSpace> {
        self.variants.iter().find(|v| v.name == name)
    }

    /// Enumerates every variant's space for one shape and drops what violates a constraint.
    pub fn enumerate(&self, shape: &[(String, i64)], dtype_bytes: i64, limits: &DeviceLimits) -> Result<Enumeration> {
        let mut out = Enumeration::default();
        let mut dropped: BTreeMap<String, usize> = BTreeMap::new();
        for v in &self.variants {
            let size: usize = v.params.values().map(|vals| vals.len()).product();
            out.total += size;
            let mut ctx = base_context(shape, dtype_bytes, limits);
            if let Some(min) = v.min_cc {
                if limits.cc < min {
                    *dropped.entry(format!("{}: needs compute capability >= {min}", v.name)).or_default() += size;
                    continue;
                }
            }
            if let Some(w) = &v.when {
                if !eval_bool(&self.path, w, &ctx)? {
                    *dropped.entry(format!("{}: not for this shape ({})", v.name, w.text)).or_default() += size;
                    continue;
                }
            }
            'points: for point in grid(&v.params) {
                for (k, val) in &point {
                    ctx.set_value(k.clone(), Value::from_int(*val)).ok();
                }
                for (name, e) in &v.derived {
                    let val = e.tree.eval_int_with_context(&ctx).map_err(|err| {
                        anyhow!("{}: derived {name} = {:?}: {err}", where_(&self.path, e.line), e.text)
                    })?;
                    ctx.set_value(name.clone(), Value::from_int(val)).ok();
                }
                for c in &v.constraints {
                    if !eval_bool(&self.path, c, &ctx)? {
                        *dropped.entry(format!("{}: {}", v.name, c.text)).or_default() += 1;
                        continue 'points;
                    }
                }
                out.kept.push(Candidate { variant: v.name.clone(), params: point });
            }
        }
        out.dropped = dropped.into_iter().collect();
        Ok(out)
    }
}

fn base_context(shape: &[(String, i64)], dtype_bytes: i64, l: &DeviceLimits) -> HashMapContext<DefaultNumericTypes> {
    let mut ctx = HashMapContext::<DefaultNumericTypes>::new();
    add_functions(&mut ctx);
    for (k, v) in shape {
        ctx.set_value(k.clone(), Value::from_int(*v)).ok();
    }
    for (k, v) in [
        ("max_smem", l.max_smem),
        ("max_threads", l.max_threads),
        ("sm_count", l.sm_count),
        ("cc", l.cc),
        ("dtype_bytes", dtype_bytes),
    ] {
        ctx.set_value(k.into(), Value::from_int(v)).ok();
    }
    ctx
}

fn eval_bool(path: &Path, e: &Expr, ctx: &HashMapContext<DefaultNumericTypes>) -> Result<bool> {
    e.tree
        .eval_boolean_with_context(ctx)
        .map_err(|err| anyhow!("{}: constraint {:?}: {err}", where_(path, e.line), e.text))
}

/// All combinations of parameter values, in a fixed (lexicographic by name) order.
fn grid(params: &BTreeMap<String, Vec<i64>>) -> Vec<BTreeMap<String, i64>> {
    let mut out = vec![BTreeMap::new()];
    for (k, vals) in params {
        let mut next = Vec::with_capacity(out.len() * vals.len());
        for base in &out {
            for v in vals {
                let mut p = base.clone();
                p.insert(k.clone(), *v);
                next.push(p);
            }
        }
        out = next;
    }
    out
}

fn resolve_template(sweep_path: &Path, file: &str) -> PathBuf {
    let p = PathBuf::from(file);
    if p.is_absolute() {
        return p;
    }
    let dir = sweep_path.parent().unwrap_or(Path::new("."));
    // sweeps/x.toml → project root is the folder above `sweeps/`.
    let mut cands = vec![];
    if let Some(root) = dir.parent() {
        cands.push(root.join(&p));
    }
    cands.push(dir.join(&p));
    cands.push(crate::paths::project_root().join(&p));
    cands.push(p.clone());
    cands.iter().find(|c| c.is_file()).cloned().unwrap_or_else(|| cands[0].clone())
}

fn load_variant(path: &Path, text: &str, rv: RawVariant, shape_dims: &[&str]) -> Result<VariantSpace> {
    let at = |needle: &str| where_(path, line_of(text, needle));
    let file = resolve_template(path, &rv.file);
    let source = crate::gpu::nvrtc::load_source(&file)
        .with_context(|| format!("{}: variant {:?}: cannot read template {}", at(&rv.file), rv.name, file.display()))?;
    if rv.params.is_empty() {
        bail!("{}: variant {:?} has no params: nothing to sweep", at(&rv.name), rv.name);
    }
    for (k, vals) in &rv.params {
        if vals.is_empty() {
            bail!("{}: parameter {k} of variant {:?} has no values: the space is empty", at(k), rv.name);
        }
        // A tunable the template never reads would silently do nothing.
        let declared = source.contains(&format!("#ifndef {k}")) || source.contains(&format!("defined({k})"));
        if !declared {
            bail!(
                "{}: unknown parameter {k}: template {} declares no macro {k} (expected `#ifndef {k}`)",
                at(k),
                file.display()
            );
        }
    }
    let mut known: Vec<String> = rv.params.keys().cloned().collect();
    known.extend(shape_dims.iter().map(|s| s.to_string()));
    known.extend(DEVICE_NAMES.iter().map(|s| s.to_string()));
    let mut derived = Vec::new();
    for (name, raw) in &rv.derived {
        let e = compile_expr(path, text, raw)?;
        check_names(path, &e, &known)?;
        derived.push((name.clone(), e));
        known.push(name.clone());
    }
    let when = match &rv.when {
        Some(w) => {
            let e = compile_expr(path, text, w)?;
            let dims: Vec<String> =
                shape_dims.iter().map(|s| s.to_string()).chain(DEVICE_NAMES.iter().map(|s| s.to_string())).collect();
            check_names(path, &e, &dims)?;
            Some(e)
        }
        None => None,
    };
    let mut constraints = Vec::new();
    for c in &rv.constraints {
        let e = compile_expr(path, text, c)?;
        check_names(path, &e, &known)?;
        constraints.push(e);
    }
    Ok(VariantSpace { name: rv.name, file, source, when, min_cc: rv.min_cc, params: rv.params, derived, constraints })
}

fn check_names(path: &Path, e: &Expr, known: &[String]) -> Result<()> {
    for id in e.tree.iter_read_variable_identifiers() {
        if !known.iter().any(|k| k == id) {
            bail!(
                "{}: {:?} names unknown parameter {id:?} (known: {})",
                where_(path, e.line),
                e.text,
                known.join(", ")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn setup(sweep: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sweeps")).unwrap();
        std::fs::create_dir_all(dir.path().join("kernels/t")).unwrap();
        std::fs::write(
            dir.path().join("kernels/t/k.cu"),
            "#ifndef BM\n#define BM 64\n#endif\n#ifndef BN\n#define BN 64\n#endif\n#ifndef WM\n#define WM 32\n#endif\n",
        )
        .unwrap();
        let p = dir.path().join("sweeps/t.toml");
        std::fs::File::create(&p).unwrap().write_all(sweep.as_bytes()).unwrap();
        (dir, p)
    }

    const GOOD: &str = r#"
family = "gemm"
shapes = ["16x64x64"]
[tolerance]
bf16 = 0.02
[[variant]]
name = "k"
file = "kernels/t/k.cu"
params = { BM = [32, 64, 128], BN = [32, 64], WM = [16, 32, 64] }
derived = { WARPS = "BM / WM" }
constraints = [
  "BM % WM == 0",
  "WARPS <= 2",
  "BM * BN * 2 <= max_smem",
]
"#;

    fn limits() -> DeviceLimits {
        DeviceLimits { max_smem: 8192, max_threads: 1024, sm_count: 132, cc: 90 }
    }

    #[test]
    fn enumerates_and_counts_drops() {
        let (_d, p) = setup(GOOD);
        let s = Sweep::load(&p, &["M", "N", "K"]).unwrap();
        let shape = vec![("M".to_string(), 16), ("N".to_string(), 64), ("K".to_string(), 64)];
        let e = s.enumerate(&shape, 2, &limits()).unwrap();
        assert_eq!(e.total, 18);
        // Hand count: pairs (BM,WM) with BM%WM==0 and BM/WM<=2:
        // (32,16),(32,32),(64,32),(64,64),(128,64) → 5, × BN {32,64} = 10;
        // smem BM*BN*2 <= 8192 drops (128,64)×BN=64 (16384) and (128,64)×BN=32 is 8192 (kept),
        // (64,*)×BN=64 = 8192 kept. So 9 kept.
        assert_eq!(e.kept.len(), 9, "{:?}", e.kept);
        let dropped: usize = e.dropped.iter().map(|(_, n)| n).sum();
        assert_eq!(dropped + e.kept.len(), e.total);
        assert!(e.dropped.iter().any(|(r, _)| r.contains("BM % WM == 0")));
        // Deterministic order.
        let e2 = s.enumerate(&shape, 2, &limits()).unwrap();
        assert_eq!(e.kept, e2.kept);
    }

    #[test]
    fn when_filters_by_shape() {
        let (_d, p) = setup(&GOOD.replace("name = \"k\"", "name = \"k\"\nwhen = \"M > 16\""));
        let s = Sweep::load(&p, &["M", "N", "K"]).unwrap();
        let e = s.enumerate(&[("M".into(), 16), ("N".into(), 64), ("K".into(), 64)], 2, &limits()).unwrap();
        assert!(e.kept.is_empty());
        assert!(e.dropped[0].0.contains("not for this shape"));
    }

    #[test]
    fn unknown_parameter_in_constraint_names_file_and_line() {
        let (_d, p) = setup(&GOOD.replace("\"WARPS <= 2\"", "\"WARPZ <= 2\""));
        let err = format!("{:#}", Sweep::load(&p, &["M", "N", "K"]).unwrap_err());
        assert!(err.contains("t.toml:13"), "{err}");
        assert!(err.contains("WARPZ"), "{err}");
    }

    #[test]
    fn parameter_the_template_does_not_declare_is_an_error() {
        let (_d, p) = setup(&GOOD.replace("WM = [16, 32, 64] }", "WM = [16, 32, 64], XX = [1] }"));
        let err = format!("{:#}", Sweep::load(&p, &["M", "N", "K"]).unwrap_err());
        assert!(err.contains("unknown parameter XX"), "{err}");
    }

    #[test]
    fn empty_values_and_malformed_toml_are_errors_with_lines() {
        let (_d, p) = setup(&GOOD.replace("BN = [32, 64]", "BN = []"));
        let err = format!("{:#}", Sweep::load(&p, &["M", "N", "K"]).unwrap_err());
        assert!(err.contains("no values"), "{err}");
        let (_d, p) = setup("family = \"gemm\"\n[[variant]\nname = 1\n");
        let err = format!("{:#}", Sweep::load(&p, &["M", "N", "K"]).unwrap_err());
        assert!(err.contains("line 2"), "{err}");
        let (_d, p) = setup(&GOOD.replace("constraints", "constrains"));
        let err = format!("{:#}", Sweep::load(&p, &["M", "N", "K"]).unwrap_err());
        assert!(err.contains("constrains"), "{err}");
    }

    #[test]
    fn bad_expression_is_an_error() {
        let (_d, p) = setup(&GOOD.replace("\"BM % WM == 0\"", "\"BM % (WM == 0\""));
        let err = format!("{:#}", Sweep::load(&p, &["M", "N", "K"]).unwrap_err());
        assert!(err.contains("bad expression"), "{err}");
    }

    #[test]
    fn ceil_div_and_limits_for_arch() {
        let (_d, p) = setup(&GOOD.replace("\"WARPS <= 2\"", "\"ceil_div(M, BM) * BM >= M\""));
        let s = Sweep::load(&p, &["M", "N", "K"]).unwrap();
        let e = s.enumerate(&[("M".into(), 17), ("N".into(), 64), ("K".into(), 64)], 2, &limits()).unwrap();
        assert!(!e.kept.is_empty());
        assert_eq!(DeviceLimits::for_arch("sm_90a").unwrap().max_smem, 232_448);
        assert!(DeviceLimits::for_arch("gpu").is_err());
    }
}
