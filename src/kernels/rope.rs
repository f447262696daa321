//! Rotary position embedding on Q and K with Llama-3 frequency scaling, Hugging Face
//! half-split layout, positions offset per sequence (a KV cache of any length).
//! Peer: a torch implementation of the same math (scripts/torch_peers.py).
//! Reference: kernels/rope/reference.cu (one thread per rotated pair).
//!
//! Shape B×S×Hq×Hkv×D: B sequences of S new tokens each, Q with Hq heads and K with Hkv heads
//! of dimension D (Llama-3-8B: 32, 8, 128). Token t of sequence b sits at position
//! offsets[b] + t; offsets are random per `randomize`, up to 60 000.
//!
//! The frequency table (with the Llama-3 scaling) is built here on the host, once, and passed
//! to every kernel, so candidate, reference and CPU check rotate by the same fp32 angles.
//!
//! The model applies RoPE in place. On the verification run after each `randomize`, `run`
//! launches the candidate out of place into poisoned outputs and then in place on copies of
//! the inputs; `check` compares both with the reference. Timed runs are in place.

use super::support;
use super::tunables::{LauncherCache, Tunables};
use super::{checked_ceil_div, DType, Family, Geometry, Kernels, Params, Problem, Shape};
use crate::gpu::device::{Arg, DevBuf, Gpu, Kernel};
use crate::gpu::util::{Comparison, Util};
use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};

pub const REFERENCE_SOURCE: &str = include_str!("../../kernels/rope/reference.cu");
/// The template (for its defaults; VEC's comes from elementwise.cuh, which the sweep sets).
pub const TEMPLATE_SOURCE: &str = include_str!("../../kernels/rope/rope_llama3.cu");

/// Device pointers of one rope_llama3 launch (contract in kernels/rope/rope_llama3.cu); the
/// outputs may equal the inputs (rotation in place).
#[derive(Debug, Clone, Copy)]
pub struct RopeIo {
    pub q_in: u64,
    pub k_in: u64,
    pub q_out: u64,
    pub k_out: u64,
    /// int32 position offset per sequence.
    pub offsets: u64,
    /// fp32 [D/2] inverse frequencies.
    pub inv_freq: u64,
}

/// The integers of one rope_llama3 launch: `tokens` rows in sequences of `seq_len`, row
/// strides (elements) of Q and K.
#[derive(Debug, Clone, Copy)]
pub struct RopeDims {
    pub tokens: i64,
    pub seq_len: i64,
    pub hq: i64,
    pub hkv: i64,
    pub d: i64,
    pub q_stride: i64,
    pub k_stride: i64,
}

/// The argument list of rope_llama3, which rope_reference shares: the pointers, then the
/// integers, in the entry's order.
pub fn rope_args(io: &RopeIo, n: &RopeDims) -> Vec<Arg> {
    let mut args = Arg::ptrs([io.q_in, io.k_in, io.q_out, io.k_out, io.offsets, io.inv_freq]);
    args.extend(Arg::i32s([n.tokens, n.seq_len, n.hq, n.hkv, n.d, n.q_stride, n.k_stride]));
    args
}

/// The one launch of rope_llama3, built once from a variant's tunables; the sweep, the
/// selftest and the model launch through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RopeLaunch {
    threads: i64,
    tokens_per_block: i64,
    vec: i64,
}

impl RopeLaunch {
    pub fn new(t: &Tunables) -> Result<RopeLaunch> {
        t.expect_variant("rope", "rope_llama3")?;
        Ok(RopeLaunch { threads: t.get("THREADS")?, tokens_per_block: t.get("TOKENS_PER_BLOCK")?, vec: t.get("VEC")? })
    }

    /// Grid and block for `tokens` tokens of head dim `d`; an error when one head's pairs do
    /// not split into whole vectors or need more threads than the block has.
    pub fn geometry(&self, tokens: i64, d: i64) -> Result<Geometry> {
        let (half, vec, threads) = (d / 2, self.vec, self.threads);
        if half % vec != 0 {
            bail!("rope_llama3 with VEC = {vec} needs D/2 = {half} to be a multiple of VEC");
        }
        if threads < half / vec {
            bail!("rope_llama3: THREADS = {threads} is fewer than the D/2/VEC = {} threads one head needs", half / vec);
        }
        Ok(Geometry {
            grid: (checked_ceil_div(tokens, self.tokens_per_block)? as u32, 1, 1),
            block: (threads as u32, 1, 1),
            smem: 0,
        })
    }

    /// # Safety
    /// `k` is the rope_llama3 entry of a module compiled with these tunables; the Q and K
    /// buffers hold `tokens` rows of their strides, `offsets` one int per sequence,
    /// `inv_freq` D/2 floats, all live until the launch ran.
    pub unsafe fn launch(&self, gpu: &Gpu, k: &Kernel, io: &RopeIo, n: &RopeDims) -> Result<()> {
        let g = self.geometry(n.tokens, n.d)?;
        // SAFETY: the caller's contract; the arguments are the entry's, in its order.
        unsafe { gpu.launch(k, g.grid, g.block, g.smem, &rope_args(io, n)) }
    }
}

/// Llama-3.x `rope_scaling` ("rope_type": "llama3") and `rope_theta`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3Rope {
    pub theta: f64,
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position: f64,
}

impl Default for Llama3Rope {
    /// Llama-3.1/3.2 values (Llama-3-8B's config.json).
    fn default() -> Self {
        Llama3Rope {
            theta: 500_000.0,
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position: 8192.0,
        }
    }
}

impl Llama3Rope {
    /// Inverse frequencies of the D/2 rotated pairs, as fp32 (what the kernels multiply
    /// positions by). Short wavelengths are kept, long ones divided by `factor`, and the band
    /// between is blended linearly in 1/wavelength, as in Hugging Face's
    /// `_compute_llama3_parameters` (computed here in f64 and rounded once, which may differ
    /// from HF's fp32 chain by an ulp).
    pub fn inv_freq(&self, head_dim: usize) -> Vec<f32> {
        let low_wavelen = self.original_max_position / self.low_freq_factor;
        let high_wavelen = self.original_max_position / self.high_freq_factor;
        (0..head_dim / 2)
            .map(|i| {
                let base = self.theta.powf(-((2 * i) as f64) / head_dim as f64);
                let wavelen = 2.0 * std::f64::consts::PI / base;
                let f = if wavelen < high_wavelen {
                    base
                } else if wavelen > low_wavelen {
                    base / self.factor
                } else {
                    let smooth = (self.original_max_position / wavelen - self.low_freq_factor)
                        / (self.high_freq_factor - self.low_freq_factor);
                    (1.0 - smooth) * base / self.factor + smooth * base
                };
                f as f32
            })
            .collect()
    }
}

/// Largest position offset `randomize` draws. Angles stay below 105 615 rad, where sincosf
/// switches to its slow exact reduction: timings do not depend on the seed.
pub const MAX_OFFSET: i32 = 60_000;

pub struct Rope;

impl Family for Rope {
    fn name(&self) -> &'static str {
        "rope"
    }
    fn shape_dims(&self) -> &'static [&'static str] {
        &["B", "S", "Hq", "Hkv", "D"]
    }
    /// Per rotated pair: 4 multiplies and 2 adds (sin/cos, amortized over heads, not counted).
    fn flops(&self, s: &Shape) -> f64 {
        3.0 * elements(s) as f64
    }
    /// Q and K read once and written once, plus the offsets and the frequency table.
    fn min_bytes(&self, s: &Shape, dt: DType) -> f64 {
        2.0 * elements(s) as f64 * dt.bytes() as f64 + 4.0 * s.get("B") as f64 + 4.0 * (s.get("D") / 2) as f64
    }
    fn entries(&self, variant: &str) -> Result<&'static [&'static str]> {
        support::single_variant_entries("rope", variant, &["rope_llama3"])
    }
    fn validate(&self, s: &Shape, _dt: DType) -> Result<()> {
        if s.get("D") % 2 != 0 {
            bail!("rope {}: head dimension D = {} must be even (pairs x[i], x[i + D/2])", s.label(), s.get("D"));
        }
        if s.get("B") * s.get("S") * (s.get("Hq") + s.get("Hkv")) * s.get("D") > i32::MAX as i64 * 16 {
            bail!("rope {}: too large for one launch", s.label());
        }
        if s.get("B") * s.get("S") > i32::MAX as i64 {
            bail!("rope {}: B·S must fit in 32 bits", s.label());
        }
        Ok(())
    }
    fn peer(&self) -> &'static str {
        "torch"
    }
    fn selftest_shapes(&self) -> &'static [&'static str] {
        // One token; decode batches (S = 1, one offset per sequence); odd token and head
        // counts; head dims 64 and 128, and 96 and 34 whose half is not a power of two (34:
        // only VEC = 1 fits); tokens not a multiple of tokens-per-block.
        &["1x1x32x8x128", "8x1x32x8x128", "3x17x5x3x128", "2x33x4x1x64", "1x7x3x3x96", "5x3x2x1x34", "1x129x32x8x128"]
    }
    fn problem(&self, gpu: &Gpu, s: &Shape, dt: DType) -> Result<Box<dyn Problem>> {
        self.validate(s, dt)?;
        Ok(Box::new(RopeProblem::new(gpu, s, dt)?))
    }
}

/// Elements of Q and K together.
fn elements(s: &Shape) -> i64 {
    s.get("B") * s.get("S") * (s.get("Hq") + s.get("Hkv")) * s.get("D")
}

pub struct RopeProblem {
    b: i64,
    s: i64,
    hq: i64,
    hkv: i64,
    d: i64,
    dt: DType,
    q_in: DevBuf,
    k_in: DevBuf,
    q_out: DevBuf,
    k_out: DevBuf,
    /// In-place working copies (verified, then timed).
    q_io: DevBuf,
    k_io: DevBuf,
    q_ref: DevBuf,
    k_ref: DevBuf,
    offsets: DevBuf,
    inv_freq: DevBuf,
    inv_freq_host: Vec<f32>,
    verify_pending: bool,
    reference: Kernel,
    launcher: LauncherCache<RopeLaunch>,
}

impl RopeProblem {
    pub fn new(gpu: &Gpu, sh: &Shape, dt: DType) -> Result<RopeProblem> {
        let (b, s, hq, hkv, d) = (sh.get("B"), sh.get("S"), sh.get("Hq"), sh.get("Hkv"), sh.get("D"));
        let qn = (b * s * hq * d) as usize * dt.bytes();
        let kn = (b * s * hkv * d) as usize * dt.bytes();
        support::ensure_fits(gpu, "rope", sh, 4 * (qn + kn))?;
        let inv_freq_host = Llama3Rope::default().inv_freq(d as usize);
        let inv_freq = gpu.alloc(inv_freq_host.len() * 4)?;
        inv_freq.upload(&inv_freq_host)?;
        Ok(RopeProblem {
            b,
            s,
            hq,
            hkv,
            d,
            dt,
            q_in: gpu.alloc(qn)?,
            k_in: gpu.alloc(kn)?,
            q_out: gpu.alloc(qn)?,
            k_out: gpu.alloc(kn)?,
            q_io: gpu.alloc(qn)?,
            k_io: gpu.alloc(kn)?,
            q_ref: gpu.alloc(qn)?,
            k_ref: gpu.alloc(kn)?,
            offsets: gpu.alloc(b as usize * 4)?,
            inv_freq,
            inv_freq_host,
            verify_pending: false,
            reference: support::family_reference_kernel(gpu, "rope", REFERENCE_SOURCE, dt)?,
            launcher: LauncherCache::default(),
        })
    }

    fn tokens(&self) -> i64 {
        self.b * self.s
    }

    /// Buffers of a candidate's or the reference's launch.
    fn io(&self, q_in: &DevBuf, k_in: &DevBuf, q_out: &DevBuf, k_out: &DevBuf) -> RopeIo {
        RopeIo {
            q_in: q_in.ptr,
            k_in: k_in.ptr,
            q_out: q_out.ptr,
            k_out: k_out.ptr,
            offsets: self.offsets.ptr,
            inv_freq: self.inv_freq.ptr,
        }
    }

    fn dims(&self) -> RopeDims {
        RopeDims {
            tokens: self.tokens(),
            seq_len: self.s,
            hq: self.hq,
            hkv: self.hkv,
            d: self.d,
            q_stride: self.hq * self.d,
            k_stride: self.hkv * self.d,
        }
    }
}

impl Problem for RopeProblem {
    fn randomize(&mut self, gpu: &Gpu, util: &Util, seed: u64) -> Result<()> {
        util.fill(gpu, &self.q_in, self.dt, (self.tokens() * self.hq * self.d) as usize, seed, 1.0)?;
        util.fill(gpu, &self.k_in, self.dt, (self.tokens() * self.hkv * self.d) as usize, seed ^ 0x5eed_0001, 1.0)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed_0003);
        let offsets: Vec<i32> = (0..self.b).map(|_| rng.random_range(0..MAX_OFFSET)).collect();
        self.offsets.upload(&offsets)?;
        let g = support::grid_stride_reference(self.tokens() * (self.hq + self.hkv) * (self.d / 2));
        let args = rope_args(&self.io(&self.q_in, &self.k_in, &self.q_ref, &self.k_ref), &self.dims());
        // SAFETY: buffers allocated by `new` for this shape, offsets one per sequence; the
        // arguments are rope_reference's (the same list as rope_llama3's).
        unsafe { gpu.launch(&self.reference, g.grid, g.block, g.smem, &args)? };
        self.verify_pending = true;
        gpu.synchronize()
    }

    fn poison(&mut self, gpu: &Gpu, util: &Util) -> Result<()> {
        for b in [&self.q_out, &self.k_out, &self.q_io, &self.k_io] {
            util.poison(gpu, b)?;
        }
        Ok(())
    }

    fn run(&mut self, gpu: &Gpu, variant: &str, kernels: &Kernels, p: &Params) -> Result<()> {
        let (l, k) = self.launcher.single_entry(variant, p, kernels, TEMPLATE_SOURCE, self.dt, RopeLaunch::new)?;
        let dims = self.dims();
        if self.verify_pending {
            self.verify_pending = false;
            // SAFETY: Q buffers hold tokens·Hq·D elements and K tokens·Hkv·D (allocated by
            // `new`), offsets B ints, inv_freq D/2 floats; `k` is compiled with `p`.
            unsafe { l.launch(gpu, k, &self.io(&self.q_in, &self.k_in, &self.q_out, &self.k_out), &dims)? };
            support::copy(gpu, &self.q_io, &self.q_in)?;
            support::copy(gpu, &self.k_io, &self.k_in)?;
        }
        // SAFETY: as above, rotating q_io and k_io in place.
        unsafe { l.launch(gpu, k, &self.io(&self.q_io, &self.k_io, &self.q_io, &self.k_io), &dims) }
    }

    fn check(&mut self, gpu: &Gpu, util: &Util) -> Result<Comparison> {
        let qn = (self.tokens() * self.hq * self.d) as usize;
        let kn = (self.tokens() * self.hkv * self.d) as usize;
        Ok(support::worst(&[
            util.compare(gpu, &self.q_out, &self.q_ref, self.dt, qn)?,
            util.compare(gpu, &self.k_out, &self.k_ref, self.dt, kn)?,
            util.compare(gpu, &self.q_io, &self.q_ref, self.dt, qn)?,
            util.compare(gpu, &self.k_io, &self.k_ref, self.dt, kn)?,
        ]))
    }

    fn run_peer(&mut self, _gpu: &Gpu) -> Result<Option<()>> {
        Ok(None) // the torch version is measured by scripts/torch_peers.py
    }

    fn reference_vs_cpu(&mut self, gpu: &Gpu) -> Result<Option<f64>> {
        gpu.synchronize()?;
        let (tokens, d, dt) = (self.tokens() as usize, self.d as usize, self.dt);
        let offsets: Vec<i32> = self.offsets.download(self.b as usize)?;
        let mut worst = 0.0f64;
        for (heads, input, reference) in
            [(self.hq as usize, &self.q_in, &self.q_ref), (self.hkv as usize, &self.k_in, &self.k_ref)]
        {
            let n = tokens * heads * d;
            let x = support::download_f64(input, dt, n)?;
            let got = support::download_f64(reference, dt, n)?;
            let want = rotate_cpu(&x, &offsets, &self.inv_freq_host, self.s as usize, heads, d);
            worst = worst.max(support::rel_err(&got, &want));
        }
        Ok(Some(worst))
    }
}

/// RoPE on the CPU in f64, from the same fp32 angles the kernels use: x is [tokens][heads][d].
pub fn rotate_cpu(x: &[f64], offsets: &[i32], inv_freq: &[f32], seq_len: usize, heads: usize, d: usize) -> Vec<f64> {
    let half = d / 2;
    let mut out = vec![0.0; x.len()];
    for (tok, (xt, ot)) in x.chunks(heads * d).zip(out.chunks_mut(heads * d)).enumerate() {
        let pos = offsets[tok / seq_len] + (tok % seq_len) as i32;
        for (xh, oh) in xt.chunks(d).zip(ot.chunks_mut(d)) {
            for i in 0..half {
                let a = ((pos as f32) * inv_freq[i]) as f64;
                let (s, c) = a.sin_cos();
                oh[i] = xh[i] * c - xh[i + half] * s;
                oh[i + half] = xh[i + half] * c + xh[i] * s;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_geometry() {
        let t = |threads: i64, tpb: i64, vec: i64| {
            let p = [("THREADS", threads), ("TOKENS_PER_BLOCK", tpb), ("VEC", vec)];
            RopeLaunch::new(&Tunables::new("rope_llama3", p.iter().map(|(k, v)| (k.to_string(), *v)).collect()))
                .unwrap()
        };
        // Values of the launch before the launcher existed: ⌈tokens/TPB⌉ blocks of THREADS.
        let g = t(64, 2, 8).geometry(4097, 128).unwrap();
        assert_eq!(g, Geometry { grid: (2049, 1, 1), block: (64, 1, 1), smem: 0 });
        assert_eq!(t(128, 1, 1).geometry(1, 34).unwrap().grid, (1, 1, 1));
        assert!(t(64, 1, 8).geometry(1, 36).is_err(), "D/2 = 18 is not a multiple of 8");
        assert!(t(32, 1, 1).geometry(1, 128).is_err(), "64 pairs need 64 threads at VEC = 1");
    }

    #[test]
    fn argument_list() {
        // rope_llama3's and rope_reference's signature: q_in, k_in, q_out, k_out, offsets,
        // inv_freq, then tokens, seq_len, Hq, Hkv, D and the two row strides.
        let io = RopeIo { q_in: 1, k_in: 2, q_out: 3, k_out: 4, offsets: 5, inv_freq: 6 };
        let n = RopeDims { tokens: 7, seq_len: 8, hq: 9, hkv: 10, d: 11, q_stride: 12, k_stride: 13 };
        let want = "[Ptr(1), Ptr(2), Ptr(3), Ptr(4), Ptr(5), Ptr(6), I32(7), I32(8), I32(9), I32(10), I32(11), \
                    I32(12), I32(13)]";
        assert_eq!(format!("{:?}", rope_args(&io, &n)), want);
    }

    #[test]
    fn llama3_scaling_bands() {
        let f = Llama3Rope::default().inv_freq(128);
        assert_eq!(f.len(), 64);
        // Highest frequency (wavelength 2π) is kept; the lowest is divided by 8.
        assert_eq!(f[0], 1.0);
        let base_last = 500_000f64.powf(-126.0 / 128.0);
        assert!(((f[63] as f64) - base_last / 8.0).abs() < 1e-6 * base_last);
        // Frequencies never increase with i, and the blend stays between its ends.
        assert!(f.windows(2).all(|w| w[1] <= w[0]));
    }

    #[test]
    fn counts_and_cpu_rotation() {
        let s = Shape::parse("1x4096x32x8x128", Rope.shape_dims()).unwrap();
        let el = 4096.0 * 40.0 * 128.0;
        assert_eq!(Rope.min_bytes(&s, DType::BF16), 2.0 * el * 2.0 + 4.0 + 256.0);
        assert_eq!(Rope.flops(&s), 3.0 * el);
        assert!(Rope.validate(&Shape::parse("1x1x1x1x33", Rope.shape_dims()).unwrap(), DType::BF16).is_err());
        // Position 0 is the identity; rotation preserves each pair's norm.
        let x = vec![1.0, 2.0, 3.0, 4.0];
        assert_eq!(rotate_cpu(&x, &[0], &[1.0, 0.5], 1, 1, 4), x);
        let y = rotate_cpu(&x, &[7], &[1.0, 0.5], 1, 1, 4);
        assert!(((y[0] * y[0] + y[2] * y[2]) - 10.0).abs() < 1e-12);
    }
}
