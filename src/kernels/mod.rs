//! Kernel families: shapes, inputs, launch geometry, FLOP and byte counts, references.
//!
//! A family knows, for one problem shape, how to build inputs on the GPU, compute the
//! reference output (the peer library, or a simple trusted kernel), launch any of its
//! variants from their tunables, and count the FLOPs and minimum DRAM bytes that place a
//! measurement on the roofline.

pub mod attention_common;
pub mod attention_decode;
pub mod attention_prefill;
pub mod gemm;
pub mod gemm_common;
pub mod gemm_int4;
pub mod gemm_int8;
pub mod rmsnorm;
pub mod rope;
pub mod softmax;
pub mod support;
pub mod swiglu;
pub mod tunables;

use crate::gpu::device::{Gpu, Kernel};
use crate::gpu::util::{Comparison, Util};
use anyhow::{anyhow, bail, Result};
use std::collections::BTreeMap;

pub use crate::core::DType;

/// A compiled variant's entry points, by name.
pub type Kernels = BTreeMap<String, Kernel>;
/// A variant's tunables by macro name: its template's defaults overridden by a sweep's values.
pub type Params = BTreeMap<String, i64>;

/// A problem shape: named dimensions in the family's order (GEMM: M, N, K).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shape {
    pub dims: Vec<(String, i64)>,
}

impl Shape {
    /// Parses `16x4096x14336` against the family's dimension names.
    pub fn parse(text: &str, dims: &[&str]) -> Result<Shape> {
        let parts: Vec<&str> = text.trim().split(['x', 'X', '×']).collect();
        if parts.len() != dims.len() {
            bail!(
                "bad shape {text:?}: expected {} numbers separated by 'x' ({}), e.g. {}",
                dims.len(),
                dims.join("x"),
                dims.iter().map(|_| "128").collect::<Vec<_>>().join("x")
            );
        }
        let mut out = Vec::new();
        for (p, d) in parts.iter().zip(dims) {
            let v: i64 =
                p.trim().parse().map_err(|_| anyhow!("bad shape {text:?}: {d} = {p:?} is not a whole number"))?;
            if v <= 0 {
                bail!("bad shape {text:?}: {d} must be at least 1, got {v}");
            }
            if v > (1 << 31) - 1 {
                bail!("bad shape {text:?}: {d} = {v} does not fit the kernels' 32-bit indices");
            }
            out.push((d.to_string(), v));
        }
        Ok(Shape { dims: out })
    }
    pub fn get(&self, name: &str) -> i64 {
        self.dims.iter().find(|(k, _)| k == name).map(|(_, v)| *v).unwrap_or(0)
    }
    pub fn label(&self) -> String {
        self.dims.iter().map(|(_, v)| v.to_string()).collect::<Vec<_>>().join("x")
    }
}

/// A family's GPU-side state for one shape: inputs, reference output, workspace.
pub trait Problem {
    /// Fresh random inputs from `seed`, and the reference output for them.
    fn randomize(&mut self, gpu: &Gpu, util: &Util, seed: u64) -> Result<()>;
    /// Fills the output with NaN so an unwritten element cannot pass.
    fn poison(&mut self, gpu: &Gpu, util: &Util) -> Result<()>;
    /// Runs one candidate into the output.
    fn run(&mut self, gpu: &Gpu, variant: &str, kernels: &Kernels, params: &Params) -> Result<()>;
    /// Compares the output with the reference.
    fn check(&mut self, gpu: &Gpu, util: &Util) -> Result<Comparison>;
    /// Runs the peer library once (for timing). `None` when the family has no peer.
    fn run_peer(&mut self, gpu: &Gpu) -> Result<Option<()>>;
    /// Checks the device reference itself against an f64 CPU computation on the current
    /// inputs (used by `kernlab selftest` at small sizes). Returns the relative error of the
    /// reference output, or `None` when the family has no CPU reference.
    fn reference_vs_cpu(&mut self, _gpu: &Gpu) -> Result<Option<f64>> {
        Ok(None)
    }
}

/// A kernel family.
pub trait Family: Sync {
    fn name(&self) -> &'static str;
    fn shape_dims(&self) -> &'static [&'static str];
    /// Useful floating-point operations of one run.
    fn flops(&self, s: &Shape) -> f64;
    /// Fewest DRAM bytes one run must move (each input read once, each output written once).
    fn min_bytes(&self, s: &Shape, dt: DType) -> f64;
    /// Entry points each variant's module must provide (the first is the main kernel).
    fn entries(&self, variant: &str) -> Result<&'static [&'static str]>;
    /// Rejects shapes the kernels cannot take, with a message saying why.
    fn validate(&self, s: &Shape, dt: DType) -> Result<()>;
    /// Name of the peer measured in the same run ("cublas").
    fn peer(&self) -> &'static str;
    fn problem(&self, gpu: &Gpu, s: &Shape, dt: DType) -> Result<Box<dyn Problem>>;
    /// Small and awkward shapes (odd sizes, one row, not multiples of any tile) that
    /// `kernlab selftest` checks every variant at.
    fn selftest_shapes(&self) -> &'static [&'static str];
    /// The weight format a candidate's tunables select, for a family whose weights come in
    /// several (gemm_int4), where it is not the default: the tuned database keeps winners
    /// per format. None for every other family.
    fn weight_format(&self, _params: &Params, _dt: DType) -> Option<String> {
        None
    }
}

/// All families kernlab knows.
pub fn families() -> Vec<&'static dyn Family> {
    vec![
        &gemm::Gemm,
        &gemm_int4::GemmInt4,
        &gemm_int8::GemmInt8,
        &softmax::Softmax,
        &rmsnorm::RmsNorm,
        &rope::Rope,
        &swiglu::SwiGlu,
        &attention_prefill::PREFILL,
        &attention_prefill::PREFILL_VARLEN,
        &attention_decode::DECODE,
        &attention_decode::DECODE_VARLEN,
    ]
}

/// A built-in family by name.
pub fn builtin(name: &str) -> Option<&'static dyn Family> {
    families().into_iter().find(|f| f.name() == name)
}

/// A built-in family. Kernels described in sweep files are the tuner's
/// (`tune::family` finds both).
pub fn family(name: &str) -> Result<&'static dyn Family> {
    builtin(name).ok_or_else(|| {
        let known: Vec<&str> = families().iter().map(|f| f.name()).collect();
        anyhow!("unknown kernel family {name:?}; known families: {}", known.join(", "))
    })
}

/// Reads a tunable, with a clear error when the sweep did not provide it.
pub fn param(params: &Params, name: &str) -> Result<i64> {
    params.get(name).copied().ok_or_else(|| anyhow!("this variant needs tunable {name}, which the sweep does not set"))
}

/// ⌈a / b⌉ for a divisor that may come from a sweep's tunables or a shape: an error naming
/// both numbers when the divisor is not positive, never a panic, and no overflow (the old
/// `(a + b - 1) / b` wrapped past `i64::MAX` and panicked on `i64::MIN / -1`).
pub fn checked_ceil_div(a: i64, b: i64) -> Result<i64> {
    if b <= 0 {
        bail!("ceil_div({a}, {b}): the divisor must be at least 1 (a tunable or a shape of 0 or less?)");
    }
    // b ≥ 1, so neither can overflow; Euclid's quotient is the floor, for negative `a` too.
    Ok(a.div_euclid(b) + i64::from(a.rem_euclid(b) != 0))
}

/// ⌈a / b⌉ for divisors the code itself fixes (tile sizes, 256-thread blocks). A divisor
/// below 1 gives 0, which no launch accepts, instead of a panic; where the divisor comes
/// from input, use `checked_ceil_div` for the error that says so.
pub fn ceil_div(a: i64, b: i64) -> i64 {
    checked_ceil_div(a, b).unwrap_or(0)
}

/// Where one launch runs: grid, block and dynamic shared memory, as the launchers compute them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    pub smem: u32,
}

/// A main launch, plus the reduction of its fp32 partials when it splits K (the quantized
/// GEMM families' plans).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemvPlan {
    pub main: Geometry,
    pub splitk: i64,
    pub reduce: Option<Geometry>,
}

impl GemvPlan {
    /// `main` splitting K `splitk` ways into an M×N output; the split-K reduction kernels
    /// (gemm_splitk_reduce, int4_splitk_reduce) take one thread an output, 256 a block.
    pub fn split_k(main: Geometry, splitk: i64, m: i64, n: i64) -> GemvPlan {
        let reduce =
            (splitk > 1).then(|| Geometry { grid: (ceil_div(m * n, 256) as u32, 1, 1), block: (256, 1, 1), smem: 0 });
        GemvPlan { main, splitk, reduce }
    }
}

/// `v` as a grid dimension, or an error naming `what` when no launch can take it.
pub fn grid_dim(v: i64, what: &str) -> Result<u32> {
    if !(1..=i64::from(u32::MAX)).contains(&v) {
        bail!("{what} = {v} does not fit a launch");
    }
    Ok(v as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_and_reject_nonsense() {
        let s = Shape::parse("16x4096x14336", &["M", "N", "K"]).unwrap();
        assert_eq!(s.get("K"), 14336);
        assert_eq!(s.label(), "16x4096x14336");
        for bad in ["16x4096", "0x1x1", "axbxc", "-1x2x3", "1x2x3x4", "99999999999x1x1"] {
            assert!(Shape::parse(bad, &["M", "N", "K"]).is_err(), "{bad}");
        }
    }

    #[test]
    fn ceil_div_neither_wraps_nor_panics() {
        assert_eq!((ceil_div(10, 4), ceil_div(8, 4), ceil_div(0, 4), ceil_div(-3, 2)), (3, 2, 0, -1));
        // `a + b - 1` overflowed for these.
        assert_eq!(ceil_div(i64::MAX, 2), i64::MAX / 2 + 1);
        assert_eq!(ceil_div(2, i64::MAX), 1);
        assert_eq!(ceil_div(i64::MAX, i64::MAX), 1);
        // These panicked (divide by zero, divide with overflow).
        assert_eq!(ceil_div(5, 0), 0);
        assert_eq!(ceil_div(i64::MIN + 2, -1), 0);
        let e = format!("{:#}", checked_ceil_div(4096, 0).unwrap_err());
        assert!(e.contains("ceil_div(4096, 0)") && e.contains("at least 1"), "{e}");
        assert!(checked_ceil_div(i64::MIN + 2, -1).is_err());
    }

    #[test]
    fn dtypes() {
        assert_eq!(DType::parse("bf16").unwrap().bytes(), 2);
        assert!(DType::F16.defines().contains_key("KL_FP16"));
        assert!(DType::parse("int3").is_err());
    }
}
