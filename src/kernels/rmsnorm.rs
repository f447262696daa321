//! RMSNorm with the transformer's residual add fused in: r = x + h (written back as the new
//! residual stream), y = r · rsqrt(mean(r²) + eps) · w, in one pass; bf16/fp16/fp32, fp32
//! math, eps 1e-5 (Llama-3). The same kernel without h is the plain norm.
//! Peer: F.rms_norm after a separate add (scripts/torch_peers.py).
//! Reference: kernels/rmsnorm/reference.cu (one warp per row, plain passes).
//!
//! The family measures the fused form (the one Llama runs 2·32 times per token). The plain
//! form is verified too: on the verification run after each `randomize`, `run` first launches
//! the candidate with h = NULL into a separate output, which `check` compares as well. Timed
//! runs launch only the fused form.

use super::support;
use super::tunables::{LauncherCache, Tunables};
use super::{checked_ceil_div, DType, Family, Geometry, Kernels, Params, Problem, Shape};
use crate::gpu::device::{Arg, DevBuf, Gpu, Kernel};
use crate::gpu::util::{Comparison, Util};
use anyhow::{bail, Result};

pub const REFERENCE_SOURCE: &str = include_str!("../../kernels/rmsnorm/reference.cu");
/// The template (for its defaults; VEC's comes from elementwise.cuh, which the sweep sets).
pub const TEMPLATE_SOURCE: &str = include_str!("../../kernels/rmsnorm/rmsnorm_rows.cu");
pub const EPS: f32 = 1e-5;

pub struct RmsNorm;

impl Family for RmsNorm {
    fn name(&self) -> &'static str {
        "rmsnorm"
    }
    fn shape_dims(&self) -> &'static [&'static str] {
        &["rows", "dim"]
    }
    /// Per element: the add, square-and-accumulate (2), the scale by rsqrt, the weight.
    fn flops(&self, s: &Shape) -> f64 {
        5.0 * s.get("rows") as f64 * s.get("dim") as f64
    }
    /// x and h read once, the new residual and y written once, the weight read once.
    fn min_bytes(&self, s: &Shape, dt: DType) -> f64 {
        let (rows, dim) = (s.get("rows") as f64, s.get("dim") as f64);
        (4.0 * rows * dim + dim) * dt.bytes() as f64
    }
    fn entries(&self, variant: &str) -> Result<&'static [&'static str]> {
        support::single_variant_entries("rmsnorm", variant, &["rmsnorm_rows"])
    }
    fn validate(&self, _s: &Shape, _dt: DType) -> Result<()> {
        Ok(())
    }
    fn peer(&self) -> &'static str {
        "torch"
    }
    fn selftest_shapes(&self) -> &'static [&'static str] {
        // A one-element row; one row (decode); odd widths (scalar path); rows not a multiple
        // of rows-per-block; widths past a register capacity.
        &["1x1", "1x4096", "3x7", "8x4096", "5x1000", "17x4104", "33x4095", "130x256", "2x14336"]
    }
    fn problem(&self, gpu: &Gpu, s: &Shape, dt: DType) -> Result<Box<dyn Problem>> {
        self.validate(s, dt)?;
        Ok(Box::new(RmsNormProblem::new(gpu, s, dt)?))
    }
}

/// Device pointers of one rmsnorm_rows launch (contract in kernels/rmsnorm/rmsnorm_rows.cu):
/// x, w, y [rows, dim] / [dim]; `h` and `res` both 0 for the plain norm, else the fused
/// residual add r = x + h written to `res`.
#[derive(Debug, Clone, Copy)]
pub struct RmsNormIo {
    pub x: u64,
    pub h: u64,
    pub res: u64,
    pub y: u64,
    pub w: u64,
}

impl RmsNormIo {
    /// The argument list of rmsnorm_rows, which rmsnorm_reference shares: the pointers, then
    /// (eps, rows, dim).
    pub fn args(&self, eps: f32, rows: i64, dim: i64) -> Vec<Arg> {
        let mut args = Arg::ptrs([self.x, self.h, self.res, self.y, self.w]);
        args.push(Arg::F32(eps));
        args.extend(Arg::i32s([rows, dim]));
        args
    }
}

/// The one launch of rmsnorm_rows, built once from a variant's tunables; the sweep, the
/// selftest and the model all launch through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RmsNormLaunch {
    rows_per_block: i64,
    threads_per_row: i64,
    /// Elements one row may hold: THREADS_PER_ROW·VEC·CHUNKS.
    capacity: i64,
}

impl RmsNormLaunch {
    pub fn new(t: &Tunables) -> Result<RmsNormLaunch> {
        t.expect_variant("rmsnorm", "rmsnorm_rows")?;
        let tpr = t.get("THREADS_PER_ROW")?;
        Ok(RmsNormLaunch {
            rows_per_block: t.get("ROWS_PER_BLOCK")?,
            threads_per_row: tpr,
            capacity: tpr * t.get("VEC")? * t.get("CHUNKS")?,
        })
    }

    /// Grid and block for `rows` rows of `dim`; an error when a row does not fit.
    pub fn geometry(&self, rows: i64, dim: i64) -> Result<Geometry> {
        if dim > self.capacity {
            bail!(
                "rmsnorm_rows holds {} elements per row (THREADS_PER_ROW·VEC·CHUNKS); this shape has {dim}",
                self.capacity
            );
        }
        Ok(Geometry {
            grid: (checked_ceil_div(rows, self.rows_per_block)? as u32, 1, 1),
            block: ((self.rows_per_block * self.threads_per_row) as u32, 1, 1),
            smem: 0,
        })
    }

    /// # Safety
    /// `k` is the rmsnorm_rows entry of a module compiled with this launcher's tunables;
    /// x, y (and h, res unless 0) hold rows·dim elements and w dim, live until the launch ran.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn launch(&self, gpu: &Gpu, k: &Kernel, io: &RmsNormIo, rows: i64, dim: i64, eps: f32) -> Result<()> {
        let g = self.geometry(rows, dim)?;
        // SAFETY: the caller's contract covers the buffers; the argument list is the entry
        // point's signature (x, h, res, y, w, eps, rows, dim).
        unsafe { gpu.launch(k, g.grid, g.block, g.smem, &io.args(eps, rows, dim)) }
    }
}

pub struct RmsNormProblem {
    rows: i64,
    dim: i64,
    dt: DType,
    /// Residual stream in, branch output, weight.
    x: DevBuf,
    h: DevBuf,
    w: DevBuf,
    /// Fused form: new residual and normalized output, and their references.
    res: DevBuf,
    y: DevBuf,
    res_ref: DevBuf,
    y_ref: DevBuf,
    /// Plain form (h = NULL), run only on verification runs.
    y_plain: DevBuf,
    y_plain_ref: DevBuf,
    /// Set by `randomize`: the next `run` is a verification run.
    verify_pending: bool,
    reference: Kernel,
    launcher: LauncherCache<RmsNormLaunch>,
}

impl RmsNormProblem {
    pub fn new(gpu: &Gpu, s: &Shape, dt: DType) -> Result<RmsNormProblem> {
        let (rows, dim) = (s.get("rows"), s.get("dim"));
        let n = (rows * dim) as usize * dt.bytes();
        support::ensure_fits(gpu, "rmsnorm", s, 8 * n + dim as usize * dt.bytes())?;
        Ok(RmsNormProblem {
            rows,
            dim,
            dt,
            x: gpu.alloc(n)?,
            h: gpu.alloc(n)?,
            w: gpu.alloc(dim as usize * dt.bytes())?,
            res: gpu.alloc(n)?,
            y: gpu.alloc(n)?,
            res_ref: gpu.alloc(n)?,
            y_ref: gpu.alloc(n)?,
            y_plain: gpu.alloc(n)?,
            y_plain_ref: gpu.alloc(n)?,
            verify_pending: false,
            reference: support::family_reference_kernel(gpu, "rmsnorm", REFERENCE_SOURCE, dt)?,
            launcher: LauncherCache::default(),
        })
    }

    /// Buffers of the fused (with h) or plain form, for the candidate and the reference.
    fn io(&self, fused: bool, res: &DevBuf, y: &DevBuf) -> RmsNormIo {
        RmsNormIo {
            x: self.x.ptr,
            h: if fused { self.h.ptr } else { 0 },
            res: if fused { res.ptr } else { 0 },
            y: y.ptr,
            w: self.w.ptr,
        }
    }

    fn n(&self) -> usize {
        (self.rows * self.dim) as usize
    }
}

impl Problem for RmsNormProblem {
    fn randomize(&mut self, gpu: &Gpu, util: &Util, seed: u64) -> Result<()> {
        // The residual stream is larger than a layer's output, as in a real model.
        util.fill(gpu, &self.x, self.dt, self.n(), seed, 4.0)?;
        util.fill(gpu, &self.h, self.dt, self.n(), seed ^ 0x5eed_0001, 1.0)?;
        util.fill(gpu, &self.w, self.dt, self.dim as usize, seed ^ 0x5eed_0002, 1.0)?;
        let (r, grid) = (&self.reference, (self.rows as u32, 1, 1));
        let args = |fused, y| self.io(fused, &self.res_ref, y).args(EPS, self.rows, self.dim);
        // SAFETY: one warp per row over buffers of rows·dim elements (w: dim) allocated by
        // `new`; the arguments are rmsnorm_reference's (x, h, res, y, w, eps, rows, dim).
        unsafe {
            gpu.launch(r, grid, (32, 1, 1), 0, &args(true, &self.y_ref))?;
            gpu.launch(r, grid, (32, 1, 1), 0, &args(false, &self.y_plain_ref))?;
        }
        self.verify_pending = true;
        gpu.synchronize()
    }

    fn poison(&mut self, gpu: &Gpu, util: &Util) -> Result<()> {
        util.poison(gpu, &self.res)?;
        util.poison(gpu, &self.y)?;
        util.poison(gpu, &self.y_plain)
    }

    fn run(&mut self, gpu: &Gpu, variant: &str, kernels: &Kernels, p: &Params) -> Result<()> {
        let (l, k) = self.launcher.single_entry(variant, p, kernels, TEMPLATE_SOURCE, self.dt, RmsNormLaunch::new)?;
        if self.verify_pending {
            self.verify_pending = false;
            // SAFETY: every buffer holds rows·dim elements (w: dim), allocated by `new` for
            // this shape; `k` comes from the candidate's module, compiled with `p`.
            unsafe { l.launch(gpu, k, &self.io(false, &self.res, &self.y_plain), self.rows, self.dim, EPS)? };
        }
        // SAFETY: as above.
        unsafe { l.launch(gpu, k, &self.io(true, &self.res, &self.y), self.rows, self.dim, EPS) }
    }

    fn check(&mut self, gpu: &Gpu, util: &Util) -> Result<Comparison> {
        let n = self.n();
        Ok(support::worst(&[
            util.compare(gpu, &self.y, &self.y_ref, self.dt, n)?,
            util.compare(gpu, &self.res, &self.res_ref, self.dt, n)?,
            util.compare(gpu, &self.y_plain, &self.y_plain_ref, self.dt, n)?,
        ]))
    }

    fn run_peer(&mut self, _gpu: &Gpu) -> Result<Option<()>> {
        Ok(None) // F.rms_norm is measured by scripts/torch_peers.py
    }

    fn reference_vs_cpu(&mut self, gpu: &Gpu) -> Result<Option<f64>> {
        gpu.synchronize()?;
        let (rows, dim, dt, n) = (self.rows as usize, self.dim as usize, self.dt, self.n());
        let x = support::download_f64(&self.x, dt, n)?;
        let h = support::download_f64(&self.h, dt, n)?;
        let w = support::download_f64(&self.w, dt, dim)?;
        let got = [
            support::download_f64(&self.res_ref, dt, n)?,
            support::download_f64(&self.y_ref, dt, n)?,
            support::download_f64(&self.y_plain_ref, dt, n)?,
        ];
        let mut want = [vec![0.0; n], vec![0.0; n], vec![0.0; n]];
        let norm = |r: &[f64], out: &mut [f64]| {
            let ms = r.iter().map(|v| v * v).sum::<f64>() / dim as f64;
            let inv = 1.0 / (ms + EPS as f64).sqrt();
            for i in 0..dim {
                out[i] = r[i] * inv * w[i];
            }
        };
        for row in 0..rows {
            let span = row * dim..(row + 1) * dim;
            // The kernels round the sum to the element type before normalizing it.
            let r: Vec<f64> = span.clone().map(|i| support::round_to(x[i] + h[i], dt)).collect();
            want[0][span.clone()].copy_from_slice(&r);
            norm(&r, &mut want[1][span.clone()]);
            norm(&x[span.clone()], &mut want[2][span]);
        }
        Ok(Some(got.iter().zip(&want).map(|(g, w)| support::rel_err(g, w)).fold(0.0, f64::max)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        let s = Shape::parse("16384x4096", RmsNorm.shape_dims()).unwrap();
        assert_eq!(RmsNorm.min_bytes(&s, DType::BF16), (4.0 * 16384.0 * 4096.0 + 4096.0) * 2.0);
        assert_eq!(RmsNorm.flops(&s), 5.0 * 16384.0 * 4096.0);
        assert!(RmsNorm.entries("rmsnorm_rows").is_ok());
    }

    fn launcher(rpb: i64, tpr: i64, vec: i64, chunks: i64) -> Result<RmsNormLaunch> {
        let p = [("ROWS_PER_BLOCK", rpb), ("THREADS_PER_ROW", tpr), ("VEC", vec), ("CHUNKS", chunks)];
        RmsNormLaunch::new(&Tunables::new("rmsnorm_rows", p.iter().map(|(k, v)| (k.to_string(), *v)).collect()))
    }

    #[test]
    fn argument_list() {
        // rmsnorm_rows' and rmsnorm_reference's signature: x, h, res, y, w, eps, rows, dim.
        let io = RmsNormIo { x: 1, h: 2, res: 3, y: 4, w: 5 };
        let args = format!("{:?}", io.args(0.5, 6, 7));
        assert_eq!(args, "[Ptr(1), Ptr(2), Ptr(3), Ptr(4), Ptr(5), F32(0.5), I32(6), I32(7)]");
    }

    #[test]
    fn launch_geometry() {
        // Values of the launch before the launcher existed: grid ⌈rows/RPB⌉, block RPB·TPR.
        let g = launcher(4, 128, 8, 4).unwrap().geometry(130, 4096).unwrap();
        assert_eq!(g, Geometry { grid: (33, 1, 1), block: (512, 1, 1), smem: 0 });
        let g = launcher(1, 1024, 8, 2).unwrap().geometry(1, 14336).unwrap();
        assert_eq!(g, Geometry { grid: (1, 1, 1), block: (1024, 1, 1), smem: 0 });
        let e = launcher(2, 32, 4, 1).unwrap().geometry(3, 129).unwrap_err().to_string();
        assert!(e.contains("holds 128 elements per row"), "{e}");
        let e = RmsNormLaunch::new(&Tunables::new("rmsnorm_rows", Params::new())).unwrap_err().to_string();
        assert!(e.contains("variant rmsnorm_rows has no tunable"), "{e}");
    }
}
