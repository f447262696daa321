//! The tuned winners of one kernel, taken out of the tuned database for launchers outside
//! kernlab (the `kernlab export` command is `crate::export_cmd`) — a C/C++ header ([`super::export_header`]:
//! per shape and dtype the tunables as #defines and a table, and a function that picks the
//! nearest measured shape) and JSON with the tunables and, for kernels described in a sweep
//! file, the grid, block and shared memory of every launch at the measured shape.
//!
//! Only entries whose template source hash matches the current template are exported (the
//! others were measured on another version of the kernel), for one GPU.

use super::db::{TunedDb, TunedEntry};
use crate::gpu::cache;
use crate::kernels::{DType, Shape};
use crate::tune::space::{DeviceLimits, Sweep};
use crate::tune::user::{eval, UserFamily};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// One launch at the measured shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LaunchOut {
    pub entry: String,
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub smem: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportEntry {
    pub dtype: String,
    pub variant: String,
    /// Dimension values in the order of [`Exported::dims`].
    pub shape: Vec<i64>,
    pub params: BTreeMap<String, i64>,
    pub time_us: f64,
    pub peer_us: Option<f64>,
    /// For user kernels: each launch of one run, at this shape (recompute the grid for others).
    pub launches: Option<Vec<LaunchOut>>,
}

/// Everything the header and the JSON say.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exported {
    pub kernel: String,
    pub gpu: String,
    pub cc: String,
    pub nvrtc: String,
    pub dims: Vec<String>,
    /// Every tunable of any exported entry (the table's columns), sorted.
    pub params: Vec<String>,
    /// Launches per run (user kernels), 0 when the geometry is the family's own code.
    pub launches_per_run: usize,
    pub entries: Vec<ExportEntry>,
    /// Entries left out because their template changed since they were measured.
    pub stale: usize,
}

/// The kernel's current source hash per variant, its dims, and the user family if it is one.
fn current(name: &str) -> Result<(BTreeMap<String, String>, Vec<String>, Option<&'static std::sync::Arc<UserFamily>>)> {
    let fam = crate::tune::family(name)?;
    let dims: Vec<String> = fam.shape_dims().iter().map(|s| s.to_string()).collect();
    let user = crate::tune::user::lookup(name)?;
    let sweep = match user {
        Some(u) => u.sweep.clone(),
        None => Sweep::load(&crate::paths::sweep_file(name), fam.shape_dims())?,
    };
    let hashes = sweep.variants.iter().map(|v| (v.name.clone(), cache::source_hash(&v.source))).collect();
    Ok((hashes, dims, user))
}

/// Limits of a compute capability "9.0" (for evaluating a user kernel's geometry).
fn limits_of(cc: &str) -> Result<DeviceLimits> {
    DeviceLimits::for_arch(&format!("sm_{}", cc.replace('.', "")))
}

/// Selects and describes the winners of `name` in `db`.
pub fn collect(db: &TunedDb, name: &str, gpu: Option<&str>) -> Result<Exported> {
    let (hashes, dims, user) = current(name)?;
    let all: Vec<&TunedEntry> = db.entries.iter().filter(|e| e.kernel == name).collect();
    if all.is_empty() {
        bail!("the tuned database has no winners of {name}: run `kernlab sweep {name}` first (or pass --db)");
    }
    let gpus: BTreeSet<&str> =
        all.iter().map(|e| e.gpu.as_str()).filter(|g| gpu.is_none_or(|want| g.contains(want))).collect();
    let chosen = match (gpus.len(), gpu) {
        (1, _) => *gpus.iter().next().expect("one"),
        (0, Some(want)) => {
            let have: BTreeSet<&str> = all.iter().map(|e| e.gpu.as_str()).collect();
            bail!(
                "no winners of {name} on a GPU matching {want:?}; the database has {}",
                have.into_iter().collect::<Vec<_>>().join(", ")
            )
        }
        _ => bail!(
            "the database holds winners of {name} for several GPUs ({}); choose one with --gpu",
            gpus.into_iter().collect::<Vec<_>>().join(", ")
        ),
    };
    let on_gpu: Vec<&TunedEntry> = all.into_iter().filter(|e| e.gpu == chosen).collect();
    let fresh: Vec<&TunedEntry> =
        on_gpu.iter().copied().filter(|e| hashes.get(&e.variant) == Some(&e.source_hash)).collect();
    let stale = on_gpu.len() - fresh.len();
    if fresh.is_empty() {
        bail!("all {stale} winners of {name} on {chosen} were measured with another version of its templates; sweep it again");
    }
    let mut entries = Vec::new();
    for e in &fresh {
        let shape: Vec<i64> = dims.iter().map(|d| e.shape.get(d).copied().unwrap_or(0)).collect();
        let launches = match user {
            Some(u) => Some(geometry(u, e, &dims)?),
            None => None,
        };
        entries.push(ExportEntry {
            dtype: e.dtype.clone(),
            variant: e.variant.clone(),
            shape,
            params: e.params.clone(),
            time_us: e.time_us,
            peer_us: e.peer_us,
            launches,
        });
    }
    entries.sort_by(|a, b| (&a.dtype, &a.shape).cmp(&(&b.dtype, &b.shape)));
    let params: BTreeSet<String> = entries.iter().flat_map(|e| e.params.keys().cloned()).collect();
    Ok(Exported {
        kernel: name.to_string(),
        gpu: chosen.to_string(),
        cc: fresh[0].cc.clone(),
        nvrtc: fresh[0].nvrtc.clone(),
        dims,
        params: params.into_iter().collect(),
        launches_per_run: user.map(|u| u.desc.launches.len()).unwrap_or(0),
        entries,
        stale,
    })
}

/// The launches of a user kernel's winner at its shape, as the sweep ran them.
fn geometry(u: &UserFamily, e: &TunedEntry, dims: &[String]) -> Result<Vec<LaunchOut>> {
    let dt = DType::parse(&e.dtype)?;
    let label: Vec<String> = dims.iter().map(|d| e.shape.get(d).copied().unwrap_or(0).to_string()).collect();
    let refs: Vec<&str> = dims.iter().map(String::as_str).collect();
    let shape = Shape::parse(&label.join("x"), &refs)?;
    let v = u.sweep.variant(&e.variant).with_context(|| format!("{} has no variant {}", u.desc.name, e.variant))?;
    let t = crate::kernels::tunables::Tunables::from_template(&v.name, &v.source, dt, &e.params);
    let limits = limits_of(&e.cc)?;
    let env = u.desc.env(&shape, dt, &limits, Some((&v.name, t.values())));
    Ok(eval::ready(&env, &u.desc.launches, &limits)?
        .into_iter()
        .map(|r| LaunchOut {
            entry: r.entry,
            grid: [r.geometry.grid.0, r.geometry.grid.1, r.geometry.grid.2],
            block: [r.geometry.block.0, r.geometry.block.1, r.geometry.block.2],
            smem: r.geometry.smem,
        })
        .collect())
}
