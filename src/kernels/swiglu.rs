//! SwiGLU, the Llama MLP activation: out = silu(gate) · up, from the fused gate+up projection
//! output [tokens, 2·ffn] (gate columns first). bf16/fp16/fp32, fp32 math.
//! Peer: F.silu(g) * u (scripts/torch_peers.py).
//! Reference: kernels/swiglu/reference.cu (one thread per output element).

use super::support;
use super::tunables::{LauncherCache, Tunables};
use super::{ceil_div, DType, Family, Geometry, Kernels, Params, Problem, Shape};
use crate::gpu::device::{Arg, DevBuf, Gpu, Kernel};
use crate::gpu::util::{Comparison, Util};
use anyhow::{bail, Result};

pub const REFERENCE_SOURCE: &str = include_str!("../../kernels/swiglu/reference.cu");
/// The template (for its defaults; VEC's comes from elementwise.cuh, which the sweep sets).
pub const TEMPLATE_SOURCE: &str = include_str!("../../kernels/swiglu/swiglu.cu");

/// The argument list of swiglu, which swiglu_reference shares: (gate_up, out, tokens, ffn).
pub fn swiglu_args(gate_up: u64, out: u64, tokens: i64, ffn: i64) -> Vec<Arg> {
    let mut args = Arg::ptrs([gate_up, out]);
    args.extend(Arg::i32s([tokens, ffn]));
    args
}

/// The one launch of the swiglu template (kernels/swiglu/swiglu.cu: gate_up [tokens, 2·ffn]
/// in, out [tokens, ffn]), built once from a variant's tunables; the sweep, the selftest and
/// the model launch through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwiGluLaunch {
    threads: i64,
    /// Elements of one row a block covers: THREADS·VEC·ITEMS.
    per_block: i64,
}

impl SwiGluLaunch {
    pub fn new(t: &Tunables) -> Result<SwiGluLaunch> {
        t.expect_variant("swiglu", "swiglu")?;
        let threads = t.get("THREADS")?;
        let (vec, items) = (t.get("VEC")?, t.get("ITEMS")?);
        let per_block = threads.checked_mul(vec).and_then(|v| v.checked_mul(items));
        match per_block {
            Some(per_block) if threads >= 1 && per_block >= 1 => Ok(SwiGluLaunch { threads, per_block }),
            _ => bail!("swiglu needs THREADS, VEC and ITEMS of at least 1 whose product fits in 64 bits"),
        }
    }

    /// Blocks along the row, one grid row per token (the kernel strides past 65535 tokens).
    pub fn geometry(&self, tokens: i64, ffn: i64) -> Geometry {
        Geometry {
            grid: (ceil_div(ffn, self.per_block) as u32, tokens.min(65_535) as u32, 1),
            block: (self.threads as u32, 1, 1),
            smem: 0,
        }
    }

    /// # Safety
    /// `k` is the swiglu entry of a module compiled with these tunables; `gate_up` holds
    /// tokens·2·ffn elements and `out` tokens·ffn, live until the launch ran.
    pub unsafe fn launch(&self, gpu: &Gpu, k: &Kernel, gate_up: u64, out: u64, tokens: i64, ffn: i64) -> Result<()> {
        let g = self.geometry(tokens, ffn);
        // SAFETY: the caller's contract; the arguments are the entry's (gate_up, out, tokens, ffn).
        unsafe { gpu.launch(k, g.grid, g.block, g.smem, &swiglu_args(gate_up, out, tokens, ffn)) }
    }
}

pub struct SwiGlu;

impl Family for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }
    fn shape_dims(&self) -> &'static [&'static str] {
        &["tokens", "ffn"]
    }
    /// Per output: negate-exp, add, divide (silu), multiply by up.
    fn flops(&self, s: &Shape) -> f64 {
        4.0 * s.get("tokens") as f64 * s.get("ffn") as f64
    }
    /// gate and up read once, the output written once.
    fn min_bytes(&self, s: &Shape, dt: DType) -> f64 {
        3.0 * s.get("tokens") as f64 * s.get("ffn") as f64 * dt.bytes() as f64
    }
    fn entries(&self, variant: &str) -> Result<&'static [&'static str]> {
        support::single_variant_entries("swiglu", variant, &["swiglu"])
    }
    fn validate(&self, s: &Shape, _dt: DType) -> Result<()> {
        if 2 * s.get("ffn") > i32::MAX as i64 {
            bail!("swiglu {}: 2·ffn must fit in 32 bits", s.label());
        }
        Ok(())
    }
    fn peer(&self) -> &'static str {
        "torch"
    }
    fn selftest_shapes(&self) -> &'static [&'static str] {
        // One element; one token; odd widths (scalar path); widths not a multiple of a
        // block's span; more tokens than one grid column.
        &["1x1", "1x14336", "3x7", "5x1001", "17x4104", "2x14335", "70000x8"]
    }
    fn problem(&self, gpu: &Gpu, s: &Shape, dt: DType) -> Result<Box<dyn Problem>> {
        self.validate(s, dt)?;
        Ok(Box::new(SwiGluProblem::new(gpu, s, dt)?))
    }
}

pub struct SwiGluProblem {
    tokens: i64,
    ffn: i64,
    dt: DType,
    gu: DevBuf,
    out: DevBuf,
    out_ref: DevBuf,
    reference: Kernel,
    launcher: LauncherCache<SwiGluLaunch>,
}

impl SwiGluProblem {
    pub fn new(gpu: &Gpu, s: &Shape, dt: DType) -> Result<SwiGluProblem> {
        let (tokens, ffn) = (s.get("tokens"), s.get("ffn"));
        let n = (tokens * ffn) as usize * dt.bytes();
        support::ensure_fits(gpu, "swiglu", s, 4 * n)?;
        Ok(SwiGluProblem {
            tokens,
            ffn,
            dt,
            gu: gpu.alloc(2 * n)?,
            out: gpu.alloc(n)?,
            out_ref: gpu.alloc(n)?,
            reference: support::family_reference_kernel(gpu, "swiglu", REFERENCE_SOURCE, dt)?,
            launcher: LauncherCache::default(),
        })
    }
}

impl Problem for SwiGluProblem {
    fn randomize(&mut self, gpu: &Gpu, util: &Util, seed: u64) -> Result<()> {
        // Scale 6 covers silu's curved part and both tails.
        util.fill(gpu, &self.gu, self.dt, (2 * self.tokens * self.ffn) as usize, seed, 6.0)?;
        let g = support::grid_stride_reference(self.tokens * self.ffn);
        let args = swiglu_args(self.gu.ptr, self.out_ref.ptr, self.tokens, self.ffn);
        // SAFETY: a grid-stride loop over buffers allocated by `new` for this shape; the
        // arguments are swiglu_reference's (gate_up, out, tokens, ffn).
        unsafe { gpu.launch(&self.reference, g.grid, g.block, g.smem, &args)? };
        gpu.synchronize()
    }

    fn poison(&mut self, gpu: &Gpu, util: &Util) -> Result<()> {
        util.poison(gpu, &self.out)
    }

    fn run(&mut self, gpu: &Gpu, variant: &str, kernels: &Kernels, p: &Params) -> Result<()> {
        let (l, k) = self.launcher.single_entry(variant, p, kernels, TEMPLATE_SOURCE, self.dt, SwiGluLaunch::new)?;
        // SAFETY: gu holds tokens·2·ffn elements and out tokens·ffn (allocated by `new`);
        // `k` comes from the candidate's module, compiled with `p`.
        unsafe { l.launch(gpu, k, self.gu.ptr, self.out.ptr, self.tokens, self.ffn) }
    }

    fn check(&mut self, gpu: &Gpu, util: &Util) -> Result<Comparison> {
        util.compare(gpu, &self.out, &self.out_ref, self.dt, (self.tokens * self.ffn) as usize)
    }

    fn run_peer(&mut self, _gpu: &Gpu) -> Result<Option<()>> {
        Ok(None) // F.silu(g) * u is measured by scripts/torch_peers.py
    }

    fn reference_vs_cpu(&mut self, gpu: &Gpu) -> Result<Option<f64>> {
        gpu.synchronize()?;
        let (t, f) = (self.tokens as usize, self.ffn as usize);
        let gu = support::download_f64(&self.gu, self.dt, 2 * t * f)?;
        let got = support::download_f64(&self.out_ref, self.dt, t * f)?;
        let mut want = vec![0.0; t * f];
        for (row, w) in gu.chunks(2 * f).zip(want.chunks_mut(f)) {
            for j in 0..f {
                let g = row[j];
                w[j] = g / (1.0 + (-g).exp()) * row[f + j];
            }
        }
        Ok(Some(support::rel_err(&got, &want)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        let s = Shape::parse("8192x14336", SwiGlu.shape_dims()).unwrap();
        assert_eq!(SwiGlu.min_bytes(&s, DType::BF16), 3.0 * 8192.0 * 14336.0 * 2.0);
        assert_eq!(SwiGlu.flops(&s), 4.0 * 8192.0 * 14336.0);
    }

    #[test]
    fn argument_list_and_reference_grid() {
        assert_eq!(format!("{:?}", swiglu_args(1, 2, 3, 4)), "[Ptr(1), Ptr(2), I32(3), I32(4)]");
        // Values of the reference launch before the helper: (⌈n/256⌉ in 1..=65535·16), 256.
        let g = support::grid_stride_reference(1 << 30);
        assert_eq!(g, Geometry { grid: (65_535 * 16, 1, 1), block: (256, 1, 1), smem: 0 });
        assert_eq!(support::grid_stride_reference(257).grid, (2, 1, 1));
        assert_eq!(support::grid_stride_reference(0).grid, (1, 1, 1));
    }

    #[test]
    fn launch_geometry() {
        let t = |threads: i64, vec: i64, items: i64| {
            let p = [("THREADS", threads), ("VEC", vec), ("ITEMS", items)];
            SwiGluLaunch::new(&Tunables::new("swiglu", p.iter().map(|(k, v)| (k.to_string(), *v)).collect())).unwrap()
        };
        // Values of the launch before the launcher existed: (⌈ffn/(T·V·I)⌉, min(tokens, 65535)), T.
        assert_eq!(t(256, 8, 2).geometry(8192, 14336), Geometry { grid: (4, 8192, 1), block: (256, 1, 1), smem: 0 });
        assert_eq!(t(128, 4, 1).geometry(70_000, 1000), Geometry { grid: (2, 65_535, 1), block: (128, 1, 1), smem: 0 });
        assert!(SwiGluLaunch::new(&Tunables::new("other", Params::new())).is_err());
    }
}
