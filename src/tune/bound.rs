//! Where a measurement stands against the hardware: the saved ceilings of a GPU (one file
//! per GPU beside the tuned database, `reports/ceilings-<gpu slug>-sm<cc>.json`) and a sweep
//! row's percentage of its roofline bound. Below the commands: the sweep runner, `kernlab
//! devices` and `kernlab roofline` all read the ceilings through here.

use crate::gpu::device::DeviceProps;
use crate::roofline::{ceilings_file_name, Ceilings};
use crate::tune::record::CandidateRecord;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Where the ceilings of a GPU are kept: beside the tuned database, in reports/.
pub fn ceilings_path_for(props: &DeviceProps) -> PathBuf {
    crate::paths::reports_dir().join(ceilings_file_name(&props.name, &props.cc()))
}

/// The saved ceilings of this GPU; `Ok(None)` when none were measured yet. A file that
/// exists but does not parse, belongs to another GPU or holds unusable values is an error.
pub fn try_load_ceilings_for(props: &DeviceProps) -> Result<Option<Ceilings>> {
    try_load_ceilings_from(&crate::paths::reports_dir(), props)
}

/// [`try_load_ceilings_for`] in a given directory.
pub fn try_load_ceilings_from(dir: &Path, props: &DeviceProps) -> Result<Option<Ceilings>> {
    let path = dir.join(ceilings_file_name(&props.name, &props.cc()));
    if !path.exists() {
        return Ok(None);
    }
    let c = Ceilings::load(&path)?;
    if c.gpu != props.name || c.compute_capability != props.cc() {
        bail!(
            "{} holds the ceilings of {} (cc {}), not of {} (cc {})",
            path.display(),
            c.gpu,
            c.compute_capability,
            props.name,
            props.cc()
        );
    }
    c.validate().with_context(|| format!("{}", path.display()))?;
    Ok(Some(c))
}

/// The saved ceilings of this GPU, if usable: for `kernlab devices` and for the sweep
/// runner's `pct_of_bound` column (see [`fill_pct_of_bound`]).
pub fn load_ceilings_for(props: &DeviceProps) -> Option<Ceilings> {
    try_load_ceilings_for(props).ok().flatten()
}

/// Fills a measured row's `pct_of_bound` from the ceilings (DRAM slope, compute roof of its
/// dtype), when the row has a time and a rate.
pub fn fill_pct_of_bound(rec: &mut CandidateRecord, c: &Ceilings) {
    let (Some(t), Some(i)) = (rec.median_us(), rec.intensity) else { return };
    let s = t * 1e-6;
    let flops = match (rec.tflops, rec.gbps) {
        (Some(tf), _) => tf * 1e12 * s,
        (None, Some(g)) => g * 1e9 * s * i,
        _ => return,
    };
    let bytes = if i > 0.0 { flops / i } else { rec.gbps.map(|g| g * 1e9 * s).unwrap_or(0.0) };
    rec.pct_of_bound = c.roof_for_dtype(&rec.dtype).pct_of_bound(flops, bytes, s);
}
