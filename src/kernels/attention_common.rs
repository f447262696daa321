//! What the attention families share: the reference kernels (kernels/attention/reference.cu),
//! the deterministic ragged-length pattern of the `_varlen` families, shape checks, and the f64 CPU attention used to check the
//! reference itself.

use super::{DType, Shape};
use crate::gpu::device::{Arg, DevBuf, Gpu, Kernel};
use anyhow::{bail, Result};

pub const REFERENCE_SOURCE: &str = include_str!("../../kernels/attention/reference.cu");
/// The template texts (for their defaults; they include attention_common.cuh, so compiling one
/// goes through `nvrtc::load_source` on the file, as the sweeps do).
pub const PREFILL_SOURCE: &str = include_str!("../../kernels/attention/prefill.cu");
pub const DECODE_SOURCE: &str = include_str!("../../kernels/attention/decode_splitkv.cu");

/// Head dimensions the tensor-core kernels take (the 16-byte-chunk swizzle needs D % 64 == 0).
pub const HEAD_DIMS: [i64; 4] = [64, 128, 192, 256];

/// Compiles the reference module for this GPU and dtype (through the module cache) and loads `entry`.
pub fn reference_kernel(gpu: &Gpu, dt: DType, entry: &str) -> Result<Kernel> {
    let mut k =
        super::support::reference_kernels(gpu, "kernels/attention/reference.cu", REFERENCE_SOURCE, dt, &[entry])?;
    k.remove(entry).ok_or_else(|| anyhow::anyhow!("attention reference module lacks {entry}"))
}

/// Sequence lengths of a batch. Equal lengths for the plain families; for the `_varlen`
/// families a fixed ragged pattern in 0..=max whose first length is `max` (so `max` is the
/// longest) and which, from B >= 2 on, includes a length of 1, and from B >= 6 an empty
/// sequence: max, 1, ⌈max/2⌉, max−1, max/3+7 (≤ max), 0, then repeating.
pub fn lengths(batch: i64, max: i64, ragged: bool) -> Vec<i64> {
    (0..batch)
        .map(|i| {
            if !ragged || i == 0 {
                return max;
            }
            match i % 6 {
                0 => max,
                1 => 1.min(max),
                2 => (max + 1) / 2,
                3 => (max - 1).max(0),
                4 => (max / 3 + 7).min(max),
                _ => 0,
            }
        })
        .collect()
}

/// Exclusive prefix sums: cu[0] = 0, cu[b+1] = cu[b] + len[b].
pub fn cu_seqlens(lens: &[i64]) -> Vec<i32> {
    let mut cu = vec![0i32];
    for l in lens {
        cu.push(cu.last().unwrap() + *l as i32);
    }
    cu
}

/// Checks shared by both families: dtype, head dim, head grouping.
pub fn validate_heads(family: &str, s: &Shape, dt: DType) -> Result<()> {
    let (h, kvh, d) = (s.get("H"), s.get("KVH"), s.get("D"));
    if dt == DType::F32 {
        bail!("{family} takes bf16 or fp16 (fp32 accumulation inside); fp32 inputs are not supported");
    }
    if !HEAD_DIMS.contains(&d) {
        bail!("{family} {}: head dim D = {d} is not supported; the kernels take D in {HEAD_DIMS:?}", s.label());
    }
    if h % kvh != 0 {
        bail!(
            "{family} {}: H = {h} query heads is not a multiple of KVH = {kvh} KV heads (grouped-query attention)",
            s.label()
        );
    }
    Ok(())
}

/// softmax(scale · q·k_j) · v_j over `n` keys in f64; key j's row of D values starts at
/// `k[kv_off(j)..]` and `v[kv_off(j)..]`. Zero keys give zeros.
pub fn attend_f64(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    n: usize,
    d: usize,
    scale: f64,
    kv_off: impl Fn(usize) -> usize,
) -> Vec<f64> {
    if n == 0 {
        return vec![0.0; d];
    }
    let s: Vec<f64> = (0..n)
        .map(|j| {
            let kr = &k[kv_off(j)..kv_off(j) + d];
            scale * q.iter().zip(kr).map(|(a, b)| a * b).sum::<f64>()
        })
        .collect();
    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let p: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
    let l: f64 = p.iter().sum();
    let mut out = vec![0.0; d];
    for (j, pj) in p.iter().enumerate() {
        let vr = &v[kv_off(j)..kv_off(j) + d];
        for (o, x) in out.iter_mut().zip(vr) {
            *o += pj * x;
        }
    }
    out.iter_mut().for_each(|o| *o /= l);
    out
}

/// The attention softmax scale 1/√D, as the families, their references and the model pass it.
pub fn softmax_scale(head_dim: i64) -> f32 {
    1.0 / (head_dim as f32).sqrt()
}

/// Launches a reference kernel of kernels/attention/reference.cu (attn_ref_prefill,
/// attn_ref_decode): one block of REF_THREADS = 128 threads per (row, head), a row being a
/// prefill token or a decode sequence. Both take Q, K, V, O, the per-sequence integers
/// (decode `lens`, prefill `cu_seqlens`), then `n` (decode: the cache capacity L, prefill:
/// the sequence count), H, KVH, D and the softmax scale.
///
/// # Safety
/// `k` is one of those entries and the buffers hold what it reads and writes for `rows` rows
/// of this shape; all live until the launch ran.
#[allow(clippy::too_many_arguments)]
pub unsafe fn launch_reference(
    gpu: &Gpu,
    k: &Kernel,
    rows: i64,
    [q, kc, vc, o, ints]: [&DevBuf; 5],
    n: i64,
    h: i64,
    kvh: i64,
    d: i64,
    scale: f32,
) -> Result<()> {
    let mut args = Arg::ptrs([q.ptr, kc.ptr, vc.ptr, o.ptr, ints.ptr]);
    args.extend(Arg::i32s([n, h, kvh, d]));
    args.push(Arg::F32(scale));
    // SAFETY: the caller's contract; the arguments follow the entries' signature.
    unsafe { gpu.launch(k, (rows as u32, h as u32, 1), (128, 1, 1), 0, &args) }
}

/// The per-sequence int32s a family's kernels read (decode `lens`, prefill `cu_seqlens`),
/// uploaded to a buffer of their own.
pub fn upload_ints(gpu: &Gpu, ints: &[i32]) -> Result<DevBuf> {
    let buf = gpu.alloc(ints.len() * 4)?;
    buf.upload(ints)?;
    Ok(buf)
}

/// max |cpu − got| / max |cpu| over sampled rows: each item is one (token or sequence, head)
/// row of the f64 attention and the reference kernel's output for it.
pub fn max_rel_diff<'a>(rows: impl IntoIterator<Item = (Vec<f64>, &'a [f64])>) -> f64 {
    let (mut max_diff, mut max_ref) = (0.0f64, 0.0f64);
    for (want, got) in rows {
        for (x, y) in want.iter().zip(got) {
            max_diff = max_diff.max((x - y).abs());
            max_ref = max_ref.max(x.abs());
        }
    }
    max_diff / max_ref.max(1e-30)
}

/// Up to `max` indices of 0..n, evenly spread and always including the first and last.
pub fn sample_indices(n: usize, max: usize) -> Vec<usize> {
    if n <= max {
        return (0..n).collect();
    }
    let mut v: Vec<usize> = (0..max).map(|i| i * (n - 1) / (max - 1)).collect();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ragged_lengths() {
        assert_eq!(lengths(3, 100, false), vec![100, 100, 100]);
        assert_eq!(lengths(7, 100, true), vec![100, 1, 50, 99, 40, 0, 100]);
        assert_eq!(lengths(6, 1, true), vec![1, 1, 1, 0, 1, 0]);
        assert_eq!(cu_seqlens(&[3, 0, 2]), vec![0, 3, 3, 5]);
    }

    #[test]
    fn cpu_attention_is_a_weighted_mean() {
        // two keys with equal scores: the mean of the values
        let q = [1.0, 0.0];
        let k = [0.5, 1.0, 0.5, -1.0];
        let v = [1.0, 2.0, 3.0, 4.0];
        let o = attend_f64(&q, &k, &v, 2, 2, 1.0, |j| j * 2);
        assert!((o[0] - 2.0).abs() < 1e-12 && (o[1] - 3.0).abs() < 1e-12);
        assert_eq!(attend_f64(&q, &k, &v, 0, 2, 1.0, |j| j * 2), vec![0.0, 0.0]);
        assert_eq!(sample_indices(5, 10), vec![0, 1, 2, 3, 4]);
        let s = sample_indices(1000, 4);
        assert_eq!((s[0], *s.last().unwrap(), s.len()), (0, 999, 4));
    }
}
