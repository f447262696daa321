//! What `kernlab sweep` does for a kernel described in a sweep file before the runner
//! takes over: find the file (a path, or a kernel name found in sweeps/ or examples/),
//! register the kernel so the worker processes find it, and check every planned shape and
//! candidate (buffers, scalars, grid, block, shared memory) so a bad description fails at
//! once with its file and line instead of as a row of launch errors.

use super::{check, register, UserFamily};
use crate::gpu::cache::{self, ModuleCache};
use crate::kernels::DType;
use crate::tune::space::{DeviceLimits, Sweep};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The family name and sweep file `kernlab sweep <arg> [--file F]` means. `arg` may be a
/// built-in family, a user kernel's name, or a path to a sweep file; a user kernel's file is
/// registered. `None` for the file when nothing was found (the caller's error lists what is).
pub fn resolve(arg: &str, file: Option<&Path>) -> Result<(String, Option<PathBuf>)> {
    let as_path = Path::new(arg);
    let path = match file {
        Some(f) => Some(f.to_path_buf()),
        None if arg.ends_with(".toml") && as_path.is_file() => Some(as_path.to_path_buf()),
        None => {
            let default = crate::paths::sweep_file(arg);
            if default.is_file() {
                Some(default)
            } else {
                super::lookup(arg)?.map(|f| f.desc.path.clone())
            }
        }
    };
    let Some(path) = path else { return Ok((arg.to_string(), None)) };
    match super::kernel_name(&path) {
        Some(name) => {
            register(&path)?;
            // A name that differs from the file's is left for the family check to report.
            let name = if !arg.ends_with(".toml") && arg != name { arg.to_string() } else { name };
            Ok((name, Some(path)))
        }
        None => Ok((arg.to_string(), Some(path))),
    }
}

/// The registered user kernel of this name, if it is one.
pub fn registered(name: &str) -> Option<&'static Arc<UserFamily>> {
    super::lookup(name).ok().flatten()
}

/// Limits for checking a real sweep before its worker has opened the GPU: CUDA's own grid
/// and block limits and the largest shared memory of any current architecture (the
/// device's own limits apply again when each candidate launches).
pub fn generous_limits() -> DeviceLimits {
    DeviceLimits { max_smem: 232_448, max_threads: 1024, sm_count: 132, cc: 90 }
}

/// Checks every planned shape and candidate; with `compile_arch`, also compiles the
/// reference and peer templates for it (the dry run compiles the variants). Prints one line.
pub fn preflight(
    fam: &Arc<UserFamily>,
    sweep: &Sweep,
    shapes: &[String],
    dtypes: &[String],
    limits: &DeviceLimits,
    compile_arch: Option<&str>,
) -> Result<()> {
    let plan = crate::tune::runner::plan_shapes(fam, sweep, shapes, dtypes)?;
    let n = check::check_plan(&fam.desc, sweep, &plan, limits)?;
    if let Some(arch) = compile_arch {
        let cache = ModuleCache::open(&cache::default_dir())?;
        let mut dts: Vec<DType> = plan.iter().map(|(d, _)| *d).collect();
        dts.dedup();
        for dt in dts {
            check::compile_helpers(&fam.desc, dt, arch, &cache)?;
        }
    }
    println!(
        "{}: {} launches per run, {} buffers, {n} candidate(s) checked over {} shape(s): grids, blocks, shared memory and buffer sizes within limits",
        fam.desc.path.display(),
        fam.desc.launches.len(),
        fam.desc.buffers.len(),
        plan.len()
    );
    Ok(())
}
