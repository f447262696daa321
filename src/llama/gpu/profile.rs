//! `--profile`: time per op kind with CUDA events, printed like PyTorch profiler's table,
//! and an NVTX range around each op (named by its kind) so Nsight Systems shows the same
//! breakdown on its timeline (`nsys profile kernlab e2e --profile`). NVTX calls do nothing
//! unless a tool is attached.
//!
//! Each op is bracketed by two events on the stream. Events are pooled and read back after
//! each step (the step ends in a synchronization anyway), so a long run needs no more events
//! than one step has ops. The brackets add a little launch overhead, which is why the
//! benchmark profiles a separate run and never the timed ones.

use super::ops::OpKind;
use crate::gpu::device::Gpu;
use anyhow::Result;
use cudarc::driver::{sys, CudaEvent};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OpTotal {
    pub calls: u64,
    pub total_ms: f64,
}

#[derive(Default)]
pub struct Profiler {
    pool: Vec<CudaEvent>,
    used: usize,
    open: Vec<(OpKind, usize)>,
    pub totals: BTreeMap<OpKind, OpTotal>,
}

impl Profiler {
    fn event(&mut self, gpu: &Gpu) -> Result<usize> {
        if self.used == self.pool.len() {
            self.pool.push(gpu.ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))?);
        }
        self.pool[self.used].record(&gpu.stream)?;
        self.used += 1;
        Ok(self.used - 1)
    }

    /// Marks the start of an op.
    pub fn start(&mut self, gpu: &Gpu, kind: OpKind) -> Result<usize> {
        nvtx::range_push!("{}", kind.name());
        self.event(gpu)
    }

    /// Marks the end of the op started at `start`.
    pub fn stop(&mut self, gpu: &Gpu, kind: OpKind, start: usize) -> Result<()> {
        nvtx::range_pop!();
        let e = self.event(gpu)?;
        debug_assert_eq!(e, start + 1);
        self.open.push((kind, start));
        Ok(())
    }

    /// Reads the step's events (after the stream was synchronized) into the totals.
    pub fn collect(&mut self) -> Result<()> {
        for (kind, s) in self.open.drain(..) {
            let ms = self.pool[s].elapsed_ms(&self.pool[s + 1])? as f64;
            let t = self.totals.entry(kind).or_default();
            t.calls += 1;
            t.total_ms += ms;
        }
        self.used = 0;
        Ok(())
    }
}

/// The profile table: one row per op kind, most expensive first.
pub fn format_profile(totals: &BTreeMap<OpKind, OpTotal>) -> String {
    let sum: f64 = totals.values().map(|t| t.total_ms).sum();
    let mut rows: Vec<(&OpKind, &OpTotal)> = totals.iter().collect();
    rows.sort_by(|a, b| b.1.total_ms.total_cmp(&a.1.total_ms).then(a.0.cmp(b.0)));
    let line = "-".repeat(80);
    let mut s =
        format!("{line}\n{:<24}{:>10}{:>14}{:>14}{:>16}\n{line}\n", "Name", "Calls", "GPU total", "GPU %", "GPU avg");
    for (k, t) in rows {
        let avg_us = if t.calls > 0 { t.total_ms * 1e3 / t.calls as f64 } else { 0.0 };
        let pct = if sum > 0.0 { 100.0 * t.total_ms / sum } else { 0.0 };
        s += &format!("{:<24}{:>10}{:>11.3} ms{:>13.1}%{:>13.2} us\n", k.name(), t.calls, t.total_ms, pct, avg_us);
    }
    s += &format!("{line}\nGPU time total: {sum:.3} ms\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_table_sorts_and_sums() {
        let mut t = BTreeMap::new();
        t.insert(OpKind::RmsNorm, OpTotal { calls: 10, total_ms: 1.0 });
        t.insert(OpKind::GemmGateUp, OpTotal { calls: 5, total_ms: 3.0 });
        let s = format_profile(&t);
        let gate = s.find("gemm gate_up").unwrap();
        let norm = s.find("rmsnorm").unwrap();
        assert!(gate < norm, "most expensive first:\n{s}");
        assert!(s.contains("75.0%"), "{s}");
        assert!(s.contains("100.00 us"), "{s}");
        assert!(s.contains("GPU time total: 4.000 ms"), "{s}");
    }
}
