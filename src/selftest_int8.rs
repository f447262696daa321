//! Selftest checks of the int8 pieces the Llama path uses beyond the family's own sweep
//! checks: the device quantizer against `quant::quantize_int8_per_channel` (bit for bit) on
//! awkward weights, and the model-facing `gemm_int8::linear::launch_linear` with a residual
//! updated in place (R = Y).

use crate::gpu::device::Gpu;
use crate::kernels::gemm_int8::{launch_linear, workspace_bytes, DeviceInt8, GemmInt8, Int8Io, Int8Quantizer};
use crate::kernels::tunables::template_defaults;
use crate::kernels::DType;
use crate::quant::{quantize_int8_per_channel, HalfDtype, Int8Weight};
use crate::selftest_linear::{
    compile_entries, download_bf16, family_sweep, mixed_magnitude_weights, random_bf16, record_rel_err, rel_err,
    with_overrides, CheckEnv,
};
use anyhow::{Context, Result};

/// Random weights with the awkward rows in them: an all-zero row, an all-positive row, an
/// all-negative one, a row whose maximum is a tie of ±, rows of very different magnitude,
/// and values on the rounding boundaries (w = (j + 0.5)·scale), every value representable
/// in the weight dtype.
fn awkward_weights(n: usize, k: usize, seed: u64, half: HalfDtype) -> Vec<f32> {
    let mut w = mixed_magnitude_weights(n, k, seed);
    w[..k].iter_mut().for_each(|v| *v = 0.0);
    w[k..2 * k].iter_mut().for_each(|v| *v = v.abs());
    w[2 * k..3 * k].iter_mut().for_each(|v| *v = -v.abs() - 1e-3);
    w[3 * k..4 * k].iter_mut().for_each(|v| *v *= 0.05);
    w[3 * k] = 1.0;
    w[3 * k + 1] = -1.0;
    // Row 4: 127 = max, so the scale is exactly 1 and w = j + 0.5 is a tie for round().
    for (j, v) in w[4 * k..5 * k].iter_mut().enumerate() {
        *v = (j % 127) as f32 + 0.5 - 63.0;
    }
    w[4 * k] = 127.0;
    w.iter().map(|v| half.round(*v)).collect()
}

/// Device int8 quantizer == host int8 quantizer (codes and scales), and int8_dequantize ==
/// `Int8Weight::dequantize` rounded to the dtype, in bf16 and fp16.
pub fn check_quantizer(env: &CheckEnv, record: &mut dyn FnMut(bool, String)) -> Result<()> {
    let (gpu, cache) = (env.gpu, env.cache);
    for (n, k) in [(37usize, 784usize), (9, 16)] {
        for dt in [DType::BF16, DType::F16] {
            let half = HalfDtype::of(dt);
            let what = format!("int8 device quantizer {} {n}x{k}", dt.name());
            let w = awkward_weights(n, k, 7 + k as u64, half);
            let bits: Vec<u16> = w.iter().map(|v| half.from_f32(*v)).collect();
            let dev_w = gpu.alloc(n * k * 2)?;
            dev_w.upload(&bits)?;
            let quantizer = Int8Quantizer::new(gpu, cache, dt)?;
            let q = quantizer.quantize(gpu, dev_w.ptr, n as i64, k as i64)?;
            let deq = gpu.alloc(n * k * 2)?;
            util_poison_bytes(gpu, &deq)?;
            quantizer.dequantize(gpu, &q, &deq)?;
            gpu.synchronize()?;
            let codes: Vec<i8> = q.q.download(n * k)?;
            let scales: Vec<u16> = q.scales.download(n)?;
            let deq_dev: Vec<u16> = deq.download(n * k)?;
            let host = quantize_int8_per_channel(&w, n, k, half).context("host int8 quantization")?;
            let deq_host: Vec<u16> = host.dequantize().iter().map(|v| half.from_f32(*v)).collect();
            let bad_scale = scales.iter().zip(&host.scales).position(|(a, b)| a != b);
            let bad_code = codes.iter().zip(&host.q).position(|(a, b)| a != b);
            let bad_deq = deq_dev.iter().zip(&deq_host).position(|(a, b)| a != b);
            match (bad_scale, bad_code, bad_deq) {
                (None, None, None) => record(
                    true,
                    format!(
                        "{what}: codes and scales equal quant::quantize_int8_per_channel; int8_dequantize equals \
                         Int8Weight::dequantize"
                    ),
                ),
                (Some(i), _, _) => record(
                    false,
                    format!("{what}: scale of row {i} {:#06x} vs host {:#06x}", scales[i], host.scales[i]),
                ),
                (None, Some(i), _) => record(
                    false,
                    format!("{what}: code at row {}, col {}: {} vs host {}", i / k, i % k, codes[i], host.q[i]),
                ),
                (None, None, Some(i)) => record(
                    false,
                    format!(
                        "{what}: int8_dequantize at row {}, col {}: {:#06x} vs host {:#06x}",
                        i / k,
                        i % k,
                        deq_dev[i],
                        deq_host[i]
                    ),
                ),
            }
        }
    }
    Ok(())
}

/// Sets every byte to 0xFF (NaN), without a `Util`.
fn util_poison_bytes(gpu: &Gpu, buf: &crate::gpu::device::DevBuf) -> Result<()> {
    buf.upload(&vec![0xFFu8; buf.bytes])?;
    gpu.synchronize()
}

/// Y = X·dequant(W)ᵀ (+ R) in f64 on the host, from the exact int8 weight.
fn host_linear(x: &[f32], m: usize, w: &Int8Weight, r: Option<&[f32]>) -> Vec<f64> {
    let (n, k) = (w.n, w.k);
    let deq = w.dequantize();
    let mut y = vec![0f64; m * n];
    for mi in 0..m {
        for ni in 0..n {
            let dot: f64 =
                x[mi * k..][..k].iter().zip(&deq[ni * k..][..k]).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
            y[mi * n + ni] = dot + r.map_or(0.0, |r| f64::from(r[mi * n + ni]));
        }
    }
    y
}

/// `launch_linear` at the template defaults (plus a few overrides) with Y = X·dequant(W)ᵀ + Y
/// in place, against the f64 host product on the same (host-quantized) weight.
pub fn check_model_linear(env: &CheckEnv, record: &mut dyn FnMut(bool, String)) -> Result<()> {
    let (gpu, util, cache) = (env.gpu, env.util, env.cache);
    let sweep = family_sweep(&GemmInt8)?;
    let v = sweep.variant("int8_gemv").context("sweeps/gemm_int8.toml lacks int8_gemv")?;
    // N = 70: not a multiple of any block's rows; K = 784 = 49 chunks of 16 (a warp step and
    // a tail of 17).
    let (n, k) = (70usize, 784usize);
    let w = awkward_weights(n, k, 3, HalfDtype::Bf16);
    let qw = quantize_int8_per_channel(&w, n, k, HalfDtype::Bf16)?;
    let dev = DeviceInt8::alloc(gpu, n as i64, k as i64)?;
    dev.q.upload(&qw.q)?;
    dev.scales.upload(&qw.scales)?;
    for (m, extra) in [
        (1usize, vec![("M_MAX", 1), ("SPLITK", 1)]),
        (5, vec![("M_MAX", 8), ("SPLITK", 1)]),
        (3, vec![("M_MAX", 4), ("SPLITK", 2)]),
        (13, vec![("M_MAX", 16), ("SPLITK", 3), ("ROWS_PER_WARP", 1)]),
        (16, vec![("M_MAX", 16), ("SPLITK", 1), ("UNROLL", 1)]),
    ] {
        let params = with_overrides(template_defaults(&v.source, DType::BF16), &extra);
        let what = format!("int8 model linear int8_gemv {m}x{n}x{k} +residual in place {params:?}");
        let r = (|| -> Result<f64> {
            let ks = compile_entries(gpu, cache, &sweep, &GemmInt8, "int8_gemv", &params)?;
            let (x, x_host) = random_bf16(gpu, util, m * k, 41)?;
            let (y, r_host) = random_bf16(gpu, util, m * n, 42)?;
            let ws = gpu.alloc(workspace_bytes("int8_gemv", &params, m as i64, n as i64).max(16))?;
            util.poison(gpu, &ws)?;
            let io = Int8Io { x: x.ptr, wq: dev.q.ptr, scales: dev.scales.ptr, r: y.ptr, y: y.ptr, ws: ws.ptr };
            // SAFETY: x [M,K], y [M,N] (also the residual) and ws (workspace_bytes) were
            // allocated above for this shape, the weight for (N, K); `ks` is compiled with
            // `params` in bf16.
            unsafe { launch_linear(gpu, &ks, "int8_gemv", &params, io, m as i64, n as i64, k as i64, DType::BF16)? };
            gpu.synchronize()?;
            let got = download_bf16(&y, m * n)?;
            Ok(rel_err(&got, host_linear(&x_host, m, &qw, Some(&r_host))))
        })();
        // Only the output's bf16 rounding and fp32 sums differ: the weight is exact here.
        record_rel_err(record, &what, r, 1e-2);
    }
    Ok(())
}
