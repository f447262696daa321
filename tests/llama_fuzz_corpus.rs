//! The committed fuzz corpus (fuzz/corpus/<target>/) replayed through the fuzz targets'
//! bodies on stable Rust, so every input the fuzzer once found interesting stays covered.
//!
//! Regenerate the seed files with
//! `KERNLAB_WRITE_FUZZ_SEEDS=1 cargo test --test llama_fuzz_corpus write_seeds`.

use std::path::{Path, PathBuf};

use kernlab::llama::fuzzing;
use kernlab::llama::ggml_types::GgmlType;

mod common;
use common::ggml_bytes;
use kernlab::llama::gguf::{MetaArray, MetaValue};
use kernlab::llama::gguf_write::GgufWriter;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target)
}

fn replay(target: &str, body: fn(&[u8])) {
    let dir = corpus_dir(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let r = std::panic::catch_unwind(|| body(&bytes));
        assert!(r.is_ok(), "{target} panicked on {}", path.display());
        n += 1;
    }
    assert!(n > 0, "{}: empty corpus", dir.display());
}

#[test]
fn replay_gguf_parse() {
    replay("gguf_parse", fuzzing::gguf_parse);
}

#[test]
fn replay_hf_config() {
    replay("hf_config", fuzzing::hf_config);
}

#[test]
fn replay_safetensors_shard() {
    replay("safetensors_shard", fuzzing::safetensors_shard);
}

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 16) % 200) as f32 / 100.0 - 1.0)
        .collect()
}

/// A one-layer llama (dim 32) with a byte-level tokenizer, every supported dtype used once.
fn micro_llama() -> Vec<u8> {
    let (dim, heads, kv, ffn, vocab) = (32usize, 2usize, 1usize, 64usize, 260usize);
    let mut g = GgufWriter::new();
    let u = |x: usize| MetaValue::U32(x as u32);
    g.kv("general.architecture", MetaValue::Str("llama".into()))
        .kv("llama.block_count", u(1))
        .kv("llama.context_length", u(64))
        .kv("llama.embedding_length", u(dim))
        .kv("llama.feed_forward_length", u(ffn))
        .kv("llama.attention.head_count", u(heads))
        .kv("llama.attention.head_count_kv", u(kv))
        .kv("llama.rope.freq_base", MetaValue::F32(10000.0))
        .kv("llama.attention.layer_norm_rms_epsilon", MetaValue::F32(1e-5))
        .kv("llama.vocab_size", u(vocab));
    let mut tokens: Vec<String> = vec!["<s>".into(), "</s>".into(), "<|im_start|>".into()];
    let mut types = vec![3, 3, 3];
    // Printable ASCII and a few byte-level stand-ins; enough for merges to apply.
    for b in 0..256u32 {
        let c = if (33..=126).contains(&b) { char::from_u32(b).unwrap() } else { char::from_u32(256 + b).unwrap() };
        tokens.push(c.to_string());
        types.push(1);
    }
    tokens.push("he".into());
    types.push(1);
    g.kv("tokenizer.ggml.model", MetaValue::Str("gpt2".into()))
        .kv("tokenizer.ggml.pre", MetaValue::Str("smollm".into()))
        .kv("tokenizer.ggml.tokens", MetaValue::Array(MetaArray::Str(tokens)))
        .kv("tokenizer.ggml.token_type", MetaValue::Array(MetaArray::I32(types)))
        .kv("tokenizer.ggml.merges", MetaValue::Array(MetaArray::Str(vec!["h e".into()])))
        .kv("tokenizer.ggml.bos_token_id", u(0))
        .kv("tokenizer.ggml.eos_token_id", u(1));
    g.tensor("token_embd.weight", &[vocab, dim], GgmlType::Q8_0, ggml_bytes(GgmlType::Q8_0, &values(vocab * dim, 1)));
    g.tensor_f32("output_norm.weight", &[dim], &vec![1.0; dim]);
    g.tensor_f32("blk.0.attn_norm.weight", &[dim], &vec![1.0; dim]);
    g.tensor_f32("blk.0.ffn_norm.weight", &[dim], &vec![1.0; dim]);
    for (name, shape, t) in [
        ("attn_q", [dim, dim], GgmlType::Q4_0),
        ("attn_k", [dim / heads * kv, dim], GgmlType::Q4_1),
        ("attn_v", [dim / heads * kv, dim], GgmlType::F16),
        ("attn_output", [dim, dim], GgmlType::BF16),
        ("ffn_gate", [ffn, dim], GgmlType::Q4_1),
        ("ffn_up", [ffn, dim], GgmlType::Q8_0),
        ("ffn_down", [dim, ffn], GgmlType::F32),
    ] {
        let x = values(shape[0] * shape[1], name.len() as u32);
        g.tensor(&format!("blk.0.{name}.weight"), &shape, t, ggml_bytes(t, &x));
    }
    g.to_bytes()
}

fn small_safetensors(dtype: safetensors::Dtype, names: &[(&str, Vec<usize>)]) -> Vec<u8> {
    let bufs: Vec<Vec<u8>> = names
        .iter()
        .map(|(_, s)| {
            let n: usize = s.iter().product();
            let x = values(n, 3);
            match dtype {
                safetensors::Dtype::F32 => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
                safetensors::Dtype::F16 => x.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
                _ => x.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect(),
            }
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = names
        .iter()
        .zip(&bufs)
        .map(|((n, s), b)| (n.to_string(), safetensors::tensor::TensorView::new(dtype, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, None).unwrap()
}

#[test]
fn write_seeds() {
    if std::env::var_os("KERNLAB_WRITE_FUZZ_SEEDS").is_none() {
        return;
    }
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    put("gguf_parse", "seed-micro-llama.gguf", &micro_llama());
    let mut g = GgufWriter::new();
    g.kv("general.alignment", MetaValue::U32(64))
        .kv("nested", MetaValue::Array(MetaArray::Array(vec![MetaArray::U8(vec![1, 2]), MetaArray::F64(vec![0.5])])))
        .kv("flag", MetaValue::Bool(true))
        .kv("neg", MetaValue::I64(-3));
    g.tensor("w", &[2, 32], GgmlType::Q4_0, vec![0x11; 36]);
    put("gguf_parse", "seed-metadata-kinds.gguf", &g.to_bytes());
    let mut g = GgufWriter::new();
    g.version = 2;
    g.tensor_f32("x", &[3], &[1.0, 2.0, 3.0]);
    put("gguf_parse", "seed-v2.gguf", &g.to_bytes());

    put(
        "hf_config",
        "seed-llama32.json",
        br#"{"model_type":"llama","hidden_size":2048,"num_hidden_layers":16,"num_attention_heads":32,
"num_key_value_heads":8,"intermediate_size":8192,"vocab_size":128256,"rms_norm_eps":1e-05,
"rope_theta":500000.0,"rope_scaling":{"factor":32.0,"high_freq_factor":4.0,"low_freq_factor":1.0,
"original_max_position_embeddings":8192,"rope_type":"llama3"},"max_position_embeddings":131072,
"tie_word_embeddings":true,"bos_token_id":128000,"eos_token_id":[128001,128008,128009]}"#,
    );
    put(
        "hf_config",
        "seed-smollm2.json",
        br#"{"model_type":"llama","hidden_size":576,"num_hidden_layers":30,"num_attention_heads":9,
"num_key_value_heads":3,"intermediate_size":1536,"vocab_size":49152,"rope_theta":100000,
"tie_word_embeddings":true,"eos_token_id":2}"#,
    );
    put(
        "hf_config",
        "seed-minimal.json",
        br#"{"hidden_size":64,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":96,"vocab_size":10}"#,
    );

    let tiny = [("model.norm.weight", vec![128]), ("model.layers.0.self_attn.k_proj.weight", vec![64, 128])];
    put("safetensors_shard", "seed-bf16.safetensors", &small_safetensors(safetensors::Dtype::BF16, &tiny));
    put("safetensors_shard", "seed-f32.safetensors", &small_safetensors(safetensors::Dtype::F32, &tiny[..1]));
    put(
        "safetensors_shard",
        "seed-f16-wrong-shape.safetensors",
        &small_safetensors(safetensors::Dtype::F16, &[("model.layers.0.input_layernorm.weight", vec![4, 8])]),
    );
}

/// The main seed must get through every stage, or the fuzzer starts from a dead end.
#[test]
fn micro_llama_seed_loads_fully() {
    use kernlab::llama::{gguf_model::GgufSource, tokenizer, GgufFile, LlamaConfig, Weights};
    let f = GgufFile::from_bytes(micro_llama(), "micro.gguf").unwrap();
    let cfg = LlamaConfig::from_gguf(&f).unwrap();
    let w = Weights::load(&cfg, &GgufSource::new(&f, &cfg)).unwrap();
    let g = kernlab::llama::cpu_ref::generate_greedy(&w, &[5, 6, 7], 3, &[]).unwrap();
    assert_eq!(g.tokens.len(), 3);
    let tok = tokenizer::from_gguf(&f).unwrap();
    assert_eq!(tokenizer::encode(&tok, "<|im_start|>he").unwrap().len(), 2);
}
