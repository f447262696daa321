//! SwiGLU, the Llama MLP activation: out = silu(gate) · up, from the fused gate+up projection
//! output [tokens, 2·ffn] (gate columns first). bf16/fp16/fp32, fp32 math.
//! Peer: F.silu(g) * u (scripts/torch_peers.py).
//! Reference: kernels/swiglu/reference.cu (one thread per output element).

use super::support;
use super::{ceil_div, checked_ceil_div, param, DType, Family, Problem, Shape};
use crate::gpu::device::{Arg, DevBuf, Gpu, Kernel};
use crate::gpu::util::{Comparison, Util};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;

pub const REFERENCE_SOURCE: &str = include_str!("../../kernels/swiglu/reference.cu");

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
        Ok(match variant {
            "swiglu" => &["swiglu"],
            other => bail!("the swiglu family has no variant {other:?} (known: swiglu)"),
        })
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
    reference: BTreeMap<String, Kernel>,
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
            reference: support::reference_kernels(
                gpu,
                "kernels/swiglu/reference.cu",
                REFERENCE_SOURCE,
                dt,
                &["swiglu_reference"],
            )?,
        })
    }

    fn args(&self, out: &DevBuf) -> [Arg; 4] {
        [self.gu.arg(), out.arg(), Arg::I32(self.tokens as i32), Arg::I32(self.ffn as i32)]
    }
}

impl Problem for SwiGluProblem {
    fn randomize(&mut self, gpu: &Gpu, util: &Util, seed: u64) -> Result<()> {
        // Scale 6 covers silu's curved part and both tails.
        util.fill(gpu, &self.gu, self.dt, (2 * self.tokens * self.ffn) as usize, seed, 6.0)?;
        let grid = (ceil_div(self.tokens * self.ffn, 256).clamp(1, 65_535 * 16) as u32, 1, 1);
        gpu.launch(&self.reference["swiglu_reference"], grid, (256, 1, 1), 0, &self.args(&self.out_ref))?;
        gpu.synchronize()
    }

    fn poison(&mut self, gpu: &Gpu, util: &Util) -> Result<()> {
        util.poison(gpu, &self.out)
    }

    fn run(
        &mut self,
        gpu: &Gpu,
        variant: &str,
        kernels: &BTreeMap<String, Kernel>,
        p: &BTreeMap<String, i64>,
    ) -> Result<()> {
        if variant != "swiglu" {
            bail!("the swiglu family has no variant {variant:?}");
        }
        let (threads, vec, items) = (param(p, "THREADS")?, param(p, "VEC")?, param(p, "ITEMS")?);
        let k = kernels.get("swiglu").context("module lacks swiglu")?;
        let grid = (checked_ceil_div(self.ffn, threads * vec * items)? as u32, self.tokens.min(65_535) as u32, 1);
        gpu.launch(k, grid, (threads as u32, 1, 1), 0, &self.args(&self.out))
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
}
