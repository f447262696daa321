//! The DRAM bound of a decode step, defined as the roofline defines it: the bytes a step
//! must read (weights + KV cache) at the roofline's DRAM ceiling, which is the higher of
//! the measured copy (read + write) and read-only bandwidths (`Ceilings::dram_gbps`). The
//! ceilings saved by `kernlab roofline` are used when present, so e2e's "% of DRAM bound"
//! and the roofline's "% of bound" divide by the same number; otherwise the same copy and
//! read kernels measure them now.

use crate::gpu::cache::ModuleCache;
use crate::gpu::device::Gpu;
use crate::measure::{self, keys, micro};
use crate::roofline::Ceilings;
use anyhow::{Context, Result};
use serde::Serialize;

/// The bandwidth the e2e bound divides by, and where it came from.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DramBound {
    /// The roofline's DRAM ceiling: max(copy, read), GB/s.
    pub gb_s: f64,
    pub copy_gb_s: f64,
    pub read_gb_s: f64,
    /// "saved ceilings <file> (measured <time>)" or "measured now".
    pub source: String,
}

impl DramBound {
    pub fn from_ceilings(c: &Ceilings, source: String) -> DramBound {
        DramBound { gb_s: c.dram_gbps(), copy_gb_s: c.dram_copy_gbps, read_gb_s: c.dram_read_gbps, source }
    }

    /// One line for the e2e output.
    pub fn line(&self) -> String {
        format!(
            "DRAM bound: {:.0} GB/s, the roofline's DRAM ceiling = max(copy {:.0}, read {:.0}) from {}",
            self.gb_s, self.copy_gb_s, self.read_gb_s, self.source
        )
    }
}

/// This GPU's DRAM ceiling: saved by `kernlab roofline`, or measured now with its kernels.
pub fn dram_bound(gpu: &Gpu, cache: &ModuleCache) -> Result<DramBound> {
    let props = &gpu.props;
    if let Some(c) = crate::tune::bound::load_ceilings_for(props) {
        let path = crate::tune::bound::ceilings_path_for(props);
        return Ok(DramBound::from_ceilings(&c, format!("{} (measured {})", path.display(), c.measured_at)));
    }
    let timer = crate::gpu::timer::Timer::new(gpu)?;
    let kernels = micro::MicroKernels::load(gpu, cache)?;
    let mut c = Ceilings::default();
    for f in micro::memory(gpu, &timer, &kernels).context("measuring the DRAM ceiling for the e2e bound")? {
        measure::record(&mut c, &f);
    }
    c.dram_copy_gbps = c.peers.get(keys::COPY).copied().unwrap_or(0.0);
    c.dram_read_gbps = c.peers.get(keys::READ).copied().unwrap_or(0.0);
    Ok(DramBound::from_ceilings(&c, "the roofline's copy and read kernels, measured now (no saved ceilings)".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_the_roofline_dram_slope() {
        let c = Ceilings { dram_copy_gbps: 4000.0, dram_read_gbps: 4400.0, ..Default::default() };
        let b = DramBound::from_ceilings(&c, "x".into());
        assert_eq!(b.gb_s, c.dram_gbps());
        assert_eq!(b.gb_s, 4400.0);
        assert!(b.line().contains("max(copy 4000, read 4400)"), "{}", b.line());
    }
}
