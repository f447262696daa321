//! Kernels described in a sweep file (`[kernel]`), tuned like the built-in families.
//!
//! A sweep file with a `[kernel]` table names a kernel kernlab does not know: its shape's
//! dimensions, its buffers and scalars, its launches, a reference (another template, or a
//! cuBLAS GEMM) and optionally a peer; its `[[variant]]`s are the user's templates and
//! tunables as for any family (see docs/user-kernels.md for the schema). [`UserFamily`]
//! implements [`Family`] from that description, so the runner, the worker process, the CSV,
//! the tuned database and the roofline treat it as they treat gemm.
//!
//! The worker is another process: it finds the family again by name through
//! [`lookup`], which reads the sweep files registered in this process (passed on to child
//! processes in `KERNLAB_USER_SWEEPS`) and those found in `sweeps/` and `examples/`.

pub mod check;
pub mod desc;
pub mod eval;
pub mod problem;
pub mod schema;
pub mod signature;
pub mod sweep_cli;

use crate::gpu::device::Gpu;
use crate::kernels::{DType, Family, Problem, Shape};
use crate::tune::space::Sweep;
use anyhow::{anyhow, bail, Context, Result};
use desc::Description;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Environment variable holding the registered user sweep files, for the worker processes.
pub const ENV_SWEEPS: &str = "KERNLAB_USER_SWEEPS";

/// A kernel described in a sweep file.
pub struct UserFamily {
    pub desc: Description,
    pub sweep: Sweep,
    name: &'static str,
    dims: &'static [&'static str],
    entries: &'static [&'static str],
    selftest: &'static [&'static str],
    peer: &'static str,
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn leak_all(v: &[String]) -> &'static [&'static str] {
    Box::leak(v.iter().map(|s| leak(s)).collect::<Vec<_>>().into_boxed_slice())
}

impl UserFamily {
    /// Reads a sweep file with a `[kernel]` table and checks its templates' entry points
    /// and argument lists. Nothing touches a GPU.
    pub fn load(path: &Path) -> Result<UserFamily> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading sweep file {}", path.display()))?;
        let raw: schema::RawFile = toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let dims = match &raw.kernel {
            Some(k) => k.get_ref().dims.get_ref().clone(),
            None => bail!("{}: no [kernel] table: this is a sweep of a built-in family", path.display()),
        };
        if crate::kernels::builtin(raw.family.get_ref()).is_some() {
            bail!(
                "{}:{}: {:?} is a built-in family; a sweep file with a [kernel] table needs a name of its own",
                path.display(),
                desc::line_at(&text, raw.family.span().start),
                raw.family.get_ref()
            );
        }
        let dim_refs: Vec<&str> = dims.iter().map(String::as_str).collect();
        let sweep = Sweep::parse(path, &text, &dim_refs)?;
        let desc = desc::load(path, &text, &sweep)?;
        check::check_sources(&desc, &sweep)?;
        let selftest = if desc.selftest_shapes.is_empty() { &sweep.shapes } else { &desc.selftest_shapes };
        Ok(UserFamily {
            name: leak(&desc.name),
            dims: leak_all(&dims),
            entries: leak_all(&desc.entries),
            selftest: leak_all(selftest),
            peer: leak(desc.peer.as_ref().map(|p| p.0.as_str()).unwrap_or("none")),
            desc,
            sweep,
        })
    }
}

impl Family for Arc<UserFamily> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn shape_dims(&self) -> &'static [&'static str] {
        self.dims
    }
    fn flops(&self, s: &Shape) -> f64 {
        self.desc.flops_of(s, DType::F32).unwrap_or(f64::NAN)
    }
    fn min_bytes(&self, s: &Shape, dt: DType) -> f64 {
        self.desc.min_bytes_of(s, dt).unwrap_or(f64::NAN)
    }
    fn entries(&self, variant: &str) -> Result<&'static [&'static str]> {
        match self.sweep.variant(variant) {
            Some(_) => Ok(self.entries),
            None => bail!("{} ({}) has no variant {variant:?}", self.name, self.desc.path.display()),
        }
    }
    fn validate(&self, s: &Shape, dt: DType) -> Result<()> {
        let limits = crate::tune::space::DeviceLimits { max_smem: 0, max_threads: 0, sm_count: 0, cc: 0 };
        let env = self.desc.env(s, dt, &limits, None);
        for (i, b) in self.desc.buffers.iter().enumerate() {
            if !b.uses_tunables() {
                env.buffer_bytes(i, dt)?;
            }
        }
        self.desc.flops_of(s, dt)?;
        self.desc.min_bytes_of(s, dt)?;
        Ok(())
    }
    fn peer(&self) -> &'static str {
        self.peer
    }
    fn problem(&self, gpu: &Gpu, s: &Shape, dt: DType) -> Result<Box<dyn Problem>> {
        self.validate(s, dt)?;
        Ok(Box::new(problem::UserProblem::new(self.clone(), gpu, s, dt)?))
    }
    fn selftest_shapes(&self) -> &'static [&'static str] {
        self.selftest
    }
}

/// The user families loaded in this process, with the files they came from.
static REGISTRY: Mutex<Vec<(PathBuf, &'static Arc<UserFamily>)>> = Mutex::new(Vec::new());

/// Loads a user sweep file once per process and makes its kernel findable by name, here and
/// in the worker processes started after this call.
pub fn register(path: &Path) -> Result<&'static Arc<UserFamily>> {
    let canon = path.canonicalize().with_context(|| format!("reading sweep file {}", path.display()))?;
    let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, f)) = reg.iter().find(|(p, _)| *p == canon) {
        return Ok(f);
    }
    let fam = UserFamily::load(&canon)?;
    if let Some((p, _)) = reg.iter().find(|(_, f)| f.name == fam.name) {
        bail!(
            "{}: kernel {:?} is already defined by {}; give one of them another name",
            path.display(),
            fam.name,
            p.display()
        );
    }
    let fam: &'static Arc<UserFamily> = Box::leak(Box::new(Arc::new(fam)));
    reg.push((canon, fam));
    let paths = std::env::join_paths(reg.iter().map(|(p, _)| p.clone()))?;
    std::env::set_var(ENV_SWEEPS, paths);
    Ok(fam)
}

/// The user kernel called `name`: registered in this process, listed in
/// `KERNLAB_USER_SWEEPS`, or found in `sweeps/` or `examples/`. Errors only when the file
/// that defines it is broken.
pub fn lookup(name: &str) -> Result<Option<&'static Arc<UserFamily>>> {
    {
        let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, f)) = reg.iter().find(|(_, f)| f.name == name) {
            return Ok(Some(f));
        }
    }
    let from_env: Vec<PathBuf> =
        std::env::var_os(ENV_SWEEPS).map(|v| std::env::split_paths(&v).collect()).unwrap_or_default();
    let found = discover();
    for p in from_env.iter().chain(found.iter().map(|(p, _)| p)) {
        if kernel_name(p).as_deref() == Some(name) {
            return register(p).map(Some);
        }
    }
    Ok(None)
}

/// The kernel a user sweep file names, if it is one (has a `[kernel]` table).
pub fn kernel_name(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: toml::Value = toml::from_str(&text).ok()?;
    v.get("kernel")?;
    v.get("family")?.as_str().map(String::from)
}

/// User sweep files in the project's `sweeps/` and `examples/` (one folder deep), with the
/// kernel each names, sorted by path.
pub fn discover() -> Vec<(PathBuf, String)> {
    let root = crate::paths::project_root();
    let mut files = Vec::new();
    for dir in [root.join("sweeps"), root.join("examples")] {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                if let Ok(inner) = std::fs::read_dir(&p) {
                    files.extend(inner.flatten().map(|e| e.path()));
                }
            } else {
                files.push(p);
            }
        }
    }
    let mut out: Vec<(PathBuf, String)> = files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter_map(|p| kernel_name(&p).map(|n| (p, n)))
        .collect();
    out.sort();
    out
}
