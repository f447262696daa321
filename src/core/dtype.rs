//! The element types kernels compute in, and what each means for templates and tolerances.

use anyhow::{bail, Result};
use std::collections::BTreeMap;

/// Element type of activations and outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    BF16,
    F16,
    F32,
}

impl DType {
    pub fn parse(s: &str) -> Result<DType> {
        match s.to_ascii_lowercase().as_str() {
            "bf16" | "bfloat16" => Ok(DType::BF16),
            "fp16" | "f16" | "half" | "float16" => Ok(DType::F16),
            "fp32" | "f32" | "float" | "float32" => Ok(DType::F32),
            other => bail!("unknown dtype {other:?}: expected bf16, fp16 or fp32"),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            DType::BF16 => "bf16",
            DType::F16 => "fp16",
            DType::F32 => "fp32",
        }
    }
    pub fn bytes(self) -> usize {
        match self {
            DType::BF16 | DType::F16 => 2,
            DType::F32 => 4,
        }
    }
    /// Defines that select this element type in every template.
    pub fn defines(self) -> BTreeMap<String, String> {
        let mut d = BTreeMap::new();
        match self {
            DType::BF16 => {}
            DType::F16 => {
                d.insert("KL_FP16".into(), "1".into());
            }
            DType::F32 => {
                d.insert("KL_FP32".into(), "1".into());
            }
        }
        d
    }
    /// Default verification tolerance (max |out−ref| / max |ref|) for outputs of this type.
    pub fn default_tolerance(self) -> f64 {
        match self {
            DType::BF16 => 1.5e-2,
            DType::F16 => 4e-3,
            DType::F32 => 1e-4,
        }
    }
}
