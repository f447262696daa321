//! Sweep files: a kernel family's search space, its constraints and its default shapes.
//!
//! ```toml
//! family = "gemm"
//! dtypes = ["bf16"]
//! shapes = ["1x4096x4096", "2048x28672x4096"]
//! strategy = "grid"            # or "random", "tpe", "warm", "evolve"; absent = chosen per shape
//! budget = 0                   # evaluations per shape; 0 = all
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
//! Constraints are integer expressions ([`expr`]) over the parameters, the derived values,
//! the shape's dimensions and the device limits (`max_smem`, `max_threads`, `sm_count`, `cc`).
//! Every error names the file and the line of the value it is about (from the TOML parser's
//! spans, not a text search).
//!
//! A variant's space is the product of its parameter value lists; it is never built in memory.
//! [`enumerate`] addresses its points by index, checks them one at a time and walks or samples
//! it; [`crate::tune::strategy`] chooses the candidates to measure from it.

pub mod enumerate;
pub mod expr;
mod strategy_name;

pub use enumerate::{Enumeration, ShapeEnv, SweepSpace, Verdict, GRID_LIMIT};

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

pub use crate::core::DeviceLimits;
pub use strategy_name::SearchStrategy;

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
    tolerance: BTreeMap<String, Spanned<f64>>,
    #[serde(default)]
    strategy: Option<Spanned<String>>,
    #[serde(default)]
    budget: Option<usize>,
    #[serde(default)]
    time_limit_s: Option<f64>,
    #[serde(default, rename = "variant")]
    variants: Vec<Spanned<RawVariant>>,
    /// A kernel described in the file (read by `tune::user`, not here).
    #[serde(default)]
    #[allow(dead_code)]
    kernel: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariant {
    name: Spanned<String>,
    file: Spanned<String>,
    #[serde(default)]
    when: Option<Spanned<String>>,
    #[serde(default)]
    min_cc: Option<i64>,
    #[serde(default)]
    params: BTreeMap<String, Spanned<Vec<i64>>>,
    #[serde(default)]
    derived: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    constraints: Vec<Spanned<String>>,
}

/// How the strategies that plan their whole choice up front (grid, random) choose from the
/// space; see [`crate::tune::strategy`].
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
    prog: expr::Program,
}

/// One variant's space: the product of its parameter value lists, addressed by index
/// (see [`enumerate`] for `size`, `point`, `check`).
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
    /// Number of points (product of the value-list lengths).
    size: u128,
    /// Slots before the params: the shape's dimensions, then [`DEVICE_NAMES`].
    env_slots: usize,
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
    /// The file's `strategy`; `None` lets the sweep choose per shape.
    pub strategy: Option<SearchStrategy>,
    pub budget: usize,
    pub time_limit_s: Option<f64>,
    pub variants: Vec<VariantSpace>,
    /// The shape dimensions expressions may name (the family's), in slot order.
    pub dims: Vec<String>,
    /// `--shard i/n`: only this piece of the space is enumerated or searched.
    pub shard: Option<crate::tune::shard::Shard>,
}

/// One point of the space.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Candidate {
    pub variant: String,
    pub params: BTreeMap<String, i64>,
}

/// 1-based line of a byte offset.
fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|b| **b == b'\n').count() + 1
}

fn where_(path: &Path, line: usize) -> String {
    if line > 0 {
        format!("{}:{line}", path.display())
    } else {
        path.display().to_string()
    }
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
        let strategy = match &raw.strategy {
            Some(s) => {
                Some(SearchStrategy::parse(s.get_ref()).with_context(|| where_(path, line_at(text, s.span().start)))?)
            }
            None => None,
        };
        let mut variants = Vec::new();
        for rv in raw.variants {
            variants.push(load_variant(path, text, rv, shape_dims)?);
        }
        let mut names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            bail!("{}: variant {:?} is declared twice", path.display(), w[0]);
        }
        let mut tolerance = BTreeMap::new();
        for (dt, tol) in raw.tolerance {
            let line = line_at(text, tol.span().start);
            let tol = tol.into_inner();
            if !(tol.is_finite() && tol > 0.0) {
                bail!("{}: tolerance for {dt} must be a positive number, got {tol}", where_(path, line));
            }
            tolerance.insert(dt, tol);
        }
        Ok(Sweep {
            path: path.to_path_buf(),
            family: raw.family,
            description: raw.description,
            dtypes: if raw.dtypes.is_empty() { vec!["bf16".into()] } else { raw.dtypes },
            shapes: raw.shapes,
            tolerance,
            strategy,
            budget: raw.budget.unwrap_or(0),
            time_limit_s: raw.time_limit_s,
            variants,
            dims: shape_dims.iter().map(|s| s.to_string()).collect(),
            shard: None,
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

    /// Keeps only the named variants (`kernlab sweep --variant`), in the file's order; no
    /// names keeps all. A name the file lacks is an error that lists the file's variants.
    pub fn keep_variants(&mut self, names: &[String]) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        for n in names {
            if self.variant(n).is_none() {
                let have: Vec<&str> = self.variants.iter().map(|v| v.name.as_str()).collect();
                bail!("--variant {n:?}: {} has no such variant; it has {}", self.path.display(), have.join(", "));
            }
        }
        self.variants.retain(|v| names.contains(&v.name));
        Ok(())
    }
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

/// Compiles one expression against the first `visible` slot names and checks its type.
fn compile_expr(
    path: &Path,
    text: &str,
    raw: &Spanned<String>,
    names: &[&str],
    want: expr::Type,
    role: &str,
) -> Result<Expr> {
    let line = line_at(text, raw.span().start);
    let src = raw.get_ref();
    let prog = expr::compile(src, names).map_err(|e| anyhow!("{}: bad expression {src:?}: {e}", where_(path, line)))?;
    if prog.ty() != want {
        let (want_s, got_s) = match want {
            expr::Type::Bool => ("a condition such as `X <= 8`", "a number"),
            expr::Type::Int => ("a number", "a condition"),
        };
        bail!("{}: {role} {src:?} is {got_s}; it must be {want_s}", where_(path, line));
    }
    Ok(Expr { text: src.clone(), line, prog })
}

fn load_variant(path: &Path, text: &str, rv: Spanned<RawVariant>, shape_dims: &[&str]) -> Result<VariantSpace> {
    let vline = line_at(text, rv.span().start);
    let rv = rv.into_inner();
    let at = |s: std::ops::Range<usize>| where_(path, line_at(text, s.start));
    let name = rv.name.get_ref().clone();
    let file = resolve_template(path, rv.file.get_ref());
    let source = crate::gpu::nvrtc::load_source(&file).with_context(|| {
        format!("{}: variant {name:?}: cannot read template {}", at(rv.file.span()), file.display())
    })?;
    if rv.params.is_empty() {
        bail!("{}: variant {name:?} has no params: nothing to sweep", at(rv.name.span()));
    }
    let mut size: u128 = 1;
    for (k, vals) in &rv.params {
        if vals.get_ref().is_empty() {
            bail!("{}: parameter {k} of variant {name:?} has no values: the space is empty", at(vals.span()));
        }
        let mut sorted = vals.get_ref().clone();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            bail!("{}: parameter {k} of variant {name:?} lists {} twice", at(vals.span()), w[0]);
        }
        size = size.checked_mul(vals.get_ref().len() as u128).ok_or_else(|| {
            anyhow!(
                "{}: the space of variant {name:?} has more than 2^128 points; split it into smaller variants",
                where_(path, vline)
            )
        })?;
        // A tunable the template never reads would silently do nothing.
        let declared = source.contains(&format!("#ifndef {k}")) || source.contains(&format!("defined({k})"));
        if !declared {
            bail!(
                "{}: unknown parameter {k}: template {} declares no macro {k} (expected `#ifndef {k}`)",
                at(vals.span()),
                file.display()
            );
        }
    }
    // Slot layout: shape dims, device names, params, derived (see `enumerate`).
    let mut names: Vec<&str> = shape_dims.to_vec();
    names.extend(DEVICE_NAMES);
    let env_slots = names.len();
    let when = match &rv.when {
        Some(w) => Some(compile_expr(path, text, w, &names, expr::Type::Bool, "when")?),
        None => None,
    };
    names.extend(rv.params.keys().map(|k| k.as_str()));
    let mut derived = Vec::new();
    for (dname, raw) in &rv.derived {
        if names.contains(&dname.as_str()) {
            bail!("{}: derived {dname} has the name of a parameter or dimension", at(raw.span()));
        }
        let role = format!("derived {dname} =");
        derived.push((dname.clone(), compile_expr(path, text, raw, &names, expr::Type::Int, &role)?));
        names.push(dname);
    }
    let mut constraints = Vec::new();
    for c in &rv.constraints {
        constraints.push(compile_expr(path, text, c, &names, expr::Type::Bool, "constraint")?);
    }
    let params = rv.params.into_iter().map(|(k, v)| (k, v.into_inner())).collect();
    Ok(VariantSpace { name, file, source, when, min_cc: rv.min_cc, params, derived, constraints, size, env_slots })
}

#[cfg(test)]
mod tests;
