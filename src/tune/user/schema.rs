//! The `[kernel]` table of a sweep file as written (serde), before any name is resolved.
//! Every value an error may be about keeps its TOML span, so the error names the line.
//! The meaning of each field is documented in `docs/user-kernels.md`.

use serde::Deserialize;
use toml::Spanned;

/// The parts of a sweep file this module reads; the rest is the space parser's.
#[derive(Debug, Deserialize)]
pub struct RawFile {
    pub family: Spanned<String>,
    #[serde(default)]
    pub kernel: Option<Spanned<RawKernel>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKernel {
    /// Names of the shape's dimensions, in the order `--shape 4096x1024` gives them.
    pub dims: Spanned<Vec<String>>,
    #[serde(default, rename = "buffer")]
    pub buffers: Vec<Spanned<RawBuffer>>,
    #[serde(default, rename = "scalar")]
    pub scalars: Vec<Spanned<RawScalar>>,
    /// The launches of one run of a candidate, in order.
    #[serde(default, rename = "launch")]
    pub launches: Vec<Spanned<RawLaunch>>,
    pub reference: Spanned<RawReference>,
    #[serde(default)]
    pub peer: Option<Spanned<RawProgram>>,
    /// Outputs compared with the reference; default: every output and inout buffer.
    #[serde(default)]
    pub compare: Option<Spanned<Vec<Spanned<String>>>>,
    pub flops: Spanned<String>,
    /// Default: every input read once, every output written once (inout both).
    #[serde(default)]
    pub min_bytes: Option<Spanned<String>>,
    #[serde(default)]
    pub selftest_shapes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBuffer {
    pub name: Spanned<String>,
    /// dtype (the swept element type), f32, f16, bf16, i32 or u8.
    #[serde(default, rename = "type")]
    pub ty: Option<Spanned<String>>,
    /// Element count = the product of these expressions.
    pub dims: Spanned<Vec<Spanned<String>>>,
    /// input, output, inout or scratch.
    pub role: Spanned<String>,
    #[serde(default)]
    pub init: Option<Spanned<RawInit>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawInit {
    /// "normal", "uniform", "zeros".
    Name(String),
    Table(RawInitTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInitTable {
    /// normal, uniform, int, zeros, constant.
    pub dist: String,
    pub mean: Option<f64>,
    pub std: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub value: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScalar {
    pub name: Spanned<String>,
    /// i32, u32, i64, u64 or f32.
    #[serde(rename = "type")]
    pub ty: Spanned<String>,
    /// An integer expression (a string) or a number.
    pub value: Spanned<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLaunch {
    pub entry: Spanned<String>,
    /// One to three expressions: x, y, z (missing ones are 1).
    pub grid: Spanned<Vec<Spanned<String>>>,
    pub block: Spanned<Vec<Spanned<String>>>,
    /// Dynamic shared memory, bytes (default 0).
    #[serde(default)]
    pub smem: Option<Spanned<String>>,
    /// Buffer and scalar names, in the entry point's parameter order.
    pub args: Spanned<Vec<Spanned<String>>>,
}

/// A reference or peer template and its launches.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProgram {
    /// The peer's name in the CSV and the table (default "peer").
    #[serde(default)]
    pub name: Option<String>,
    pub file: Spanned<String>,
    #[serde(default, rename = "launch")]
    pub launches: Vec<Spanned<RawLaunch>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReference {
    #[serde(default)]
    pub file: Option<Spanned<String>>,
    #[serde(default, rename = "launch")]
    pub launches: Vec<Spanned<RawLaunch>>,
    #[serde(default)]
    pub gemm: Option<Spanned<RawGemm>>,
}

/// C[M,N] = A[M,K] · B[N,K]ᵀ with cuBLAS, row-major, in the swept dtype.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGemm {
    pub a: Spanned<String>,
    pub b: Spanned<String>,
    pub c: Spanned<String>,
    pub m: Spanned<String>,
    pub n: Spanned<String>,
    pub k: Spanned<String>,
}
