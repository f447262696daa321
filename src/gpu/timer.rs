//! Timing with CUDA events: warm-up, many repetitions, L2 flushed before each one.
//!
//! Each repetition is bracketed by its own pair of events, and a read of a buffer twice the
//! size of L2 runs before it (outside the events), so weights that would come from DRAM in
//! real use are not timed from cache. The flush reads rather than writes: a memset would leave
//! dirty lines whose write-back competes with the timed kernel. The median and the 20–80
//! band are reported.

use super::cache::{self, ModuleCache};
use super::device::{Arg, DevBuf, Gpu, Kernel};
use super::nvrtc::CompileRequest;
use crate::core::Timing;
use anyhow::Result;
use cudarc::driver::sys;

pub struct Timer {
    flush: DevBuf,
    flush_kernel: Kernel,
    sink: DevBuf,
    /// Total time to spend timing one candidate, roughly.
    pub target_ms: f64,
    pub min_reps: usize,
    pub max_reps: usize,
}

impl Timer {
    pub fn new(gpu: &Gpu) -> Result<Timer> {
        let bytes = ((gpu.props.l2_bytes as usize) * 2).max(64 << 20);
        let cache = ModuleCache::open(&cache::default_dir())?;
        let req = CompileRequest {
            name: "kernels/util/util.cu".into(),
            source: super::util::UTIL_SOURCE.into(),
            defines: Default::default(),
            arch: gpu.props.arch(),
        };
        let m = cache.get_or_compile(&req)?;
        let flush = gpu.alloc(bytes)?;
        // SAFETY: the buffer holds `bytes` bytes; contents only need to be defined.
        unsafe { cudarc::driver::result::memset_d8_async(flush.ptr, 0, bytes, gpu.stream.cu_stream()) }
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        Ok(Timer {
            flush,
            flush_kernel: gpu.load(&m.cubin, "l2_flush_read")?,
            sink: gpu.alloc(16)?,
            target_ms: 100.0,
            min_reps: 10,
            max_reps: 300,
        })
    }

    /// Evicts the timed kernel's data from L2 (outside the timed region).
    pub fn flush_l2(&self, gpu: &Gpu) -> Result<()> {
        let words = self.flush.bytes / 16;
        let blocks = (gpu.props.sm_count.max(1) as u32) * 4;
        // SAFETY: the flush buffer was allocated by `Timer::new` for the L2-sized grid this launch covers;
        // the arguments are util.cu's flush entry's.
        unsafe {
            gpu.launch(
                &self.flush_kernel,
                (blocks, 1, 1),
                (1024, 1, 1),
                0,
                &[self.flush.arg(), Arg::U64(words as u64), self.sink.arg()],
            )
        }
    }

    /// Times `launch` (one call = one run of the kernel or kernels being measured).
    pub fn time(&self, gpu: &Gpu, launch: impl FnMut() -> Result<()>) -> Result<Timing> {
        self.time_observed(gpu, launch, || {})
    }

    /// As [`Timer::time`], calling `while_running` once all timed runs are queued and
    /// before waiting for them: the GPU is busy with them then (clocks, power).
    pub fn time_observed(
        &self,
        gpu: &Gpu,
        mut launch: impl FnMut() -> Result<()>,
        mut while_running: impl FnMut(),
    ) -> Result<Timing> {
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
        let flush_ms = self.flush.bytes as f64 / 2.0e9; // ~2 TB/s, a safe underestimate
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
        while_running();
        gpu.synchronize()?;
        let mut samples = Vec::with_capacity(reps);
        for r in 0..reps {
            samples.push(events[2 * r].elapsed_ms(&events[2 * r + 1])? as f64 * 1e3);
        }
        Ok(Timing::from_samples(&samples).expect("at least min_reps samples"))
    }
}
