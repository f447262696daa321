//! Llama-3 on the GPU: bf16 weights, a preallocated KV cache, batched prefill and decode,
//! greedy and sampled generation, on the reference path (cuBLAS + the plain kernels of
//! kernels/llama/ops.cu) or the tuned path (the tuned gemm family + the op seam).
//!
//! * [`weights`]: `GpuWeights` (fused qkv / gate_up) from f32 weights, a streamed HF
//!   directory, or random values generated on the device
//! * [`op_choice`]: which implementation each op runs (`OpImpl`: plain or a tuned family)
//! * [`ops`]: the op kernels, compiled and launched as chosen; the table of tuned ops
//! * [`tuned_op`]: what a row of that table is, the trait its launchers sit behind
//! * [`attention`]: which steps fit the attention families, their launches
//! * [`linear`]: cuBLAS, the tuned gemm family, or gemm_int4 on int4 weights, with database
//!   lookup per (M, N, K)
//! * [`linear_rules`]: which tuned configuration may run a shape, adapted to its M and format
//! * [`quant_weights`]: the layers' linears quantized on the GPU (`--weights int4|int8`) or from a checkpoint
//! * [`model_linear`]: a layer's stored linears and their names (`3.down`)
//! * [`shape`]: the sizes an instance is built for, KV-cache bytes
//! * [`model`]: `GpuModel::forward` over one step of tagged tokens
//! * [`generate`]: generation loops, sampling, timing
//! * [`profile`]: per-op CUDA-event profile
//! * [`hf_ref`]: comparison with the reference JSON of scripts/hf_reference.py

pub mod attention;
pub mod generate;
pub mod hf_ref;
pub mod int4_group;
pub mod linear;
pub mod linear_rules;
pub mod model;
pub mod model_linear;
pub mod op_choice;
pub mod op_fit;
pub mod ops;
pub mod profile;
pub mod quant_weights;
pub mod shape;
pub mod tuned_op;
pub mod weights;
