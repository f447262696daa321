//! PyTorch as the peer of the memory-bound and attention families.
//!
//! PyTorch cannot run inside kernlab, so `scripts/torch_peers.py` measures the same shapes
//! (CUDA events, L2 flushed, median) and writes `reports/torch_peers.csv`; the GPU check
//! script runs it in the same session as the sweeps. The runner then puts the fastest
//! PyTorch backend for each (op, shape, dtype) beside kernlab's winner.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// The op name the script uses for a family.
pub fn op_for_family(family: &str) -> Option<&'static str> {
    Some(match family {
        "softmax" => "softmax",
        "rmsnorm" => "rmsnorm",
        "rope" => "rope",
        "swiglu" => "swiglu",
        "attention_prefill" => "attn_prefill",
        "attention_decode" => "attn_decode",
        _ => return None,
    })
}

/// The op the script times beside a family whose peer runs inside kernlab: PyTorch's int4
/// kernel (tinygemm) beside cuBLAS in gemm_int4's table.
pub fn op_beside_family(family: &str) -> Option<(&'static str, &'static str)> {
    match family {
        "gemm_int4" => Some(("int4_tinygemm", "tinygemm")),
        _ => None,
    }
}

/// Fastest PyTorch time per (op, shape, dtype): (median µs, p20, p80, backend).
#[derive(Debug, Clone, Default)]
pub struct TorchPeers {
    pub best: BTreeMap<(String, String, String), (f64, f64, f64, String)>,
}

impl TorchPeers {
    pub fn load(path: &Path) -> Result<TorchPeers> {
        let mut rdr = csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
        let h: Vec<String> = rdr.headers()?.iter().map(|s| s.to_string()).collect();
        let col = |n: &str| h.iter().position(|x| x == n).with_context(|| format!("{}: no column {n}", path.display()));
        let (op, shape, dtype, backend, med) =
            (col("op")?, col("shape")?, col("dtype")?, col("backend")?, col("time_us_median")?);
        let (p20, p80) = (col("time_us_p20")?, col("time_us_p80")?);
        let mut best: BTreeMap<(String, String, String), (f64, f64, f64, String)> = BTreeMap::new();
        for row in rdr.records().flatten() {
            let get = |i: usize| row.get(i).unwrap_or("").to_string();
            let Ok(t) = get(med).parse::<f64>() else { continue };
            let key = (get(op), get(shape), get(dtype));
            let entry = (t, get(p20).parse().unwrap_or(t), get(p80).parse().unwrap_or(t), get(backend));
            if best.get(&key).map(|b| t < b.0).unwrap_or(true) {
                best.insert(key, entry);
            }
        }
        Ok(TorchPeers { best })
    }

    pub fn lookup(&self, family: &str, shape: &str, dtype: &str) -> Option<&(f64, f64, f64, String)> {
        let op = op_for_family(family)?;
        self.best.get(&(op.to_string(), shape.to_string(), dtype.to_string()))
    }

    /// The figure shown beside the family's own peer ([`op_beside_family`]).
    pub fn beside(&self, family: &str, shape: &str, dtype: &str) -> Option<&(f64, f64, f64, String)> {
        let (op, _) = op_beside_family(family)?;
        self.best.get(&(op.to_string(), shape.to_string(), dtype.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_fastest_backend_per_shape() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(
            &p,
            "op,shape,dtype,backend,time_us_median,time_us_p20,time_us_p80,gbps,tflops\n\
             attn_prefill,1x4096x32x8x128,bf16,sdpa flash,506.2,505,507,1,1\n\
             attn_prefill,1x4096x32x8x128,bf16,sdpa cudnn,261.1,260,262,1,1\n\
             softmax,32768x4096,bf16,torch,417.3,417,418,1,1\n\
             int4_tinygemm,1x4096x4096,bf16,torch tinygemm,9.4,9.3,9.5,1,1\n",
        )
        .unwrap();
        let t = TorchPeers::load(&p).unwrap();
        let b = t.lookup("attention_prefill", "1x4096x32x8x128", "bf16").unwrap();
        assert_eq!((b.0, b.3.as_str()), (261.1, "sdpa cudnn"));
        assert!(t.lookup("softmax", "32768x4096", "fp16").is_none());
        assert!(t.lookup("gemm", "1x1x8", "bf16").is_none());
        assert!(t.lookup("gemm_int4", "1x4096x4096", "bf16").is_none(), "cuBLAS stays gemm_int4's peer");
        assert_eq!(t.beside("gemm_int4", "1x4096x4096", "bf16").unwrap().0, 9.4);
        assert!(t.beside("softmax", "32768x4096", "bf16").is_none());
    }
}
