//! kernlab: a kernel autotuning and roofline lab for NVIDIA GPUs.
//!
//! Parameterized CUDA templates (`kernels/`) are compiled at run time with NVRTC, swept over
//! their tuning parameters (`sweeps/`), verified against a reference, timed against the peer
//! library and the measured roofline, and the winners are stored for the Llama-3 path.

pub mod cli;
pub mod core;
pub mod devices_cmd;
pub mod export_cmd;
pub mod gpu;
pub mod kernels;
pub mod list;
pub mod llama;
pub mod measure;
pub mod paths;
pub mod quality;
pub mod quant;
pub mod replay_cmd;
pub mod report;
pub mod roofline;
pub mod roofline_cmd;
pub mod selftest;
pub mod selftest_int4;
pub mod selftest_int8;
pub mod selftest_linear;
pub mod sweep_cmd;
pub mod tune;
