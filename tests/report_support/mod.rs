//! Synthetic sweep results shared by the report tests: plausible H100-like numbers, a
//! GEMM sweep with a cuBLAS peer and failures, and a memory-bound RMSNorm sweep.
#![allow(dead_code)]

use kernlab::roofline::Ceilings;
use kernlab::tune::record::{CandidateRecord, Status, Timing};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub fn ceilings() -> Ceilings {
    let mut c = Ceilings {
        gpu: "NVIDIA H100 80GB HBM3".into(),
        compute_capability: "9.0".into(),
        dram_copy_gbps: 2950.0,
        dram_read_gbps: 3180.0,
        l2_gbps: 9800.0,
        tensor_bf16_tflops: 720.0,
        tensor_fp16_tflops: 725.0,
        fp32_fma_tflops: 51.0,
        measured_at: "2025-06-01T12:00:00Z".into(),
        ..Default::default()
    };
    c.peers.insert("cublas_bf16_8192_tflops".into(), 705.0);
    c.environment.insert("nvrtc".into(), "13.0".into());
    c
}

fn timing(t: f64) -> Option<Timing> {
    Some(Timing { median_us: t, p20_us: t * 0.98, p80_us: t * 1.02, min_us: t * 0.97, reps: 50 })
}

fn gemm_dims(shape: &str) -> (f64, f64, f64) {
    let v: Vec<f64> = shape.split('x').map(|x| x.parse().unwrap()).collect();
    (v[0], v[1], v[2])
}

/// Fills rate columns from FLOPs, bytes and time, as the sweep runner does.
fn measured(mut r: CandidateRecord, flops: f64, bytes: f64, t_us: f64, c: &Ceilings) -> CandidateRecord {
    let s = t_us * 1e-6;
    r.timing = timing(t_us);
    r.tflops = Some(flops / s / 1e12);
    r.gbps = Some(bytes / s / 1e9);
    r.intensity = Some(flops / bytes);
    r.pct_of_bound = c.roof_for_dtype(&r.dtype).pct_of_bound(flops, bytes, s);
    r
}

pub fn gemm_records() -> Vec<CandidateRecord> {
    let c = ceilings();
    let mut out = Vec::new();
    for shape in ["16x4096x14336", "128x4096x4096", "4096x4096x4096"] {
        let (m, n, k) = gemm_dims(shape);
        let flops = 2.0 * m * n * k;
        let bytes = 2.0 * (m * k + k * n + m * n);
        let bound = c.roof_for_dtype("bf16");
        let t_min = bound.attainable_tflops(flops / bytes);
        let ideal_us = flops / (t_min * 1e12) * 1e6;
        let peer_us = ideal_us / 0.78;
        let mut i = 0u64;
        for variant in ["mma_multistage", "mma_splitk"] {
            for bm in [32i64, 64, 128, 256] {
                for bn in [64i64, 128, 256] {
                    for stages in [2i64, 3, 4] {
                        i += 1;
                        let mut params = BTreeMap::new();
                        params.insert("BM".into(), bm);
                        params.insert("BN".into(), bn);
                        params.insert("STAGES".into(), stages);
                        let base = CandidateRecord {
                            family: "gemm".into(),
                            variant: variant.into(),
                            dtype: "bf16".into(),
                            shape: shape.into(),
                            params,
                            gpu: c.gpu.clone(),
                            ..Default::default()
                        };
                        if bm == 256 && bn == 256 && stages == 4 {
                            out.push(CandidateRecord {
                                status: Some(Status::CompileError),
                                error: "too much shared memory".into(),
                                ..base
                            });
                            continue;
                        }
                        if i.is_multiple_of(17) {
                            out.push(CandidateRecord { status: Some(Status::Wrong), max_rel_err: Some(0.3), ..base });
                            continue;
                        }
                        // BM matters a lot (small M wants small BM), BN some, STAGES little.
                        let bm_pen = ((bm as f64).log2() - if m < 64.0 { 5.0 } else { 7.0 }).abs() * 0.35;
                        let bn_pen = ((bn as f64).log2() - 7.0).abs() * 0.12;
                        let st_pen = (stages as f64 - 3.0).abs() * 0.04;
                        let v_pen = if variant == "mma_splitk" {
                            if m < 64.0 {
                                -0.05
                            } else {
                                0.15
                            }
                        } else {
                            0.0
                        };
                        let noise = ((i * 2654435761) % 1000) as f64 / 1000.0 * 0.05;
                        let t = ideal_us / 0.85 * (1.0 + bm_pen + bn_pen + st_pen + v_pen + noise);
                        let mut r = measured(CandidateRecord { status: Some(Status::Ok), ..base }, flops, bytes, t, &c);
                        r.peer_us = Some(peer_us);
                        r.speedup_vs_peer = Some(peer_us / t);
                        out.push(r);
                    }
                }
            }
        }
        let peer = CandidateRecord {
            family: "gemm".into(),
            variant: "cublas".into(),
            dtype: "bf16".into(),
            shape: shape.into(),
            status: Some(Status::Peer),
            gpu: c.gpu.clone(),
            ..Default::default()
        };
        out.push(measured(peer, flops, bytes, peer_us, &c));
    }
    out
}

pub fn rmsnorm_records() -> Vec<CandidateRecord> {
    let c = ceilings();
    let mut out = Vec::new();
    for shape in ["16x4096", "2048x4096"] {
        let v: Vec<f64> = shape.split('x').map(|x| x.parse().unwrap()).collect();
        let flops = 4.0 * v[0] * v[1];
        let bytes = 2.0 * 2.0 * v[0] * v[1] + 2.0 * v[1];
        let ideal_us = bytes / (c.dram_gbps() * 1e9) * 1e6 + 2.0;
        for rows in [1i64, 2, 4, 8] {
            for vec in [2i64, 4, 8] {
                let mut params = BTreeMap::new();
                params.insert("ROWS_PER_BLOCK".into(), rows);
                params.insert("VEC".into(), vec);
                let base = CandidateRecord {
                    family: "rmsnorm".into(),
                    variant: "warp_per_row".into(),
                    dtype: "bf16".into(),
                    shape: shape.into(),
                    params,
                    status: Some(Status::Ok),
                    gpu: c.gpu.clone(),
                    ..Default::default()
                };
                let t = ideal_us * (1.1 + 0.3 / vec as f64 + 0.05 * rows as f64);
                let mut r = measured(base, flops, bytes, t, &c);
                r.peer_us = Some(ideal_us * 1.6);
                r.speedup_vs_peer = Some(ideal_us * 1.6 / t);
                out.push(r);
            }
        }
    }
    out
}

/// A directory to keep outputs in when KERNLAB_REPORT_OUT is set (to look at the PNGs),
/// else a fresh temporary one.
pub fn out_dir(name: &str) -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("KERNLAB_REPORT_OUT") {
        Some(d) => {
            let p = PathBuf::from(d).join(name);
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            (p, None)
        }
        None => {
            let t = tempfile::tempdir().unwrap();
            (t.path().to_path_buf(), Some(t))
        }
    }
}

/// Decodes a PNG and returns its pixel size, and whether it has more than a few colours
/// (a blank image would mean nothing was drawn).
pub fn png_info(path: &Path) -> ((u32, u32), usize) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let bytes = &buf[..info.buffer_size()];
    let px = info.color_type.samples();
    let mut colors = std::collections::HashSet::new();
    for chunk in bytes.chunks(px).step_by(7) {
        colors.insert(chunk.to_vec());
        if colors.len() > 50 {
            break;
        }
    }
    ((info.width, info.height), colors.len())
}
