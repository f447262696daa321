//! Bodies of the cargo-fuzz targets (fuzz/fuzz_targets/*), kept in the library so the
//! committed corpus is also replayed by `cargo test` on stable (tests/llama_fuzz_corpus.rs).
//! Each takes arbitrary bytes; any input may be rejected, none may panic, hang, or allocate
//! far beyond its own size.

use std::path::Path;

use super::gguf_model::GgufSource;
use super::hf::SafetensorsSource;
use super::names::{LayerTensor, WeightName};
use super::weights::TensorSource;
use super::{tokenizer, GgufFile, LlamaConfig, Weights};

/// Upper bound on f32 values materialized per input, so fuzzing explores the parsers rather
/// than dequantizing large (but legal) tensors.
const MAX_VALUES: u64 = 1 << 22;

/// GGUF bytes → parser, metadata readers, llama config, weights, tokenizer.
pub fn gguf_parse(data: &[u8]) {
    let Ok(file) = GgufFile::from_bytes(data.to_vec(), "fuzz.gguf") else { return };
    let mut budget = MAX_VALUES;
    for t in file.tensors() {
        if t.n_elems() > budget {
            continue;
        }
        budget -= t.n_elems();
        let view = file.tensor_view(&t.name).expect("a listed tensor has a view");
        if let Ok(x) = view.to_f32() {
            assert_eq!(x.len() as u64, t.n_elems());
        }
        let _ = view.q4_0_blocks().map(|b| b.count());
        let _ = view.q4_1_blocks().map(|b| b.count());
    }
    if let Ok(cfg) = LlamaConfig::from_gguf(&file) {
        // Shapes are checked before any data is read; still cap what a config may build.
        if (cfg.n_params() as u64) < MAX_VALUES && cfg.n_layers < 64 {
            let _ = Weights::load(&cfg, &GgufSource::new(&file, &cfg));
        }
    }
    if let Ok(tok) = tokenizer::from_gguf(&file) {
        let _ = tokenizer::encode(&tok, "Hello <|im_start|> w\u{f6}rld 123");
    }
}

/// config.json text → LlamaConfig.
pub fn hf_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cfg) = LlamaConfig::from_hf_json_str(text) {
        cfg.validate().expect("from_hf_json_str returns validated configs");
        if cfg.head_dim < 1 << 16 {
            let _ = cfg.rope_inv_freqs();
        }
    }
}

/// One safetensors file → shard index, f32 loading of each Llama weight it might hold, and a
/// full load under a one-layer tiny config.
pub fn safetensors_shard(data: &[u8]) {
    let files = vec![("model.safetensors".to_string(), data.to_vec())];
    let Ok(src) = SafetensorsSource::from_bytes(Path::new("fuzz"), files) else { return };
    let mut names = vec![WeightName::TokEmbd, WeightName::Norm, WeightName::LmHead];
    names.extend(LayerTensor::ALL.iter().map(|&t| WeightName::Layer(0, t)));
    for n in &names {
        if let Ok(Some(shape)) = src.shape(n) {
            if shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).is_some_and(|n| (n as u64) < MAX_VALUES) {
                let _ = src.load_f32(n);
            }
        }
    }
    let cfg = LlamaConfig { n_layers: 1, ..LlamaConfig::preset("tiny").expect("preset") };
    let _ = Weights::load(&cfg, &src);
}
