//! PyTorch peers measured by scripts/torch_copy_peer.py in the same GPU session, read by
//! `kernlab roofline --torch-peers FILE` to set our ceilings beside them.
//!
//! The file is JSON: `{"gpu": "...", "torch": "2.11.0", "copy_gbps": 4174.0,
//! "bf16_8192_tflops": 780.0, ...}`; other keys (timings, sizes) are kept for the record
//! but not needed.

use super::keys;
use crate::roofline::Ceilings;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TorchPeers {
    #[serde(default)]
    pub gpu: String,
    #[serde(default)]
    pub torch: String,
    /// `dst.copy_(src)` of a large tensor, read + write bytes counted.
    pub copy_gbps: f64,
    /// `a @ b.T` in bf16 at 8192³ (cuBLAS through PyTorch).
    pub bf16_8192_tflops: f64,
}

impl TorchPeers {
    pub fn parse(data: &[u8]) -> Result<TorchPeers> {
        let t: TorchPeers =
            serde_json::from_slice(data).context("expected JSON with copy_gbps and bf16_8192_tflops")?;
        for (name, v) in [("copy_gbps", t.copy_gbps), ("bf16_8192_tflops", t.bf16_8192_tflops)] {
            if !(v.is_finite() && v > 0.0) {
                bail!("{name} is {v}; expected a positive number");
            }
        }
        Ok(t)
    }

    pub fn load(path: &Path) -> Result<TorchPeers> {
        let data = std::fs::read(path).with_context(|| format!("reading torch peers {}", path.display()))?;
        TorchPeers::parse(&data)
            .with_context(|| format!("{} is not the output of scripts/torch_copy_peer.py", path.display()))
    }

    /// Stores the peers in the ceilings (and the torch version in the environment).
    pub fn record(&self, c: &mut Ceilings) {
        c.peers.insert(keys::TORCH_COPY.into(), self.copy_gbps);
        c.peers.insert(keys::TORCH_BF16.into(), self.bf16_8192_tflops);
        if !self.torch.is_empty() {
            c.environment.insert("torch (peers)".into(), self.torch.clone());
        }
    }
}

/// One comparison of ours against a peer.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: &'static str,
    pub ours: f64,
    pub peer: f64,
    pub unit: &'static str,
    /// Allowed |ours / peer − 1|.
    pub tolerance: f64,
}

impl Check {
    pub fn ratio(&self) -> f64 {
        self.ours / self.peer
    }
    pub fn ok(&self) -> bool {
        (self.ratio() - 1.0).abs() <= self.tolerance
    }
    /// `check copy_vs_torch: ours 4100.0 GB/s, peer 4174.0 GB/s, ratio 0.982 (within 10 %): ok`
    pub fn line(&self) -> String {
        format!(
            "check {}: ours {:.1} {u}, peer {:.1} {u}, ratio {:.3} (within {:.0} %): {}",
            self.name,
            self.ours,
            self.peer,
            self.ratio(),
            self.tolerance * 100.0,
            if self.ok() { "ok" } else { "OUT OF RANGE" },
            u = self.unit
        )
    }
}

/// The closing checks of issue 3 that the ceilings can answer: copy bandwidth against
/// torch's copy_, the bf16 ceiling against cuBLAS at 8192³ (ours and through torch).
pub fn checks(c: &Ceilings) -> Vec<Check> {
    let mut v = Vec::new();
    let peer = |k: &str| c.peers.get(k).copied().filter(|x| x.is_finite() && *x > 0.0);
    if let Some(p) = peer(keys::TORCH_COPY) {
        v.push(Check { name: "copy_vs_torch_copy", ours: c.dram_copy_gbps, peer: p, unit: "GB/s", tolerance: 0.10 });
    }
    if let Some(p) = peer(keys::CUBLAS_BF16) {
        v.push(Check {
            name: "bf16_vs_cublas_8192",
            ours: c.tensor_bf16_tflops,
            peer: p,
            unit: "TFLOP/s",
            tolerance: 0.10,
        });
    }
    if let Some(p) = peer(keys::TORCH_BF16) {
        v.push(Check {
            name: "bf16_vs_torch_8192",
            ours: c.tensor_bf16_tflops,
            peer: p,
            unit: "TFLOP/s",
            tolerance: 0.10,
        });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_script_output_and_rejects_nonsense() {
        let t = TorchPeers::parse(
            br#"{"gpu":"NVIDIA H200","torch":"2.11.0","copy_gbps":4174.5,"bf16_8192_tflops":780.0,"copy_bytes":4294967296}"#,
        )
        .unwrap();
        assert_eq!(t.copy_gbps, 4174.5);
        assert!(TorchPeers::parse(br#"{"copy_gbps":0,"bf16_8192_tflops":780.0}"#).is_err());
        assert!(TorchPeers::parse(br#"{"copy_gbps":1.0}"#).is_err());
        assert!(TorchPeers::parse(b"not json").is_err());
        let mut c = Ceilings { dram_copy_gbps: 4000.0, tensor_bf16_tflops: 700.0, ..Default::default() };
        t.record(&mut c);
        c.peers.insert(keys::CUBLAS_BF16.into(), 700.0);
        let ch = checks(&c);
        assert_eq!(ch.len(), 3);
        assert!(ch[0].ok(), "{}", ch[0].line());
        assert!(ch[0].line().ends_with(": ok"));
        assert!(ch[1].ok());
        // 700 vs 780: 10.3 % below.
        assert!(!ch[2].ok());
        assert!(ch[2].line().contains("OUT OF RANGE"));
    }
}
