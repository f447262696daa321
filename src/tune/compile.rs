//! Compiling a sweep's candidates on a CPU thread pool while the GPU measures.
//!
//! Every distinct (variant, tunables, dtype) is one NVRTC job, shared by all shapes. Jobs
//! start at once on rayon's pool; the runner waits only for the one it needs next.

use crate::gpu::cache::ModuleCache;
use crate::gpu::nvrtc::{CompileRequest, KernelResources};
use crate::kernels::DType;
use crate::tune::space::{Candidate, Sweep};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

/// What the runner needs from a compiled candidate.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub cubin_path: PathBuf,
    pub resources: BTreeMap<String, KernelResources>,
    pub compile_ms: f64,
    pub cached: bool,
}

pub type CompileKey = (String, BTreeMap<String, i64>, DType);

/// The compile request of one candidate.
pub fn request(sweep: &Sweep, c: &Candidate, dt: DType, arch: &str) -> CompileRequest {
    let v = sweep.variant(&c.variant).expect("candidate of this sweep");
    let mut defines = dt.defines();
    for (k, val) in &c.params {
        defines.insert(k.clone(), val.to_string());
    }
    CompileRequest { name: v.file.display().to_string(), source: v.source.clone(), defines, arch: arch.to_string() }
}

type Slot = Option<Result<Compiled, String>>;

pub struct CompilePool {
    state: Arc<(Mutex<HashMap<CompileKey, Slot>>, Condvar)>,
}

impl CompilePool {
    /// Starts compiling every job in the background.
    pub fn start(sweep: &Sweep, jobs: Vec<(Candidate, DType)>, arch: &str, cache: &ModuleCache) -> CompilePool {
        let pool = CompilePool { state: Arc::new((Mutex::new(HashMap::new()), Condvar::new())) };
        pool.submit(sweep, jobs, arch, cache);
        pool
    }

    /// Starts compiling more jobs (a strategy that learns knows them a batch at a time);
    /// jobs already submitted are not compiled again.
    pub fn submit(&self, sweep: &Sweep, jobs: Vec<(Candidate, DType)>, arch: &str, cache: &ModuleCache) {
        let state = &self.state;
        for (c, dt) in jobs {
            let key: CompileKey = (c.variant.clone(), c.params.clone(), dt);
            {
                let mut m = state.0.lock().unwrap();
                if m.contains_key(&key) {
                    continue;
                }
                m.insert(key.clone(), None);
            }
            let req = request(sweep, &c, dt, arch);
            let cache = cache.clone();
            let st = state.clone();
            rayon::spawn(move || {
                let r = cache
                    .get_or_compile(&req)
                    .map(|m| Compiled {
                        cubin_path: cache.cubin_path(&req),
                        resources: m.resources,
                        compile_ms: m.compile_ms,
                        cached: m.cached,
                    })
                    .map_err(|e| format!("{e:#}"));
                let (lock, cv) = &*st;
                lock.lock().unwrap().insert(key, Some(r));
                cv.notify_all();
            });
        }
    }

    /// Waits for one job's result.
    pub fn wait(&self, key: &CompileKey) -> Result<Compiled, String> {
        let (lock, cv) = &*self.state;
        let mut m = lock.lock().unwrap();
        loop {
            match m.get(key) {
                None => return Err("internal: candidate was never submitted for compilation".into()),
                Some(Some(r)) => return r.clone(),
                Some(None) => m = cv.wait(m).unwrap(),
            }
        }
    }
}
