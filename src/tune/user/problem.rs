//! A user kernel's GPU state for one shape: its buffers, the reference's copies of the
//! outputs, the reference and peer launches, and the helper kernels that fill and compare
//! buffers of any element type (kernels/user/helpers.cu). Plugs into the same [`Problem`] trait as the
//! built-in families, so the worker's fresh inputs, NaN poison, verification and timing
//! apply unchanged.

use super::desc::{Init, Reference, Role};
use super::eval::{self, Ready, ReadyArg};
use super::UserFamily;
use crate::gpu::blas::Blas;
use crate::gpu::device::{Arg, DevBuf, Gpu, Kernel};
use crate::gpu::util::{Comparison, Util};
use crate::kernels::support;
use crate::kernels::tunables::{LauncherCache, Tunables};
use crate::kernels::{DType, Problem, Shape};
use crate::tune::space::DeviceLimits;
use anyhow::{anyhow, Context, Result};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const HELPER_SOURCE: &str = include_str!("../../../kernels/user/helpers.cu");

struct Helpers {
    fill: Kernel,
    compare: Kernel,
    res: DevBuf,
}

/// A reference or peer template's kernels and its launches for this shape.
struct Aux {
    kernels: BTreeMap<String, Kernel>,
    launches: Vec<Ready>,
}

enum RefRun {
    Template(Aux),
    Gemm { blas: Blas, a: usize, b: usize, c: usize, mnk: (i64, i64, i64) },
}

pub struct UserProblem {
    fam: Arc<UserFamily>,
    shape: Shape,
    dt: DType,
    limits: DeviceLimits,
    /// One per buffer; a scratch buffer sized by the tunables is allocated by the first
    /// candidate that needs it and grown when a later one needs more.
    bufs: Vec<Option<DevBuf>>,
    /// The reference's copy of each output and inout buffer.
    twins: Vec<Option<DevBuf>>,
    elems: Vec<usize>,
    helpers: Helpers,
    reference: RefRun,
    peer: Option<Aux>,
    /// The candidate's launches and the scratch bytes they need.
    launcher: LauncherCache<(Vec<Ready>, Vec<(usize, usize)>)>,
}

fn grid_for(n: usize) -> (u32, u32, u32) {
    (n.div_ceil(256).clamp(1, 65_535 * 4) as u32, 1, 1)
}

impl UserProblem {
    pub fn new(fam: Arc<UserFamily>, gpu: &Gpu, s: &Shape, dt: DType) -> Result<UserProblem> {
        let d = &fam.desc;
        let limits = gpu.props.limits();
        let env = d.env(s, dt, &limits, None);
        let mut sizes = Vec::new();
        let mut elems = vec![0; d.buffers.len()];
        for (i, b) in d.buffers.iter().enumerate() {
            if b.uses_tunables() {
                continue;
            }
            elems[i] = env.buffer_elems(i)?;
            let bytes = env.buffer_bytes(i, dt)?;
            sizes.push((i, bytes));
            if matches!(b.role, Role::Output | Role::InOut) {
                sizes.push((i, bytes));
            }
        }
        let (free, _) = gpu.ctx.mem_get_info().unwrap_or((usize::MAX, 0));
        eval::check_fits(d, &format!("{} {}", s.label(), dt.name()), &sizes, free)?;
        let mut bufs: Vec<Option<DevBuf>> = (0..d.buffers.len()).map(|_| None).collect();
        let mut twins: Vec<Option<DevBuf>> = (0..d.buffers.len()).map(|_| None).collect();
        for (i, b) in d.buffers.iter().enumerate() {
            if b.uses_tunables() {
                continue;
            }
            let bytes = env.buffer_bytes(i, dt)?;
            bufs[i] = Some(gpu.alloc(bytes).with_context(|| format!("allocating buffer {}", b.name))?);
            if matches!(b.role, Role::Output | Role::InOut) {
                twins[i] = Some(gpu.alloc(bytes)?);
            }
        }
        let mut h = support::reference_kernels(
            gpu,
            "kernels/user/helpers.cu",
            HELPER_SOURCE,
            dt,
            &["user_fill", "user_compare"],
        )?;
        let mut take = |e: &str| h.remove(e).with_context(|| format!("kernels/user/helpers.cu has no {e}"));
        let helpers = Helpers { fill: take("user_fill")?, compare: take("user_compare")?, res: gpu.alloc(16)? };
        let aux = |p: &super::desc::Program| -> Result<Aux> {
            let entries: Vec<&str> = p.launches.iter().map(|l| l.entry.as_str()).collect();
            let kernels = support::reference_kernels(gpu, &p.file.display().to_string(), &p.source, dt, &entries)?;
            Ok(Aux { kernels, launches: eval::ready(&env, &p.launches, &limits)? })
        };
        let reference = match &d.reference {
            Reference::Template(p) => RefRun::Template(aux(p).context("the reference")?),
            Reference::Gemm { a, b, c, m, n, k, .. } => RefRun::Gemm {
                blas: Blas::new(gpu)?,
                a: *a,
                b: *b,
                c: *c,
                mnk: (env.eval(m, "gemm m")?, env.eval(n, "gemm n")?, env.eval(k, "gemm k")?),
            },
        };
        let peer = match &d.peer {
            Some((_, p)) => Some(aux(p).context("the peer")?),
            None => None,
        };
        drop(env);
        Ok(UserProblem {
            fam,
            shape: s.clone(),
            dt,
            limits,
            bufs,
            twins,
            elems,
            helpers,
            reference,
            peer,
            launcher: LauncherCache::default(),
        })
    }

    fn buf(&self, i: usize) -> Result<&DevBuf> {
        self.bufs[i].as_ref().ok_or_else(|| anyhow!("buffer {} is not allocated yet", self.fam.desc.buffers[i].name))
    }

    /// The pointer a reference or peer launch gets: the twin of an output, else the buffer.
    fn aux_ptr(&self, i: usize) -> Result<u64> {
        match &self.twins[i] {
            Some(t) => Ok(t.ptr),
            None => Ok(self.buf(i)?.ptr),
        }
    }

    fn args(&self, r: &Ready, twin: bool) -> Result<Vec<Arg>> {
        r.args
            .iter()
            .map(|a| match a {
                ReadyArg::Buffer(i) if twin => Ok(Arg::Ptr(self.aux_ptr(*i)?)),
                ReadyArg::Buffer(i) => Ok(Arg::Ptr(self.buf(*i)?.ptr)),
                ReadyArg::Value(v) => Ok(*v),
            })
            .collect()
    }

    fn launch_all(&self, gpu: &Gpu, kernels: &BTreeMap<String, Kernel>, launches: &[Ready], twin: bool) -> Result<()> {
        for r in launches {
            let k = kernels.get(&r.entry).with_context(|| format!("the module has no entry point {}", r.entry))?;
            let args = self.args(r, twin)?;
            let g = r.geometry;
            // SAFETY: every buffer argument is a live allocation sized by the description's
            // dims for this shape (checked against the entry's parameter list when the sweep
            // file was read); a kernel that indexes past them is the user's fault, which the
            // worker process contains.
            unsafe { gpu.launch(k, g.grid, g.block, g.smem, &args)? };
        }
        Ok(())
    }

    fn fill(&self, gpu: &Gpu, buf: &DevBuf, i: usize, seed: u64) -> Result<()> {
        let b = &self.fam.desc.buffers[i];
        let (dist, a, c) = match b.init {
            Init::Normal { mean, std } => (0, mean, std),
            Init::Uniform { low, high } => (1, low, high),
            Init::Int { low, high } => (2, low, high),
            Init::Constant(v) => (3, v, 0.0),
        };
        let n = self.elems[i];
        let seed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(i as u64 + 1);
        let args = [
            buf.arg(),
            Arg::U64(n as u64),
            Arg::I32(b.elem.code(self.dt)),
            Arg::I32(dist),
            Arg::F32(a as f32),
            Arg::F32(c as f32),
            Arg::U64(seed),
        ];
        // SAFETY: `buf` holds `n` elements of the buffer's type (allocated by `new`); the
        // arguments are user_fill's.
        unsafe { gpu.launch(&self.helpers.fill, grid_for(n), (256, 1, 1), 0, &args) }
    }
}

impl Problem for UserProblem {
    fn randomize(&mut self, gpu: &Gpu, _util: &Util, seed: u64) -> Result<()> {
        let d = &self.fam.desc;
        for (i, b) in d.buffers.iter().enumerate() {
            match b.role {
                Role::Input | Role::InOut => self.fill(gpu, self.buf(i)?, i, seed)?,
                Role::Output | Role::Scratch => {}
            }
            if let Some(t) = &self.twins[i] {
                // The reference starts from what the candidate will see: the inout's
                // initial values, or zeros for an output.
                let stream = gpu.stream.cu_stream();
                // SAFETY: both allocations hold `t.bytes` bytes; ordered on the stream.
                unsafe {
                    if b.role == Role::InOut {
                        cudarc::driver::result::memcpy_dtod_async(t.ptr, self.buf(i)?.ptr, t.bytes, stream)
                    } else {
                        cudarc::driver::result::memset_d8_async(t.ptr, 0, t.bytes, stream)
                    }
                }
                .map_err(|e| anyhow!("preparing the reference copy of {}: {e:?}", b.name))?;
            }
        }
        match &self.reference {
            RefRun::Template(aux) => {
                self.launch_all(gpu, &aux.kernels, &aux.launches, true).context("the reference")?
            }
            RefRun::Gemm { blas, a, b, c, mnk: (m, n, k) } => {
                let c = self.twins[*c].as_ref().context("the gemm reference's c must be an output")?.ptr;
                blas.linear(self.dt, self.buf(*a)?.ptr, self.buf(*b)?.ptr, c, *m, *n, *k, false)?;
            }
        }
        gpu.synchronize()
    }

    fn poison(&mut self, gpu: &Gpu, util: &Util) -> Result<()> {
        for (i, b) in self.fam.desc.buffers.iter().enumerate() {
            if b.role == Role::Output {
                util.poison(gpu, self.buf(i)?)?;
            }
        }
        Ok(())
    }

    fn run(
        &mut self,
        gpu: &Gpu,
        variant: &str,
        kernels: &BTreeMap<String, Kernel>,
        p: &BTreeMap<String, i64>,
    ) -> Result<()> {
        let (fam, shape, dt, limits) = (self.fam.clone(), self.shape.clone(), self.dt, self.limits);
        let (launches, scratch) = self
            .launcher
            .get(variant, p, |v, p| {
                let vs = fam.sweep.variant(v).with_context(|| format!("{} has no variant {v:?}", fam.desc.name))?;
                let t = Tunables::from_template(v, &vs.source, dt, p);
                let env = fam.desc.env(&shape, dt, &limits, Some((v, t.values())));
                let mut scratch = Vec::new();
                for (i, b) in fam.desc.buffers.iter().enumerate() {
                    if b.uses_tunables() {
                        scratch.push((i, env.buffer_bytes(i, dt)?));
                    }
                }
                Ok((eval::ready(&env, &fam.desc.launches, &limits)?, scratch))
            })?
            .clone();
        for (i, bytes) in scratch {
            if self.bufs[i].as_ref().is_none_or(|b| b.bytes < bytes) {
                self.bufs[i] = None;
                self.bufs[i] =
                    Some(gpu.alloc(bytes).with_context(|| format!("allocating scratch {}", fam.desc.buffers[i].name))?);
            }
        }
        self.launch_all(gpu, kernels, &launches, false)
    }

    fn check(&mut self, gpu: &Gpu, _util: &Util) -> Result<Comparison> {
        let mut worst = Comparison { max_abs_diff: 0.0, max_abs_ref: 0.0, non_finite: 0 };
        let mut non_finite = 0;
        for &i in &self.fam.desc.compare {
            let (out, twin) =
                (self.buf(i)?, self.twins[i].as_ref().context("compared buffer without a reference copy")?);
            let res = &self.helpers.res;
            // SAFETY: res holds 16 bytes; zeroed on the stream before the kernel reads it.
            unsafe { cudarc::driver::result::memset_d8_async(res.ptr, 0, 16, gpu.stream.cu_stream()) }
                .map_err(|e| anyhow!("{e:?}"))?;
            let n = self.elems[i];
            let code = self.fam.desc.buffers[i].elem.code(self.dt);
            let args = [out.arg(), twin.arg(), Arg::U64(n as u64), Arg::I32(code), res.arg()];
            // SAFETY: out and twin hold `n` elements of this type; the arguments are user_compare's.
            unsafe { gpu.launch(&self.helpers.compare, grid_for(n), (256, 1, 1), 0, &args)? };
            gpu.synchronize()?;
            let r: Vec<u32> = res.download(3)?;
            let c =
                Comparison { max_abs_diff: f32::from_bits(r[0]), max_abs_ref: f32::from_bits(r[1]), non_finite: r[2] };
            non_finite += c.non_finite;
            if c.rel_err() >= worst.rel_err() {
                worst = c;
            }
        }
        worst.non_finite = non_finite;
        Ok(worst)
    }

    fn run_peer(&mut self, gpu: &Gpu) -> Result<Option<()>> {
        let Some(peer) = &self.peer else { return Ok(None) };
        self.launch_all(gpu, &peer.kernels, &peer.launches, true)?;
        Ok(Some(()))
    }
}
