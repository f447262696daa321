//! Weight quantization: int4/int8 weight-only formats, converters and the RTN quantizer.
//!
//! - `format`: the kernlab int4 layout (`Int4Weight`), specified in docs/int4-format.md.
//! - `awq`, `gptq`, `gguf_q4`: loss-free converters from the layouts users have.
//! - `rtn`: round-to-nearest quantizer into `Int4Weight` (per group / per channel);
//!   `rtn_tensor`: one scale per tensor; `int8`: per-channel int8.
//! - `gptq_pack`, `awq_pack`: the inverses of `gptq` and `awq`, for writing checkpoints;
//!   `rows`: stacking and interleaving rows of int4 weights (qkv, gate_up, the SwiGLU layout).
//! - `gptq_solve`: the GPTQ quantizer (Hessian error feedback); `awq_search`: AWQ's
//!   activation-aware channel scales; `dense`: the sgemm they and the CPU model use.
//! - `metrics`: relative Frobenius errors of W and of X·Wᵀ.
//! - `reference`: CPU emulation of the gemm_int4 kernels (f64 accumulate) for the selftest.

pub mod awq;
pub mod awq_pack;
pub mod awq_search;
pub mod cholesky;
pub mod dense;
pub mod error;
pub mod format;
pub mod gguf_q4;
pub mod gptq;
pub mod gptq_pack;
pub mod gptq_solve;
pub mod int8;
pub mod metrics;
pub mod reference;
pub mod rows;
pub mod rtn;
pub mod rtn_tensor;
pub mod view;

pub use awq::{awq_to_int4, AwqTensors};
pub use awq_pack::{gptq_converted_to_awq, int4_to_awq, AwqPacked, AWQ_PACK_ORDER};
pub use awq_search::{search_awq_scales, AwqScales, LinearRef};
pub use error::{FormatError, Result};
pub use format::{pack_word, unpack_word, HalfDtype, Int4Weight, Zeros, NIBBLE_ORDER, NIBBLE_POS};
pub use gguf_q4::{gguf_q4_to_int4, GgufQ4};
pub use gptq::{gptq_to_int4, GptqConverted, GptqTensors, GptqZeros};
pub use gptq_pack::{int4_to_gptq, zeros_convention, GptqPacked};
pub use gptq_solve::{quantize_gptq, quantize_gptq_prepared, GptqConfig, Hessian, PreparedHessian};
pub use int8::{quantize_int8_per_channel, Int8Weight};
pub use metrics::{gaussian, quant_error, rel_fro, Dequantize, QuantError};
pub use reference::{reference_gemm_int4, reference_gemm_int4_with, WeightRounding};
pub use rows::{interleave_halves, stack_rows};
pub use rtn::{quantize_rtn, GroupSize, RtnConfig};
pub use rtn_tensor::quantize_rtn_per_tensor;
pub use view::TensorView;
