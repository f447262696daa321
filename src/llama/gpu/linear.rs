//! Linear layers of the model: cuBLAS (the reference path) or the tuned gemm family.
//!
//! The tuned path asks the tuned database for each linear's exact (M, N, K) — M is the
//! number of tokens in the step, so prefill and decode get different kernels — and falls
//! back to the nearest measured shape, then to the variant's template defaults when the
//! database has nothing for this GPU. Each decision is made once per shape and kept.

use crate::gpu::blas::Blas;
use crate::gpu::cache::{self, ModuleCache};
use crate::gpu::device::{Gpu, Kernel};
use crate::kernels::gemm::{self, LinearIo};
use crate::kernels::{DType, Family};
use crate::tune::compile;
use crate::tune::db::{Query, TunedDb};
use crate::tune::space::{Candidate, Sweep};
use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::rc::Rc;

/// A variant's loaded entry points by name.
type Kernels = BTreeMap<String, Kernel>;

/// Where a shape's GEMM configuration came from.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanSource {
    Exact,
    Nearest(String),
    Default(String),
}

/// The kernel chosen for one (M, N, K).
pub struct Plan {
    pub variant: String,
    pub params: BTreeMap<String, i64>,
    pub source: PlanSource,
    kernels: Rc<BTreeMap<String, Kernel>>,
}

pub struct TunedGemm {
    sweep: Sweep,
    db: TunedDb,
    cache: ModuleCache,
    hashes: BTreeMap<String, String>,
    arch: String,
    gpu_name: String,
    cc: String,
    plans: HashMap<(i64, i64, i64), Rc<Plan>>,
    modules: HashMap<(String, BTreeMap<String, i64>), Rc<Kernels>>,
    /// Messages for the user, each said once.
    pub notes: Vec<String>,
}

/// Variants `gemm::launch_linear` can run (a database may hold winners of newer variants
/// this build does not know; those are skipped, not launched).
pub const LAUNCHABLE: &[&str] = &["mma_multistage", "gemv_splitk", "mma_skinny", "wgmma_tma"];

/// Largest M each launchable variant is meant for (the `when` of sweeps/gemm.toml).
pub fn max_m(variant: &str) -> Option<i64> {
    match variant {
        "gemv_splitk" => Some(16),
        "mma_skinny" => Some(64),
        "mma_multistage" | "wgmma_tma" => Some(i64::MAX),
        _ => None,
    }
}

/// Whether a database winner of `variant` may run a linear with `m` rows.
pub fn usable_at(variant: &str, m: i64) -> bool {
    LAUNCHABLE.contains(&variant) && max_m(variant).map(|x| m <= x).unwrap_or(false)
}

/// The `#ifndef NAME / #define NAME value` defaults of a template.
pub fn template_defaults(source: &str) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    let lines: Vec<&str> = source.lines().map(str::trim).collect();
    for w in lines.windows(2) {
        if let (Some(a), Some(b)) = (w[0].strip_prefix("#ifndef "), w[1].strip_prefix("#define ")) {
            let mut it = b.split_whitespace();
            if let (Some(name), Some(val)) = (it.next(), it.next()) {
                if name == a.trim() {
                    if let Ok(v) = val.parse::<i64>() {
                        out.insert(name.to_string(), v);
                    }
                }
            }
        }
    }
    out.remove("KL_FP16");
    out.remove("KL_FP32");
    out
}

/// Smallest of 1, 2, 4, 8, 16 that is at least `m` (gemv_splitk's MMAX values).
pub fn mmax_for(m: i64) -> i64 {
    [1, 2, 4, 8, 16].into_iter().find(|&v| v >= m).unwrap_or(16)
}

/// Makes a configuration usable at `m`: gemv_splitk keeps MMAX accumulators per row, so a
/// winner measured at a smaller M is widened; beyond M = 16 it cannot run at all.
pub fn adapt_params(variant: &str, params: &BTreeMap<String, i64>, m: i64) -> Option<BTreeMap<String, i64>> {
    let mut p = params.clone();
    if variant == "gemv_splitk" {
        if m > 16 {
            return None;
        }
        let mm = p.get("MMAX").copied().unwrap_or(1);
        if mm < m {
            p.insert("MMAX".into(), mmax_for(m));
        }
    }
    Some(p)
}

/// The variant used when nothing was tuned: the memory-bound kernel for decode-sized M, the
/// tensor-core kernel otherwise.
pub fn default_variant(m: i64) -> &'static str {
    if m <= 16 {
        "gemv_splitk"
    } else {
        "mma_multistage"
    }
}

impl TunedGemm {
    pub fn new(gpu: &Gpu, cache: &ModuleCache, db_path: &Path) -> Result<TunedGemm> {
        let sweep_path = crate::paths::sweep_file("gemm");
        let sweep = Sweep::load(&sweep_path, gemm::Gemm.shape_dims())
            .with_context(|| format!("the tuned path reads the gemm variants from {}", sweep_path.display()))?;
        let db = TunedDb::load(db_path)?;
        let hashes = sweep.variants.iter().map(|v| (v.name.clone(), cache::source_hash(&v.source))).collect();
        Ok(TunedGemm {
            sweep,
            db,
            cache: cache.clone(),
            hashes,
            arch: gpu.props.arch(),
            gpu_name: gpu.props.name.clone(),
            cc: gpu.props.cc(),
            plans: HashMap::new(),
            modules: HashMap::new(),
            notes: vec![],
        })
    }

    fn choose(&self, m: i64, n: i64, k: i64) -> Result<(String, BTreeMap<String, i64>, PlanSource)> {
        let shape: BTreeMap<String, i64> =
            [("M".to_string(), m), ("N".to_string(), n), ("K".to_string(), k)].into_iter().collect();
        let q = Query {
            kernel: "gemm",
            gpu: &self.gpu_name,
            cc: &self.cc,
            nvrtc: self.cache.nvrtc_version(),
            dtype: "bf16",
            shape: &shape,
            source_hashes: &self.hashes,
        };
        // A nearest-shape winner is only taken for an M its variant is meant for: a decode
        // winner (M = 8) reused for a 1024-token prefill was measured 6x slower than cuBLAS.
        if let Some(f) = self.db.lookup(&q).filter(|f| usable_at(&f.entry.variant, m)) {
            if let Some(p) = adapt_params(&f.entry.variant, &f.entry.params, m) {
                let src = if f.exact { PlanSource::Exact } else { PlanSource::Nearest(f.note.clone()) };
                return Ok((f.entry.variant.clone(), p, src));
            }
        }
        let v = default_variant(m);
        let vs = self.sweep.variant(v).with_context(|| format!("sweeps/gemm.toml has no variant {v}"))?;
        let p = adapt_params(v, &template_defaults(&vs.source), m).expect("default variant fits M");
        Ok((
            v.to_string(),
            p,
            PlanSource::Default(format!("no tuned gemm for {m}x{n}x{k} on {}: {v} template defaults", self.gpu_name)),
        ))
    }

    /// The plan for (M, N, K), compiling its module on first use.
    pub fn plan(&mut self, gpu: &Gpu, m: i64, n: i64, k: i64) -> Result<Rc<Plan>> {
        if let Some(p) = self.plans.get(&(m, n, k)) {
            return Ok(p.clone());
        }
        let (variant, params, source) = self.choose(m, n, k)?;
        let key = (variant.clone(), params.clone());
        let kernels = match self.modules.get(&key) {
            Some(k) => k.clone(),
            None => {
                let cand = Candidate { variant: variant.clone(), params: params.clone() };
                let req = compile::request(&self.sweep, &cand, DType::BF16, &self.arch);
                let module = self.cache.get_or_compile(&req)?;
                let mut ks = BTreeMap::new();
                for e in gemm::Gemm.entries(&variant)? {
                    ks.insert(e.to_string(), gpu.load(&module.cubin, e)?);
                }
                let rc = Rc::new(ks);
                self.modules.insert(key, rc.clone());
                rc
            }
        };
        let note = match &source {
            PlanSource::Exact => format!("gemm {m}x{n}x{k}: tuned {variant}"),
            PlanSource::Nearest(s) | PlanSource::Default(s) => format!("gemm {m}x{n}x{k}: {s}"),
        };
        self.notes.push(note);
        let plan = Rc::new(Plan { variant, params, source, kernels });
        self.plans.insert((m, n, k), plan.clone());
        Ok(plan)
    }

    pub fn plans(&self) -> impl Iterator<Item = (&(i64, i64, i64), &Rc<Plan>)> {
        self.plans.iter()
    }
}

/// The linear-layer backend of one model instance.
pub enum LinearBackend {
    Cublas(Blas),
    Tuned(Box<TunedGemm>),
}

impl LinearBackend {
    pub fn name(&self) -> &'static str {
        match self {
            LinearBackend::Cublas(_) => "cuBLAS",
            LinearBackend::Tuned(_) => "kernlab gemm (tuned)",
        }
    }

    /// fp32 split-K workspace bytes (M, N, K) will need.
    pub fn workspace_bytes(&mut self, gpu: &Gpu, m: i64, n: i64, k: i64) -> Result<usize> {
        match self {
            LinearBackend::Cublas(_) => Ok(0),
            LinearBackend::Tuned(t) => {
                let p = t.plan(gpu, m, n, k)?;
                Ok(gemm::workspace_bytes(&p.variant, &p.params, m, n))
            }
        }
    }

    /// Y[M,N] = X[M,K]·W[N,K]ᵀ, plus Y itself when `residual` (the residual stream update
    /// done in the GEMM's epilogue). `ws` must hold [`Self::workspace_bytes`].
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &mut self,
        gpu: &Gpu,
        x: u64,
        w: u64,
        y: u64,
        residual: bool,
        ws: u64,
        m: i64,
        n: i64,
        k: i64,
    ) -> Result<()> {
        match self {
            LinearBackend::Cublas(b) => b.linear(DType::BF16, x, w, y, m, n, k, residual),
            LinearBackend::Tuned(t) => {
                let p = t.plan(gpu, m, n, k)?;
                let io = LinearIo { x, w, y, r: if residual { y } else { 0 }, ws };
                gemm::launch_linear(gpu, &p.kernels, &p.variant, &p.params, io, m, n, k, DType::BF16)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_read_from_the_template() {
        let src = "#ifndef BM\n#define BM 128\n#endif\n#ifndef KL_FP16\n#define KL_FP16 0\n#endif\n  #ifndef X\n  #define X 3 // c\n#endif\n";
        let d = template_defaults(src);
        assert_eq!(d.get("BM"), Some(&128));
        assert_eq!(d.get("X"), Some(&3));
        assert!(!d.contains_key("KL_FP16"));
    }

    #[test]
    fn gemv_winner_is_widened_or_refused() {
        let p: BTreeMap<String, i64> = [("MMAX".to_string(), 1), ("SPLITK".to_string(), 4)].into_iter().collect();
        assert_eq!(adapt_params("gemv_splitk", &p, 1).unwrap()["MMAX"], 1);
        assert_eq!(adapt_params("gemv_splitk", &p, 5).unwrap()["MMAX"], 8);
        assert!(adapt_params("gemv_splitk", &p, 17).is_none());
        assert_eq!(adapt_params("mma_multistage", &p, 4096).unwrap(), p);
        assert_eq!(default_variant(8), "gemv_splitk");
        assert!(usable_at("mma_skinny", 64) && !usable_at("mma_skinny", 128) && !usable_at("gemv_splitk", 1024));
        assert!(usable_at("mma_multistage", 1) && usable_at("wgmma_tma", 4096) && !usable_at("nosuch", 1));
        assert_eq!(default_variant(128), "mma_multistage");
    }

    #[test]
    fn real_templates_have_launchable_defaults() {
        let root = crate::paths::project_root();
        for (file, need) in [
            ("kernels/gemm/mma_multistage.cu", &["BM", "BN", "BK", "WM", "WN", "STAGES"][..]),
            ("kernels/gemm/gemv_splitk.cu", &["NUM_WARPS", "ROWS_PER_WARP", "SPLITK", "MMAX"][..]),
        ] {
            let src = std::fs::read_to_string(root.join(file)).unwrap();
            let d = template_defaults(&src);
            for n in need {
                assert!(d.contains_key(*n), "{file}: no default for {n}");
            }
        }
    }
}
