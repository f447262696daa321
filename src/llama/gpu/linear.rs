//! Linear layers of the model: cuBLAS (the reference path), the tuned gemm family (bf16
//! weights), or the tuned gemm_int4 / gemm_int8 families on quantized weights
//! (`--weights int4|int8`).
//!
//! The tuned path asks the tuned database for each linear's exact (M, N, K) — M is the
//! number of tokens in the step, so prefill and decode get different kernels — and falls
//! back to the nearest measured shape, then to the variant's template defaults when the
//! database has nothing for this GPU. Each decision is made once per shape and kept.

use crate::gpu::blas::Blas;
use crate::gpu::cache::{self, ModuleCache};
use crate::gpu::device::{DevBuf, Gpu, Kernel};
use crate::kernels::gemm::{self, LinearIo};
use crate::kernels::gemm_int4::linear::{self as int4_linear, Int4Io};
use crate::kernels::gemm_int4::tiled::reads_tiled;
use crate::kernels::gemm_int4::{GemmInt4, Int4Format};
use crate::kernels::gemm_int8::{self, GemmInt8, Int8Io};
use crate::kernels::{DType, Family};
use crate::kernels::{Kernels, Params};
pub use crate::llama::gpu::linear_rules::{
    adapt_params, default_variant, int4_adapt_params, int4_adapt_params_for, int4_default_variants, int4_usable_at,
    int8_adapt_params, max_m, mmax_for, template_defaults, usable_at, LAUNCHABLE,
};
use crate::llama::gpu::quant_weights::{QuantStore, DEQUANT_GEMM_MIN_M};
use crate::tune::compile;
use crate::tune::db::{Query, TunedDb};
use crate::tune::space::{Candidate, Sweep};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::rc::Rc;

/// A variant's loaded entry points by name.

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

/// Which family a [`TunedGemm`] plans for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinearKind {
    /// bf16 weights: the gemm family.
    Dense,
    /// int4 weights in `format` (the device quantizer's g128 symmetric bf16, or what a
    /// GPTQ/AWQ checkpoint stores): gemm_int4.
    Int4 { format: Int4Format },
    /// int8 weights, one scale per row: gemm_int8 (decode sizes only; prefill dequantizes).
    Int8,
}

impl LinearKind {
    fn family(self) -> &'static dyn Family {
        match self {
            LinearKind::Dense => &gemm::Gemm,
            LinearKind::Int4 { .. } => &GemmInt4,
            LinearKind::Int8 => &GemmInt8,
        }
    }
    fn name(self) -> &'static str {
        self.family().name()
    }
}

pub struct TunedGemm {
    kind: LinearKind,
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

impl TunedGemm {
    /// Plans for bf16 weights (the gemm family).
    pub fn new(gpu: &Gpu, cache: &ModuleCache, db_path: &Path) -> Result<TunedGemm> {
        Self::with_kind(gpu, cache, db_path, LinearKind::Dense)
    }

    pub fn with_kind(gpu: &Gpu, cache: &ModuleCache, db_path: &Path, kind: LinearKind) -> Result<TunedGemm> {
        let fam = kind.family();
        let sweep_path = crate::paths::sweep_file(fam.name());
        let sweep = Sweep::load(&sweep_path, fam.shape_dims()).with_context(|| {
            format!("the tuned path reads the {} variants from {}", fam.name(), sweep_path.display())
        })?;
        let db = TunedDb::load(db_path)?;
        let hashes = sweep.variants.iter().map(|v| (v.name.clone(), cache::source_hash(&v.source))).collect();
        Ok(TunedGemm {
            kind,
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

    /// A configuration adapted to run M rows of a linear with K columns (a per-channel int4
    /// format's group is K), or None where the variant cannot.
    /// A variant this build's sweep file does not have is not usable (nothing to compile).
    fn usable(&self, variant: &str, params: &Params, m: i64, k: i64) -> Option<BTreeMap<String, i64>> {
        let defaults = template_defaults(&self.sweep.variant(variant)?.source);
        match self.kind {
            LinearKind::Dense => usable_at(variant, m).then(|| adapt_params(variant, params, &defaults, m)).flatten(),
            LinearKind::Int4 { format } => int4_adapt_params_for(variant, params, &defaults, m, &format.at_k(k)),
            LinearKind::Int8 => int8_adapt_params(variant, params, &defaults, m),
        }
    }

    fn choose(&self, m: i64, n: i64, k: i64) -> Result<(String, BTreeMap<String, i64>, PlanSource)> {
        let shape: BTreeMap<String, i64> =
            [("M".to_string(), m), ("N".to_string(), n), ("K".to_string(), k)].into_iter().collect();
        // gemm_int4 winners are kept per weight format (a g128 winner is not one for g64).
        let format = match self.kind {
            LinearKind::Dense | LinearKind::Int8 => None,
            LinearKind::Int4 { format } => GemmInt4.weight_format(&format.at_k(k).params(), DType::BF16),
        };
        let q = Query {
            kernel: self.kind.name(),
            gpu: &self.gpu_name,
            cc: &self.cc,
            nvrtc: self.cache.nvrtc_version(),
            dtype: "bf16",
            format: format.as_deref(),
            shape: &shape,
            source_hashes: &self.hashes,
        };
        // A nearest-shape winner is only taken for an M its variant is meant for: a decode
        // winner (M = 8) reused for a 1024-token prefill was measured 6x slower than cuBLAS.
        // A weight format nothing was tuned for borrows the default format's winners (their
        // tunables run any format: `usable` pins it), as the nearest thing measured.
        let mut refused = Vec::new();
        let found = self.db.lookup(&q).map(|f| (f, None)).or_else(|| {
            let label = q.format?;
            let f = self.db.lookup(&Query { format: None, ..q.clone() })?;
            Some((f, Some(format!("no {label} winner: the default format's"))))
        });
        if let Some((f, borrowed)) = found {
            if let Some(p) = self.usable(&f.entry.variant, &f.entry.params, m, k) {
                match self.fits(&f.entry.variant, &p, m, n, k) {
                    Ok(()) => {
                        let src = match borrowed {
                            Some(why) => PlanSource::Nearest(format!("{why}, {}", f.note)),
                            None if f.exact => PlanSource::Exact,
                            None => PlanSource::Nearest(f.note.clone()),
                        };
                        return Ok((f.entry.variant.clone(), p, src));
                    }
                    Err(e) => refused.push(format!("the tuned {} does not fit ({e:#})", f.entry.variant)),
                }
            }
        }
        let defaults: &[&str] = match self.kind {
            LinearKind::Dense => &[default_variant(m)],
            LinearKind::Int4 { .. } => int4_default_variants(m),
            LinearKind::Int8 => &["int8_gemv"],
        };
        for v in defaults {
            let vs = self
                .sweep
                .variant(v)
                .with_context(|| format!("sweeps/{}.toml has no variant {v}", self.kind.name()))?;
            let Some(p) = self.usable(v, &template_defaults(&vs.source), m, k) else { continue };
            if let Err(e) = self.fits(v, &p, m, n, k) {
                refused.push(format!("{v} does not fit ({e:#})"));
                continue;
            }
            let why = if refused.is_empty() { String::new() } else { format!(" ({})", refused.join("; ")) };
            return Ok((
                v.to_string(),
                p,
                PlanSource::Default(format!(
                    "no tuned {} for {m}x{n}x{k} on {}: {v} template defaults{why}",
                    self.kind.name(),
                    self.gpu_name
                )),
            ));
        }
        bail!("no {} variant can run {m}x{n}x{k}: {}", self.kind.name(), refused.join("; "))
    }

    /// The launch contract's shape rules (int4 only: every dense default runs any shape).
    fn fits(&self, variant: &str, params: &Params, m: i64, n: i64, k: i64) -> Result<()> {
        match self.kind {
            LinearKind::Dense => Ok(()),
            LinearKind::Int4 { .. } => int4_linear::check_shape(variant, params, m, n, k, DType::BF16),
            LinearKind::Int8 => gemm_int8::check_shape(variant, params, m, n, k, DType::BF16),
        }
    }

    /// The plan for (M, N, K), compiling its module on first use.
    pub fn plan(&mut self, gpu: &Gpu, m: i64, n: i64, k: i64) -> Result<Rc<Plan>> {
        if let Some(p) = self.plans.get(&(m, n, k)) {
            return Ok(p.clone());
        }
        let (variant, params, source) = self.choose(m, n, k)?;
        let kernels = self.kernels(gpu, &variant, &params)?;
        let fam = self.kind.name();
        let note = match &source {
            PlanSource::Exact => format!("{fam} {m}x{n}x{k}: tuned {variant}"),
            PlanSource::Nearest(s) | PlanSource::Default(s) => format!("{fam} {m}x{n}x{k}: {s}"),
        };
        self.notes.push(note);
        let plan = Rc::new(Plan { variant, params, source, kernels });
        self.plans.insert((m, n, k), plan.clone());
        Ok(plan)
    }

    /// The variant's entry points compiled with `params` (each module compiled once).
    fn kernels(&mut self, gpu: &Gpu, variant: &str, params: &Params) -> Result<Rc<Kernels>> {
        let key = (variant.to_string(), params.clone());
        if let Some(k) = self.modules.get(&key) {
            return Ok(k.clone());
        }
        let cand = Candidate { variant: variant.to_string(), params: params.clone() };
        let req = compile::request(&self.sweep, &cand, DType::BF16, &self.arch);
        let module = self.cache.get_or_compile(&req)?;
        let mut ks = BTreeMap::new();
        for e in self.kind.family().entries(variant)? {
            ks.insert(e.to_string(), gpu.load(&module.cubin, e)?);
        }
        let rc = Rc::new(ks);
        self.modules.insert(key, rc.clone());
        Ok(rc)
    }

    pub fn plans(&self) -> impl Iterator<Item = (&(i64, i64, i64), &Rc<Plan>)> {
        self.plans.iter()
    }
}

/// The linear-layer backend of one model instance.
pub enum LinearBackend {
    Cublas(Blas),
    Tuned(Box<TunedGemm>),
    /// int4 or int8 weights for the layers' linears (looked up by their bf16 buffer's
    /// address), the tuned bf16 GEMM for the rest (the lm_head stays bf16, as AWQ/GPTQ
    /// checkpoints keep it, and any linear kept in bf16). From DEQUANT_GEMM_MIN_M rows on
    /// (int8: past its decode kernel's 16), a linear dequantizes into `scratch` and runs the
    /// bf16 GEMM.
    Quant {
        store: Rc<QuantStore>,
        /// Each built only for a store of its weights (`QuantStore::is_int8` or not).
        int4: Option<Box<TunedGemm>>,
        int8: Option<Box<TunedGemm>>,
        dense: Box<TunedGemm>,
        scratch: Option<DevBuf>,
    },
}

impl LinearBackend {
    pub fn name(&self) -> &'static str {
        match self {
            LinearBackend::Cublas(_) => "cuBLAS",
            LinearBackend::Tuned(_) => "kernlab gemm (tuned)",
            LinearBackend::Quant { .. } => {
                "kernlab gemm_int4 or gemm_int8 (tuned; prefill: dequantize + gemm) + gemm for the lm_head"
            }
        }
    }

    /// The planners whose notes say which kernel each shape got.
    pub fn planners(&self) -> Vec<&TunedGemm> {
        match self {
            LinearBackend::Cublas(_) => vec![],
            LinearBackend::Tuned(t) => vec![t],
            LinearBackend::Quant { int4, int8, dense, .. } => {
                // The planner of the store's weights (int4 or int8), then the bf16 GEMM's.
                int4.iter().chain(int8.iter()).map(|t| &**t).chain([&**dense]).collect()
            }
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
            LinearBackend::Quant { store, int4, int8, dense, .. } => {
                // The shape alone does not say which weight comes: plan what may run it.
                let mut need = 0;
                if store.is_int8() && store.has_shape(n, k) && m <= INT8_GEMV_MAX_M {
                    let p = int8_planner(int8)?.plan(gpu, m, n, k)?;
                    need = need.max(gemm_int8::workspace_bytes(&p.variant, &p.params, m, n));
                } else if store.has_shape(n, k) && (m >= DEQUANT_GEMM_MIN_M || store.is_int8()) {
                    let p = dense.plan(gpu, m, n, k)?;
                    need = need.max(gemm::workspace_bytes(&p.variant, &p.params, m, n));
                } else if store.has_shape(n, k) {
                    let p = int4_planner(int4)?.plan(gpu, m, n, k)?;
                    need = need.max(int4_linear::workspace_bytes(&p.variant, &p.params, m, n));
                }
                if store.has_dense_shape(n, k) {
                    let p = dense.plan(gpu, m, n, k)?;
                    need = need.max(gemm::workspace_bytes(&p.variant, &p.params, m, n));
                }
                // An act-order weight's gathered input sits in front of the split-K part.
                Ok(need + gathered_input_bytes(store, m, k))
            }
        }
    }

    /// act[M, N/2] = SwiGLU(X·W_gate_upᵀ) in one launch where the int4 decode kernel can
    /// do it: int4 weights with an interleaved gate+up copy, M in the decode range, and a
    /// plan of int4_gemv_tc without split K or DIAG, compiled once more with its SwiGLU
    /// epilogue (the tuned tunables of the plain projection, SWIGLU = 1 on top). Returns
    /// false, having launched nothing, where it cannot: the caller then runs the
    /// projection and the SwiGLU op apart.
    #[allow(clippy::too_many_arguments)]
    pub fn gate_up_swiglu(&mut self, gpu: &Gpu, x: u64, w: u64, act: u64, m: i64, n: i64, k: i64) -> Result<bool> {
        if !self.can_fuse_gate_up(gpu, w, m, n, k)? {
            return Ok(false);
        }
        let LinearBackend::Quant { store, int4: Some(int4), .. } = self else { return Ok(false) };
        let q = store.gate_up_interleaved(w).context("internal: checked by can_fuse_gate_up")?;
        let p = int4.plan(gpu, m, n, k)?;
        let mut params = p.params.clone();
        params.insert("SWIGLU".into(), 1);
        let kernels = int4.kernels(gpu, &p.variant, &params)?;
        let io = Int4Io { x, wq: q.packed.ptr, scales: q.scales.ptr, zeros: q.zeros_ptr(), r: 0, y: act, ws: 0 };
        // SAFETY: x [M,K] and act [M,N/2] are the model's buffers for this step; the
        // interleaved weight is the store's, checked against (N, K); SPLITK = 1 needs no
        // workspace; the kernels are compiled with `params`.
        unsafe { int4_linear::launch_linear(gpu, &kernels, &p.variant, &params, io, m, n, k, DType::BF16)? };
        Ok(true)
    }

    /// Whether [`Self::gate_up_swiglu`] can run this gate+up weight at (M, N, K); says why
    /// not once in the planner's notes where only the plan stands in the way.
    pub fn can_fuse_gate_up(&mut self, gpu: &Gpu, w: u64, m: i64, n: i64, k: i64) -> Result<bool> {
        let LinearBackend::Quant { store, int4: Some(int4), .. } = self else { return Ok(false) };
        let Some(q) = store.gate_up_interleaved(w) else { return Ok(false) };
        if m >= DEQUANT_GEMM_MIN_M || q.n != n || q.k != k {
            return Ok(false);
        }
        let p = int4.plan(gpu, m, n, k)?;
        let get = |name: &str, default: i64| p.params.get(name).copied().unwrap_or(default);
        if p.variant != "int4_gemv_tc" || get("SPLITK", 1) != 1 || get("DIAG", 0) != 0 || n % 16 != 0 {
            let note = format!(
                "gemm_int4 {m}x{n}x{k}: gate+up and SwiGLU run apart ({} SPLITK={} DIAG={} has no SwiGLU epilogue)",
                p.variant,
                get("SPLITK", 1),
                get("DIAG", 0)
            );
            if !int4.notes.contains(&note) {
                int4.notes.push(note);
            }
            return Ok(false);
        }
        Ok(true)
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
        let r = if residual { y } else { 0 };
        match self {
            LinearBackend::Cublas(b) => b.linear(DType::BF16, x, w, y, m, n, k, residual),
            LinearBackend::Tuned(t) => {
                let p = t.plan(gpu, m, n, k)?;
                // SAFETY (all launches here): the model passes its own buffers for (M, N, K)
                // and a workspace sized for the largest split (see model.rs); the kernels are
                // compiled with the plan's tunables.
                unsafe {
                    gemm::launch_linear(
                        gpu,
                        &p.kernels,
                        &p.variant,
                        &p.params,
                        LinearIo { x, w, y, r, ws },
                        m,
                        n,
                        k,
                        DType::BF16,
                    )
                }
            }
            LinearBackend::Quant { store, int4, int8, dense, scratch } => {
                if let Some(q8) = store.get_int8(w) {
                    anyhow::ensure!(q8.n == n && q8.k == k, "internal: int8 weight {}x{} used as {n}x{k}", q8.n, q8.k);
                    if m <= INT8_GEMV_MAX_M {
                        let p = int8_planner(int8)?.plan(gpu, m, n, k)?;
                        let io = Int8Io { x, wq: q8.q.ptr, scales: q8.scales.ptr, r, y, ws };
                        // SAFETY: as above (the codes and scales are the store's, checked against N, K).
                        return unsafe {
                            gemm_int8::launch_linear(gpu, &p.kernels, &p.variant, &p.params, io, m, n, k, DType::BF16)
                        };
                    }
                    let buf = dequant_scratch(gpu, store, scratch)?;
                    store.dequantize_int8(gpu, q8, buf)?;
                    // SAFETY: as above (the dequantized scratch holds the largest weight).
                    return unsafe { dense_linear(gpu, dense, LinearIo { x, w: buf.ptr, y, r, ws }, m, n, k) };
                }
                let Some(q) = store.get(w) else {
                    // SAFETY: as above (a bf16 weight the store does not hold).
                    return unsafe { dense_linear(gpu, dense, LinearIo { x, w, y, r, ws }, m, n, k) };
                };
                anyhow::ensure!(q.n == n && q.k == k, "internal: int4 weight {}x{} used as {n}x{k}", q.n, q.k);
                // Act-order: the weight's columns are permuted, so is its input (into the front
                // of the workspace, which workspace_bytes sized for it).
                let (x, ws) = match store.perm(w) {
                    Some(_) => {
                        // SAFETY: x holds M·K bf16; ws begins with gathered_input_bytes of room.
                        unsafe { store.gather_input(gpu, w, x, ws, m)? };
                        (ws, ws + gathered_input_bytes(store, m, k) as u64)
                    }
                    None => (x, ws),
                };
                if m >= DEQUANT_GEMM_MIN_M {
                    let buf = dequant_scratch(gpu, store, scratch)?;
                    store.dequantize(gpu, q, buf)?;
                    // SAFETY: as above (the dequantized scratch holds the largest weight).
                    return unsafe { dense_linear(gpu, dense, LinearIo { x, w: buf.ptr, y, r, ws }, m, n, k) };
                }
                let p = int4_planner(int4)?.plan(gpu, m, n, k)?;
                let (wq, scales) = if reads_tiled(&p.variant) {
                    let t = store.tiled(gpu, w).with_context(|| format!("{} on a {n}x{k} int4 weight", p.variant))?;
                    (t.codes.ptr, t.scales.ptr)
                } else {
                    (q.packed.ptr, q.scales.ptr)
                };
                let io = Int4Io { x, wq, scales, zeros: q.zeros_ptr(), r, y, ws };
                // SAFETY: as above (the packed weights are the store's, checked against N, K).
                unsafe { int4_linear::launch_linear(gpu, &p.kernels, &p.variant, &p.params, io, m, n, k, DType::BF16) }
            }
        }
    }
}

/// The prefill scratch a quantized weight is dequantized into, allocated on first use for
/// the store's largest weight.
fn dequant_scratch<'a>(gpu: &Gpu, store: &QuantStore, scratch: &'a mut Option<DevBuf>) -> Result<&'a DevBuf> {
    if scratch.is_none() {
        *scratch = Some(gpu.alloc(store.max_dequantized_bytes())?);
    }
    Ok(scratch.as_ref().expect("allocated above"))
}

/// Y = X·Wᵀ (+ R) on the tuned bf16 GEMM.
///
/// # Safety
/// `io` holds the model's buffers for (M, N, K) and a workspace sized by `workspace_bytes`.
unsafe fn dense_linear(gpu: &Gpu, dense: &mut TunedGemm, io: LinearIo, m: i64, n: i64, k: i64) -> Result<()> {
    let p = dense.plan(gpu, m, n, k)?;
    // SAFETY: the caller's contract; the kernels are compiled with the plan's tunables.
    unsafe { gemm::launch_linear(gpu, &p.kernels, &p.variant, &p.params, io, m, n, k, DType::BF16) }
}

/// The int4 planner of a store of int4 weights (built with the backend for such stores).
fn int4_planner(int4: &mut Option<Box<TunedGemm>>) -> Result<&mut TunedGemm> {
    int4.as_deref_mut().context("internal: int4 weights but no gemm_int4 planner")
}

/// The int8 planner of a store of int8 weights (built with the backend for such stores).
fn int8_planner(int8: &mut Option<Box<TunedGemm>>) -> Result<&mut TunedGemm> {
    int8.as_deref_mut().context("internal: int8 weights but no gemm_int8 planner")
}

/// Rows up to which int8 weights run gemm_int8's decode kernel; past it they are
/// dequantized for the bf16 GEMM. int8_gemv's fp32 multiply-adds make it only 0.45–0.54×
/// cuBLAS bf16 at M = 8 on an H200 (1.5–1.7× at M = 1), but dequantizing first moves
/// 5 bytes a weight against cuBLAS's 2, which is slower still.
pub const INT8_GEMV_MAX_M: i64 = gemm_int8::GEMV_MAX_M;

/// Bytes of workspace an act-order store's gathered input of M×K bf16 takes (rounded up
/// to 256 so the split-K part behind it stays aligned), or 0 for a store without act-order.
fn gathered_input_bytes(store: &QuantStore, m: i64, k: i64) -> usize {
    if store.has_act_order() {
        ((m * k * 2) as usize).div_ceil(256) * 256
    } else {
        0
    }
}
