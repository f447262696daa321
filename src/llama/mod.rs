//! Llama-3: config presets, weight loaders, CPU reference forward, GPU model, e2e bench.
//!
//! * [`config`]: `LlamaConfig`, presets, config.json / GGUF metadata readers
//! * [`gguf`], [`ggml_types`]: the GGUF container and GGML block formats (dequantization,
//!   raw Q4_0/Q4_1 blocks); [`gguf_write`] builds small files for tests and fuzzing
//! * [`names`]: one weight naming, mapped to GGUF and Hugging Face names
//! * [`weights`]: f32 `Weights` in Hugging Face layout and the `TensorSource` loaders feed
//! * [`gguf_model`], [`hf`]: loading a GGUF file or a Hugging Face directory
//! * [`tokenizer`]: byte-level BPE from GGUF metadata or tokenizer.json
//! * [`chat`]: the model's chat template (GGUF or tokenizer_config.json), rendered
//! * [`cpu_ref`]: the f32 CPU reference forward pass and greedy generation
//! * [`fuzzing`]: bodies of the cargo-fuzz targets in fuzz/, replayed on the corpus by tests

pub mod chat;
pub mod config;
pub mod cpu_ref;
pub mod e2e;
pub mod fuzzing;
pub mod ggml_types;
pub mod gguf;
pub mod gguf_model;
pub mod gguf_write;
pub mod gpu;
pub mod hf;
pub mod hf_write;
pub mod names;
pub mod quantized;
pub mod tokenizer;
pub mod weights;

pub use config::{LlamaConfig, RopeScaling};
pub use gguf::{GgufError, GgufFile};
pub use gguf_model::{BosPolicy, LoadedModel};
pub use weights::{Mat, Weights};
