//! Row softmax: y[r, :] = softmax(x[r, :]), bf16/fp16/fp32 in and out, fp32 math.
//! Peer: torch.softmax (measured by scripts/torch_peers.py; the roofline is the in-run bound).
//! Reference: kernels/softmax/reference.cu (one warp per row, three plain passes).
//!
//! Variants (launch contracts are in each template's header):
//! - `softmax_rows`: the row lives in registers (rows up to THREADS_PER_ROW·VEC·CHUNKS).
//! - `softmax_online`: rows of any length; one online pass for (max, sum), one writing pass,
//!   each row split over SPLITS blocks (a second small kernel merges the splits).
//!
//! The module also holds the few helpers the memory-bound families share (`support`).

use super::support;
use super::{checked_ceil_div, param, DType, Family, Kernels, Params, Problem, Shape};
use crate::gpu::device::{Arg, DevBuf, Gpu, Kernel};
use crate::gpu::util::{Comparison, Util};
use anyhow::{bail, Context, Result};

pub const REFERENCE_SOURCE: &str = include_str!("../../kernels/softmax/reference.cu");

/// Largest SPLITS the online variant may use (sizes the partial-statistics workspace).
pub const MAX_SPLITS: i64 = 64;

pub struct Softmax;

impl Family for Softmax {
    fn name(&self) -> &'static str {
        "softmax"
    }
    fn shape_dims(&self) -> &'static [&'static str] {
        &["rows", "cols"]
    }
    /// Per element: max, subtract, exp, add to the sum, scale: 5 operations.
    fn flops(&self, s: &Shape) -> f64 {
        5.0 * s.get("rows") as f64 * s.get("cols") as f64
    }
    /// x read once, y written once.
    fn min_bytes(&self, s: &Shape, dt: DType) -> f64 {
        2.0 * s.get("rows") as f64 * s.get("cols") as f64 * dt.bytes() as f64
    }
    fn entries(&self, variant: &str) -> Result<&'static [&'static str]> {
        Ok(match variant {
            "softmax_rows" => &["softmax_rows"],
            "softmax_online" => &["softmax_online", "softmax_online_finish"],
            other => bail!("the softmax family has no variant {other:?} (known: softmax_rows, softmax_online)"),
        })
    }
    fn validate(&self, s: &Shape, _dt: DType) -> Result<()> {
        if s.get("rows") * MAX_SPLITS > i32::MAX as i64 {
            bail!(
                "softmax {}: at most {} rows (the grid is rows × SPLITS blocks)",
                s.label(),
                i32::MAX as i64 / MAX_SPLITS
            );
        }
        Ok(())
    }
    fn peer(&self) -> &'static str {
        "torch"
    }
    fn selftest_shapes(&self) -> &'static [&'static str] {
        // One element; one row; odd widths (scalar path); widths just past a register
        // capacity; a long row split many ways; rows not a multiple of rows-per-block.
        &["1x1", "1x7", "3x33", "5x1000", "7x4096", "33x4104", "2x8191", "2x20000", "3x131075", "129x256"]
    }
    fn problem(&self, gpu: &Gpu, s: &Shape, dt: DType) -> Result<Box<dyn Problem>> {
        self.validate(s, dt)?;
        Ok(Box::new(SoftmaxProblem::new(gpu, s, dt)?))
    }
}

pub struct SoftmaxProblem {
    rows: i64,
    cols: i64,
    dt: DType,
    x: DevBuf,
    y: DevBuf,
    y_ref: DevBuf,
    ws: DevBuf,
    reference: Kernel,
}

impl SoftmaxProblem {
    pub fn new(gpu: &Gpu, s: &Shape, dt: DType) -> Result<SoftmaxProblem> {
        let (rows, cols) = (s.get("rows"), s.get("cols"));
        let n = (rows * cols) as usize * dt.bytes();
        let ws_bytes = (rows * MAX_SPLITS) as usize * 8;
        support::ensure_fits(gpu, "softmax", s, 3 * n + ws_bytes)?;
        Ok(SoftmaxProblem {
            rows,
            cols,
            dt,
            x: gpu.alloc(n)?,
            y: gpu.alloc(n)?,
            y_ref: gpu.alloc(n)?,
            ws: gpu.alloc(ws_bytes)?,
            reference: support::family_reference_kernel(gpu, "softmax", REFERENCE_SOURCE, dt)?,
        })
    }

    /// The argument list softmax_rows and softmax_reference share: (x, y, rows, cols).
    fn row_args(&self, y: &DevBuf) -> Vec<Arg> {
        let mut args = Arg::ptrs([self.x.ptr, y.ptr]);
        args.extend(Arg::i32s([self.rows, self.cols]));
        args
    }
}

impl Problem for SoftmaxProblem {
    fn randomize(&mut self, gpu: &Gpu, util: &Util, seed: u64) -> Result<()> {
        // Scale 8: row maxima far from 0 and probabilities spread over three orders of
        // magnitude, so a kernel that forgets the max or mis-sums shows.
        util.fill(gpu, &self.x, self.dt, (self.rows * self.cols) as usize, seed, 8.0)?;
        // SAFETY: one warp per row over buffers of rows·cols elements allocated by `new`; the
        // arguments are softmax_reference's (x, y, rows, cols).
        unsafe { gpu.launch(&self.reference, (self.rows as u32, 1, 1), (32, 1, 1), 0, &self.row_args(&self.y_ref))? };
        gpu.synchronize()
    }

    fn poison(&mut self, gpu: &Gpu, util: &Util) -> Result<()> {
        util.poison(gpu, &self.y)?;
        util.poison(gpu, &self.ws)
    }

    fn run(&mut self, gpu: &Gpu, variant: &str, kernels: &Kernels, p: &Params) -> Result<()> {
        let (rows, cols) = (self.rows, self.cols);
        let vec = param(p, "VEC")?;
        match variant {
            "softmax_rows" => {
                let (rpb, tpr, chunks) =
                    (param(p, "ROWS_PER_BLOCK")?, param(p, "THREADS_PER_ROW")?, param(p, "CHUNKS")?);
                if cols > tpr * vec * chunks {
                    bail!(
                        "softmax_rows holds {} columns per row (THREADS_PER_ROW·VEC·CHUNKS); this shape has {cols}",
                        tpr * vec * chunks
                    );
                }
                let k = kernels.get("softmax_rows").context("module lacks softmax_rows")?;
                let (grid, block) = ((checked_ceil_div(rows, rpb)? as u32, 1, 1), ((rpb * tpr) as u32, 1, 1));
                // SAFETY: the buffers were allocated by `new` for rows·cols elements; the kernel
                // comes from the candidate's module and the arguments follow its signature.
                unsafe { gpu.launch(k, grid, block, 0, &self.row_args(&self.y)) }
            }
            "softmax_online" => {
                let (threads, splits) = (param(p, "THREADS")?, param(p, "SPLITS")?);
                if !(1..=MAX_SPLITS).contains(&splits) {
                    bail!("SPLITS = {splits} is outside 1..={MAX_SPLITS} (the workspace size)");
                }
                // Both entries take (x, y, ws, rows, cols).
                let mut args = Arg::ptrs([self.x.ptr, self.y.ptr, self.ws.ptr]);
                args.extend(Arg::i32s([rows, cols]));
                let grid = ((rows * splits) as u32, 1, 1);
                let block = (threads as u32, 1, 1);
                let online = kernels.get("softmax_online").context("module lacks softmax_online")?;
                // SAFETY: the buffers were allocated by `new` for rows·cols elements (the workspace for
                // MAX_SPLITS ≥ SPLITS partial rows); the kernels come from the candidate's module and the
                // arguments follow their signature.
                unsafe { gpu.launch(online, grid, block, 0, &args)? };
                if splits > 1 {
                    let fin = kernels.get("softmax_online_finish").context("module lacks softmax_online_finish")?;
                    // SAFETY: as above.
                    unsafe { gpu.launch(fin, grid, block, 0, &args)? };
                }
                Ok(())
            }
            other => bail!("the softmax family has no variant {other:?}"),
        }
    }

    fn check(&mut self, gpu: &Gpu, util: &Util) -> Result<Comparison> {
        util.compare(gpu, &self.y, &self.y_ref, self.dt, (self.rows * self.cols) as usize)
    }

    fn run_peer(&mut self, _gpu: &Gpu) -> Result<Option<()>> {
        Ok(None) // torch.softmax is measured by scripts/torch_peers.py
    }

    fn reference_vs_cpu(&mut self, gpu: &Gpu) -> Result<Option<f64>> {
        gpu.synchronize()?;
        let (rows, cols) = (self.rows as usize, self.cols as usize);
        let x = support::download_f64(&self.x, self.dt, rows * cols)?;
        let y = support::download_f64(&self.y_ref, self.dt, rows * cols)?;
        let mut want = vec![0.0f64; rows * cols];
        for r in 0..rows {
            let row = &x[r * cols..(r + 1) * cols];
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
            for (c, v) in row.iter().enumerate() {
                want[r * cols + c] = (v - m).exp() / s;
            }
        }
        Ok(Some(support::rel_err(&y, &want)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_variants() {
        let s = Shape::parse("32768x4096", Softmax.shape_dims()).unwrap();
        assert_eq!(Softmax.min_bytes(&s, DType::BF16), 2.0 * 32768.0 * 4096.0 * 2.0);
        assert_eq!(Softmax.flops(&s), 5.0 * 32768.0 * 4096.0);
        assert_eq!(Softmax.entries("softmax_online").unwrap().len(), 2);
        assert!(Softmax.entries("softmax_fast").is_err());
    }

    #[test]
    fn support_rounding_and_errors() {
        assert_eq!(support::round_to(1.0 + 1.0 / 512.0, DType::BF16), 1.0);
        assert_eq!(support::rel_err(&[1.0, 2.0], &[1.0, 2.5]), 0.5 / 2.5);
        assert!(support::rel_err(&[f64::NAN], &[1.0]).is_infinite());
        let a = Comparison { max_abs_diff: 0.1, max_abs_ref: 1.0, non_finite: 0 };
        let b = Comparison { max_abs_diff: 0.3, max_abs_ref: 1.0, non_finite: 2 };
        let w = support::worst(&[a, b]);
        assert_eq!((w.max_abs_diff, w.non_finite), (0.3, 2));
    }
}
