//! Selftest checks of the int4 pieces the Llama path uses beyond the family's own sweep
//! checks: the device quantizer against `quant::quantize_rtn` (bit for bit), and the model-
//! facing `gemm_int4::linear::launch_linear` with a residual updated in place (R = Y).

use crate::gpu::device::{DevBuf, Gpu};
use crate::kernels::gemm_int4::linear::{launch_linear, workspace_bytes, Int4Io};
use crate::kernels::gemm_int4::quantize::{Int4Quantizer, QUANTIZE_CHECKS};
use crate::kernels::gemm_int4::tiled::{reads_tiled, PlainInt4, Repacker, TiledInt4};
use crate::kernels::gemm_int4::{GemmInt4, ZeroMode};
use crate::kernels::DType;
use crate::quant::{
    quantize_rtn, reference_gemm_int4_with, GroupSize, HalfDtype, Int4Weight, RtnConfig, WeightRounding, Zeros,
};
use crate::selftest_linear::{
    compile_entries, download_bf16, family_sweep, mixed_magnitude_weights, random_bf16, record_rel_err, rel_err,
    with_overrides, CheckEnv,
};
use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};

/// Random weights with the awkward cases in them: an all-zero group, an all-positive group,
/// an all-negative group, and values of very different magnitude per row.
fn awkward_weights(n: usize, k: usize, seed: u64, half: HalfDtype) -> Vec<f32> {
    let mut w = mixed_magnitude_weights(n, k, seed);
    w[..32].iter_mut().for_each(|v| *v = 0.0);
    w[k..k + 32].iter_mut().for_each(|v| *v = v.abs());
    w[2 * k..2 * k + 32].iter_mut().for_each(|v| *v = -v.abs() - 1e-3);
    // Every value representable in the weight dtype, as a GPU weight would be.
    w.iter().map(|v| half.round(*v)).collect()
}

/// [`awkward_weights`] (bf16) quantized on the host with RTN g128, and its codes and scales
/// uploaded: the host weight for the reference, the device buffers for the kernel.
fn awkward_int4_on_device(gpu: &Gpu, n: usize, k: usize, seed: u64) -> Result<(Int4Weight, DevBuf, DevBuf)> {
    let w = awkward_weights(n, k, seed, HalfDtype::Bf16);
    let qw = quantize_rtn(&w, n, k, &RtnConfig::default())?;
    let dev_wq = gpu.alloc(n * k / 2)?;
    dev_wq.upload(&qw.packed)?;
    let dev_s = gpu.alloc(qw.scales.len() * 2)?;
    dev_s.upload(&qw.scales)?;
    Ok((qw, dev_wq, dev_s))
}

/// Device RTN quantizer == host RTN quantizer, codes and scales, for every group size.
pub fn check_quantizer(env: &CheckEnv, record: &mut dyn FnMut(bool, String)) -> Result<()> {
    let (gpu, cache) = (env.gpu, env.cache);
    let n = 37usize;
    for dt in [DType::BF16, DType::F16] {
        let half = HalfDtype::of(dt);
        for &(group, k) in QUANTIZE_CHECKS {
            let k = k as usize;
            let what = format!("int4 device quantizer {} g{group} {n}x{k}", dt.name());
            let w = awkward_weights(n, k, 7 + group as u64, half);
            let bits: Vec<u16> = w.iter().map(|v| half.from_f32(*v)).collect();
            let dev_w = gpu.alloc(n * k * 2)?;
            dev_w.upload(&bits)?;
            let quantizer = Int4Quantizer::new(gpu, cache, dt, group)?;
            let q = quantizer.quantize(gpu, dev_w.ptr, n as i64, k as i64)?;
            let deq = gpu.alloc(n * k * 2)?;
            quantizer.dequantize(gpu, &q, &deq)?;
            gpu.synchronize()?;
            let deq_dev: Vec<u16> = deq.download(n * k)?;
            let packed: Vec<u32> = q.packed.download(n * k / 8)?;
            let scales: Vec<u16> = q.scales.download(n * k / group as usize)?;
            let cfg = RtnConfig { group: GroupSize::Group(group as usize), symmetric: true, scale_dtype: half };
            let host = quantize_rtn(&w, n, k, &cfg).context("host RTN")?;
            let bad_word = packed.iter().zip(&host.packed).position(|(a, b)| a != b);
            let bad_scale = scales.iter().zip(&host.scales).position(|(a, b)| a != b);
            let deq_host: Vec<u16> = host.dequantize().iter().map(|v| half.from_f32(*v)).collect();
            let bad_deq = deq_dev.iter().zip(&deq_host).position(|(a, b)| a != b);
            match (bad_word, bad_scale) {
                (None, None) if bad_deq.is_none() => record(
                    true,
                    format!("{what}: codes and scales equal quant::quantize_rtn; int4_dequantize equals Int4Weight::dequantize"),
                ),
                (None, None) => {
                    let i = bad_deq.unwrap_or(0);
                    record(false, format!("{what}: int4_dequantize element {i} {:#06x} vs host {:#06x}", deq_dev[i], deq_host[i]))
                }
                (Some(i), _) => record(
                    false,
                    format!(
                        "{what}: word {i} (row {}, col {}) {:#010x} vs host {:#010x}",
                        i / (k / 8),
                        8 * (i % (k / 8)),
                        packed[i],
                        host.packed[i]
                    ),
                ),
                (None, Some(i)) => {
                    record(false, format!("{what}: scale {i} {:#06x} vs host {:#06x}", scales[i], host.scales[i]))
                }
            }
            check_quantizer_asym(gpu, &quantizer, &dev_w, &w, (n, k, group as usize), half, record)?;
        }
    }
    Ok(())
}

/// The device quantizer with zero points == host RTN with zero points: codes, scales and
/// zero points of the weight `w` already on the device as `dev_w`.
fn check_quantizer_asym(
    gpu: &Gpu,
    quantizer: &Int4Quantizer,
    dev_w: &DevBuf,
    w: &[f32],
    (n, k, group): (usize, usize, usize),
    half: HalfDtype,
    record: &mut dyn FnMut(bool, String),
) -> Result<()> {
    let what = format!("int4 device quantizer {half} g{group} {n}x{k} with zero points");
    let q = quantizer.quantize_asym(gpu, dev_w.ptr, n as i64, k as i64)?;
    gpu.synchronize()?;
    let packed: Vec<u32> = q.packed.download(n * k / 8)?;
    let scales: Vec<u16> = q.scales.download(n * k / group)?;
    let zeros: Vec<u8> = q.zeros.as_ref().context("internal: no zero points")?.download(n * k / group)?;
    let cfg = RtnConfig { group: GroupSize::Group(group), symmetric: false, scale_dtype: half };
    let host = quantize_rtn(w, n, k, &cfg).context("host RTN with zero points")?;
    let Zeros::Int(host_zeros) = &host.zeros else { anyhow::bail!("internal: host RTN made no integer zero points") };
    let bad = [
        ("word", packed.iter().zip(&host.packed).position(|(a, b)| a != b)),
        ("scale", scales.iter().zip(&host.scales).position(|(a, b)| a != b)),
        ("zero point", zeros.iter().zip(host_zeros).position(|(a, b)| a != b)),
    ];
    match bad.iter().find(|(_, i)| i.is_some()) {
        None => record(true, format!("{what}: codes, scales and zero points equal quant::quantize_rtn")),
        Some((name, Some(i))) => record(false, format!("{what}: {name} {i} differs from the host's")),
        Some((_, None)) => unreachable!("found by is_some"),
    }
    Ok(())
}

/// `launch_linear` at each variant's template defaults with Y = X·dequant(W)ᵀ + Y in place,
/// against the f64 host product on the same (host-quantized) weight.
pub fn check_model_linear(env: &CheckEnv, record: &mut dyn FnMut(bool, String)) -> Result<()> {
    let (gpu, util, cache) = (env.gpu, env.util, env.cache);
    let sweep = family_sweep(&GemmInt4)?;
    let (n, k) = (70usize, 384usize);
    let (qw, dev_wq, dev_s) = awkward_int4_on_device(gpu, n, k, 3)?;
    // The same weight in the tiled layout, for the variants that read it.
    let tiled = TiledInt4::alloc(gpu, n as i64, k as i64, 128, ZeroMode::Symmetric)?;
    let plain = PlainInt4 { packed: dev_wq.ptr, scales: dev_s.ptr, zeros: 0 };
    if gpu.props.cc_major >= 9 {
        Repacker::with_cache(gpu, cache)?.repack(gpu, plain, &tiled, n as i64, k as i64, 128)?;
    }
    for (variant, m, extra) in [
        ("int4_gemv_tc", 5usize, vec![("SPLITK", 1)]),
        ("int4_gemv_tc", 3, vec![("SPLITK", 2)]),
        ("int4_gemv_tc", 13, vec![("SPLITK", 1), ("ZP_MMA", 0)]),
        ("int4_gemv_tc", 1, vec![("SPLITK", 1), ("DIAG", 1), ("M_TILES", 1)]),
        ("int4_gemv_tc", 1, vec![("SPLITK", 2), ("DIAG", 1), ("M_TILES", 1)]),
        ("int4_gemv_bulk", 5, vec![("M_TILES", 1)]),
        ("int4_gemv_bulk", 13, vec![("M_TILES", 2), ("ZP_MMA", 0), ("TILES", 1)]),
        ("int4_mma", 33, vec![]),
        ("int4_mma_wgmma", 33, vec![("SPLITK", 1)]),
        ("int4_mma_wgmma", 33, vec![("SPLITK", 2)]),
        ("int4_wgmma_rs", 5, vec![("BT", 8), ("SPLITK", 1)]),
        ("int4_wgmma_rs", 33, vec![("BT", 64), ("SPLITK", 2)]),
    ] {
        if (variant.contains("wgmma") || reads_tiled(variant)) && gpu.props.cc_major < 9 {
            continue; // wgmma and bulk copies: Hopper only
        }
        let v = sweep.variant(variant).with_context(|| format!("sweeps/gemm_int4.toml lacks {variant}"))?;
        let params = with_overrides(crate::llama::gpu::linear::template_defaults(&v.source), &extra);
        let what = format!("int4 model linear {variant} {m}x{n}x{k} +residual in place {params:?}");
        let r = (|| -> Result<f64> {
            let ks = compile_entries(gpu, cache, &sweep, &GemmInt4, variant, &params)?;
            let (x, x_host) = random_bf16(gpu, util, m * k, 41)?;
            let (y, r_host) = random_bf16(gpu, util, m * n, 42)?;
            let ws = gpu.alloc(workspace_bytes(variant, &params, m as i64, n as i64).max(16))?;
            util.poison(gpu, &ws)?;
            let (wq, sc) =
                if reads_tiled(variant) { (tiled.codes.ptr, tiled.scales.ptr) } else { (dev_wq.ptr, dev_s.ptr) };
            let io = Int4Io { x: x.ptr, wq, scales: sc, zeros: 0, r: y.ptr, y: y.ptr, ws: ws.ptr };
            // SAFETY: x, y [M,N] (also the residual) and ws (workspace_bytes) were allocated
            // above for this shape, the weights by the quantizer for (N, K); `ks` is compiled
            // with `params`.
            unsafe { launch_linear(gpu, &ks, variant, &params, io, m as i64, n as i64, k as i64, DType::BF16)? };
            gpu.synchronize()?;
            let got = download_bf16(&y, m * n)?;
            let want = reference_gemm_int4_with(&x_host, m, &qw, Some(&r_host), WeightRounding::Exact)?;
            Ok(rel_err(&got, want.iter().map(|&e| f64::from(e))))
        })();
        record_rel_err(record, &what, r, 2e-2);
    }
    Ok(())
}

/// int4_gemv_tc with the SwiGLU epilogue (SWIGLU = 1, as the model compiles it for the
/// gate+up projection on row-interleaved weights): Y [M][N/2] against the host product
/// paired the same way (rows 16i + r and 16i + 8 + r make output 8i + r), each half rounded
/// to bf16 before silu(gate)·up as the unfused path stores them. The output is poisoned.
pub fn check_gate_up_swiglu(env: &CheckEnv, record: &mut dyn FnMut(bool, String)) -> Result<()> {
    let (gpu, util, cache) = (env.gpu, env.util, env.cache);
    let sweep = family_sweep(&GemmInt4)?;
    let v = sweep.variant("int4_gemv_tc").context("sweeps/gemm_int4.toml lacks int4_gemv_tc")?;
    // 7 tiles (N = 112) so that N_TILES = 2 and 4 leave a partial block; K = 384, 3 steps.
    let (n, k) = (112usize, 384usize);
    let half = HalfDtype::Bf16;
    let (qw, dev_wq, dev_s) = awkward_int4_on_device(gpu, n, k, 5)?;
    for (m, extra) in [
        (1usize, vec![("M_TILES", 1), ("N_TILES", 1), ("NUM_WARPS", 4), ("UNROLL", 1)]),
        (5, vec![("M_TILES", 1), ("N_TILES", 2), ("NUM_WARPS", 2), ("UNROLL", 2)]),
        (13, vec![("M_TILES", 2), ("N_TILES", 4), ("NUM_WARPS", 1), ("ZP_MMA", 0)]),
    ] {
        let mut params = with_overrides(crate::llama::gpu::linear::template_defaults(&v.source), &extra);
        params.insert("SPLITK".into(), 1);
        params.insert("SWIGLU".into(), 1);
        let what = format!("int4 gate+up SwiGLU epilogue int4_gemv_tc {m}x{n}x{k} {params:?}");
        let r = (|| -> Result<f64> {
            let ks = compile_entries(gpu, cache, &sweep, &GemmInt4, "int4_gemv_tc", &params)?;
            let (x, x_host) = random_bf16(gpu, util, m * k, 43)?;
            let y = gpu.alloc(m * n / 2 * 2)?;
            util.poison(gpu, &y)?;
            let io = Int4Io { x: x.ptr, wq: dev_wq.ptr, scales: dev_s.ptr, zeros: 0, r: 0, y: y.ptr, ws: 0 };
            // SAFETY: x [M,K] and y [M,N/2] (what SWIGLU writes) were allocated above, the
            // weights for (N, K); SPLITK = 1 needs no workspace; `ks` is compiled with `params`.
            unsafe { launch_linear(gpu, &ks, "int4_gemv_tc", &params, io, m as i64, n as i64, k as i64, DType::BF16)? };
            gpu.synchronize()?;
            let got = download_bf16(&y, m * n / 2)?;
            let full = reference_gemm_int4_with(&x_host, m, &qw, None, WeightRounding::Exact)?;
            let (mut d, mut mx, mut unwritten) = (0f64, 0f64, 0usize);
            for mi in 0..m {
                for j in 0..n / 2 {
                    let (tile, r) = (j / 8, j % 8);
                    let gate = half.round(full[mi * n + 16 * tile + r]);
                    let up = half.round(full[mi * n + 16 * tile + 8 + r]);
                    let want = f64::from(gate / (1.0 + (-gate).exp()) * up);
                    let g = f64::from(got[mi * n / 2 + j]);
                    // An output never written keeps its poison (NaN).
                    unwritten += usize::from(g.is_nan());
                    d = d.max((g - want).abs());
                    mx = mx.max(want.abs());
                }
            }
            anyhow::ensure!(unwritten == 0, "{unwritten} outputs not written (still poisoned)");
            Ok(d / mx.max(1e-30))
        })();
        record_rel_err(record, &what, r, 2e-2);
    }
    Ok(())
}

/// The act-order gather (kernels/gemm_int4/act_order.cu) against the host on an awkward
/// shape: every element moved where the permutation says, and the inverse restoring the
/// input bit for bit.
pub fn check_act_order(env: &CheckEnv, record: &mut dyn FnMut(bool, String)) -> Result<()> {
    use crate::kernels::gemm_int4::act_order::{ColumnGather, ColumnPerm};
    use rand::seq::SliceRandom;
    let (gpu, cache) = (env.gpu, env.cache);
    let (rows, k) = (7usize, 1000usize);
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let src: Vec<u16> = (0..rows * k).map(|_| rng.random()).collect();
    let mut perm: Vec<u32> = (0..k as u32).collect();
    perm.shuffle(&mut rng);
    let p = ColumnPerm::upload(gpu, &perm)?;
    let g = ColumnGather::new(gpu, cache)?;
    let (d_src, d_out, d_back) = (gpu.alloc(rows * k * 2)?, gpu.alloc(rows * k * 2)?, gpu.alloc(rows * k * 2)?);
    d_src.upload(&src)?;
    crate::kernels::support::fill_bytes(gpu, &d_out, 0xff)?; // NaN bits: an unwritten element shows
                                                             // SAFETY: three distinct buffers of rows·k u16; both permutations have k entries.
    unsafe {
        g.gather(gpu, d_src.ptr, d_out.ptr, p.perm.ptr, rows as i64, k as i64)?;
        g.gather(gpu, d_out.ptr, d_back.ptr, p.inverse.ptr, rows as i64, k as i64)?;
    }
    gpu.synchronize()?;
    let (out, back): (Vec<u16>, Vec<u16>) = (d_out.download(rows * k)?, d_back.download(rows * k)?);
    let want: Vec<u16> = (0..rows * k).map(|i| src[i / k * k + perm[i % k] as usize]).collect();
    let what = format!("int4 act-order gather {rows}x{k}");
    match (out.iter().zip(&want).position(|(a, b)| a != b), back == src) {
        (None, true) => record(true, format!("{what}: x[:, perm] equals the host's; the inverse restores x")),
        (Some(i), _) => record(false, format!("{what}: element {i} is {:#06x}, the host's {:#06x}", out[i], want[i])),
        (None, false) => record(false, format!("{what}: the inverse permutation did not restore the input")),
    }
    Ok(())
}
