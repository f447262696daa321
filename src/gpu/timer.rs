//! Timing with CUDA events: warm-up, many repetitions, L2 flushed before each one.
//!
//! Each repetition is bracketed by its own pair of events, and a memset of a buffer twice the
//! size of L2 runs before it (outside the events), so weights that would come from DRAM in
//! real use are not timed from cache. The median and the 20–80 band are reported.

use super::device::{DevBuf, Gpu};
use crate::tune::record::Timing;
use anyhow::Result;
use cudarc::driver::sys;

pub struct Timer {
    flush: DevBuf,
    /// Total time to spend timing one candidate, roughly.
    pub target_ms: f64,
    pub min_reps: usize,
    pub max_reps: usize,
}

impl Timer {
    pub fn new(gpu: &Gpu) -> Result<Timer> {
        let bytes = ((gpu.props.l2_bytes as usize) * 2).max(64 << 20);
        Ok(Timer { flush: gpu.alloc(bytes)?, target_ms: 150.0, min_reps: 10, max_reps: 300 })
    }

    fn flush_l2(&self, gpu: &Gpu) -> Result<()> {
        // SAFETY: the flush buffer holds `bytes` bytes; the memset is ordered on the stream.
        unsafe { cudarc::driver::result::memset_d8_async(self.flush.ptr, 0, self.flush.bytes, gpu.stream.cu_stream()) }
            .map_err(|e| anyhow::anyhow!("L2 flush failed: {e:?}"))
    }

    /// Times `launch` (one call = one run of the kernel or kernels being measured).
    pub fn time(&self, gpu: &Gpu, mut launch: impl FnMut() -> Result<()>) -> Result<Timing> {
        // Warm-up: module load, first-touch and clocks stay out of the numbers.
        for _ in 0..3 {
            launch()?;
        }
        gpu.synchronize()?;
        let est = {
            let a = gpu.ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))?;
            let b = gpu.ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))?;
            a.record(&gpu.stream)?;
            for _ in 0..5 {
                launch()?;
            }
            b.record(&gpu.stream)?;
            b.synchronize()?;
            (a.elapsed_ms(&b)? as f64 / 5.0).max(1e-3)
        };
        // Each rep also pays for the flush (~2×L2 at DRAM speed).
        let flush_ms = self.flush.bytes as f64 / 2.0e9;
        let reps = ((self.target_ms / (est + flush_ms)) as usize).clamp(self.min_reps, self.max_reps);
        let mut events = Vec::with_capacity(reps * 2);
        for _ in 0..reps * 2 {
            events.push(gpu.ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))?);
        }
        for r in 0..reps {
            self.flush_l2(gpu)?;
            events[2 * r].record(&gpu.stream)?;
            launch()?;
            events[2 * r + 1].record(&gpu.stream)?;
        }
        gpu.synchronize()?;
        let mut samples = Vec::with_capacity(reps);
        for r in 0..reps {
            samples.push(events[2 * r].elapsed_ms(&events[2 * r + 1])? as f64 * 1e3);
        }
        Ok(Timing::from_samples(&samples).expect("at least min_reps samples"))
    }
}
