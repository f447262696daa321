//! Loaders on small files built here: a tiny Llama as GGUF (every supported dtype) and as a
//! Hugging Face directory (single and sharded safetensors), and the GGUF tokenizer.

use std::collections::HashMap;

use kernlab::llama::cpu_ref::{forward, KvCache, Logits};
use kernlab::llama::ggml_types::{quantize, GgmlType};

mod common;
use common::ggml_bytes;
use kernlab::llama::gguf::{MetaArray, MetaValue};
use kernlab::llama::gguf_model::{permute_rope_rows, unpermute_rope_rows, GgufSource};
use kernlab::llama::gguf_write::GgufWriter;
use kernlab::llama::names::{LayerTensor, WeightName};
use kernlab::llama::{tokenizer, GgufFile, LlamaConfig, LoadedModel, Weights};

/// GPT-2's byte → printable-char map, which byte-level BPE vocabularies are written in.
fn byte_to_char() -> Vec<char> {
    let mut keep: Vec<u32> = (33..=126).chain(161..=172).chain(174..=255).collect();
    let mut map = vec!['\0'; 256];
    let mut extra = 0;
    for b in 0..256u32 {
        if keep.contains(&b) {
            map[b as usize] = char::from_u32(b).unwrap();
        } else {
            map[b as usize] = char::from_u32(256 + extra).unwrap();
            extra += 1;
        }
    }
    keep.clear();
    map
}

/// A tiny byte-level vocabulary: 3 control tokens, 256 bytes, then a few merges.
fn tiny_vocab() -> (Vec<String>, Vec<String>, Vec<i32>) {
    let mut tokens: Vec<String> = vec!["<|endoftext|>".into(), "<|im_start|>".into(), "<|im_end|>".into()];
    let mut types = vec![3, 3, 3];
    for c in byte_to_char() {
        tokens.push(c.to_string());
        types.push(1);
    }
    let merges = ["Ġ t", "h e", "Ġt he", "Ġ c", "a t", "Ġc at"];
    for m in merges {
        tokens.push(m.replace(' ', ""));
        types.push(1);
    }
    (tokens, merges.iter().map(|s| s.to_string()).collect(), types)
}

fn tiny_config() -> LlamaConfig {
    LlamaConfig { vocab_size: 265, tie_embeddings: true, ..LlamaConfig::preset("tiny").unwrap() }
}

/// The tiny model as a GGUF writer: llama metadata, tokenizer, weights with Q/K permuted the
/// way llama.cpp's converter does, linears in `linear_type`.
fn tiny_gguf(cfg: &LlamaConfig, w: &Weights, linear_type: GgmlType) -> GgufWriter {
    let mut g = GgufWriter::new();
    let u = |x: usize| MetaValue::U32(x as u32);
    g.kv("general.architecture", MetaValue::Str("llama".into()))
        .kv("general.name", MetaValue::Str("tiny-test".into()))
        .kv("llama.block_count", u(cfg.n_layers))
        .kv("llama.context_length", u(cfg.max_seq_len))
        .kv("llama.embedding_length", u(cfg.dim))
        .kv("llama.feed_forward_length", u(cfg.ffn_dim))
        .kv("llama.attention.head_count", u(cfg.n_heads))
        .kv("llama.attention.head_count_kv", u(cfg.n_kv_heads))
        .kv("llama.rope.freq_base", MetaValue::F32(cfg.rope_theta))
        .kv("llama.attention.layer_norm_rms_epsilon", MetaValue::F32(cfg.norm_eps))
        .kv("llama.vocab_size", u(cfg.vocab_size))
        .kv("llama.rope.dimension_count", u(cfg.head_dim));
    let (tokens, merges, types) = tiny_vocab();
    g.kv("tokenizer.ggml.model", MetaValue::Str("gpt2".into()))
        .kv("tokenizer.ggml.pre", MetaValue::Str("smollm".into()))
        .kv("tokenizer.ggml.tokens", MetaValue::Array(MetaArray::Str(tokens)))
        .kv("tokenizer.ggml.token_type", MetaValue::Array(MetaArray::I32(types)))
        .kv("tokenizer.ggml.merges", MetaValue::Array(MetaArray::Str(merges)))
        .kv("tokenizer.ggml.bos_token_id", u(1))
        .kv("tokenizer.ggml.eos_token_id", u(2));
    // Llama-3 scaling as llama.cpp stores it: per-frequency divisors.
    let base = LlamaConfig { rope_scaling: None, ..cfg.clone() }.rope_inv_freqs();
    let div: Vec<f32> = base.iter().zip(&w.rope_inv_freqs).map(|(b, s)| b / s).collect();
    g.tensor_f32("rope_freqs.weight", &[div.len()], &div);
    g.tensor(
        "token_embd.weight",
        &[cfg.vocab_size, cfg.dim],
        GgmlType::Q8_0,
        ggml_bytes(GgmlType::Q8_0, &w.tok_embeddings.data),
    );
    g.tensor_f32("output_norm.weight", &[cfg.dim], &w.norm);
    if let Some(head) = &w.lm_head {
        g.tensor("output.weight", &[head.rows, head.cols], GgmlType::F16, ggml_bytes(GgmlType::F16, &head.data));
    }
    for (i, l) in w.layers.iter().enumerate() {
        let name = |t: LayerTensor| WeightName::Layer(i, t).gguf();
        g.tensor_f32(&name(LayerTensor::AttnNorm), &[cfg.dim], &l.attn_norm);
        g.tensor_f32(&name(LayerTensor::FfnNorm), &[cfg.dim], &l.ffn_norm);
        let wq = permute_rope_rows(&l.wq.data, cfg.n_heads, cfg.dim);
        let wk = permute_rope_rows(&l.wk.data, cfg.n_kv_heads, cfg.dim);
        for (t, m, data) in [
            (LayerTensor::Wq, &l.wq, &wq),
            (LayerTensor::Wk, &l.wk, &wk),
            (LayerTensor::Wv, &l.wv, &l.wv.data),
            (LayerTensor::Wo, &l.wo, &l.wo.data),
            (LayerTensor::WGate, &l.w_gate, &l.w_gate.data),
            (LayerTensor::WUp, &l.w_up, &l.w_up.data),
            (LayerTensor::WDown, &l.w_down, &l.w_down.data),
        ] {
            g.tensor(&name(t), &[m.rows, m.cols], linear_type, ggml_bytes(linear_type, data));
        }
    }
    g
}

fn logits(w: &Weights, toks: &[u32]) -> Vec<f32> {
    let mut c = KvCache::new(w, toks.len());
    forward(w, &mut c, toks, Logits::All).unwrap()
}

fn max_rel_err(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[test]
fn rope_permutation_roundtrip() {
    let x: Vec<f32> = (0..3 * 8 * 5).map(|i| i as f32).collect();
    let p = permute_rope_rows(&x, 3, 5);
    assert_ne!(p, x);
    assert_eq!(unpermute_rope_rows(&p, 3, 5), x);
    // Row 1 of a GGUF head (2i+s with i=0, s=1) is HF row head_dim/2 = 4.
    assert_eq!(&p[5..10], &x[4 * 5..5 * 5]);
}

#[test]
fn tiny_gguf_every_dtype_loads_and_matches() {
    let cfg = tiny_config();
    let w = Weights::random(&cfg, 11).unwrap();
    let toks = [3u32, 40, 77, 200, 9, 264];
    // Reference: the same weights with the embedding rounded through Q8_0, as in the file.
    let mut w_ref = w.clone();
    let mut emb = vec![0f32; w.tok_embeddings.data.len()];
    kernlab::llama::ggml_types::dequantize(GgmlType::Q8_0, &quantize::q8_0(&w.tok_embeddings.data), &mut emb).unwrap();
    w_ref.tok_embeddings.data = emb;
    let want = logits(&w_ref, &toks);

    for (t, tol) in [
        (GgmlType::F32, 1e-6),
        (GgmlType::F16, 2e-3),
        (GgmlType::BF16, 2e-2),
        (GgmlType::Q8_0, 2e-2),
        (GgmlType::Q4_1, 0.2),
        (GgmlType::Q4_0, 0.25),
    ] {
        let bytes = tiny_gguf(&cfg, &w, t).to_bytes();
        let file = GgufFile::from_bytes(bytes, &format!("tiny-{t:?}.gguf")).unwrap();
        let got_cfg = LlamaConfig::from_gguf(&file).unwrap();
        assert_eq!(got_cfg.dim, cfg.dim);
        assert!(got_cfg.tie_embeddings, "no output.weight means tied");
        let loaded = Weights::load(&got_cfg, &GgufSource::new(&file, &got_cfg)).unwrap();
        // rope_freqs from the file reproduce the config's llama3 scaling.
        let rel = max_rel_err(&loaded.rope_inv_freqs, &w.rope_inv_freqs);
        assert!(rel < 1e-6, "rope freqs {rel}");
        if t == GgmlType::F32 {
            // Exact: proves the Q/K un-permutation inverts the converter's permutation.
            assert_eq!(loaded.layers[1].wq, w.layers[1].wq);
            assert_eq!(loaded.layers[3].wk, w.layers[3].wk);
        }
        let err = max_rel_err(&logits(&loaded, &toks), &want);
        assert!(err < tol, "{t:?}: logits rel err {err}");
    }
}

#[test]
fn untied_lm_head_is_loaded() {
    let cfg = LlamaConfig { tie_embeddings: false, ..tiny_config() };
    let w = Weights::random(&cfg, 5).unwrap();
    let file = GgufFile::from_bytes(tiny_gguf(&cfg, &w, GgmlType::F32).to_bytes(), "untied.gguf").unwrap();
    let c = LlamaConfig::from_gguf(&file).unwrap();
    assert!(!c.tie_embeddings);
    let loaded = Weights::load(&c, &GgufSource::new(&file, &c)).unwrap();
    let head = loaded.lm_head.as_ref().unwrap();
    assert!(max_rel_err(&head.data, &w.lm_head.as_ref().unwrap().data) < 1e-3);
}

#[test]
fn gguf_tokenizer_bpe_and_specials() {
    let cfg = tiny_config();
    let w = Weights::random(&cfg, 1).unwrap();
    let file = GgufFile::from_bytes(tiny_gguf(&cfg, &w, GgmlType::F32).to_bytes(), "tok.gguf").unwrap();
    let tok = tokenizer::from_gguf(&file).unwrap();
    let (tokens, _, _) = tiny_vocab();
    let id = |s: &str| tokens.iter().position(|t| t == s).unwrap() as u32;
    let ids = tokenizer::encode(&tok, "<|im_start|>the cat 42").unwrap();
    // "the" at the start has no "Ġ": bytes t,h,e merge to "he" only; digits split one by one.
    assert_eq!(ids, vec![1, id("t"), id("he"), id("Ġcat"), id("Ġ"), id("4"), id("2")]);
    assert_eq!(tokenizer::encode(&tok, " the").unwrap(), vec![id("Ġthe")]);
    assert_eq!(tokenizer::decode(&tok, &ids).unwrap(), "<|im_start|>the cat 42");
    // Non-ASCII goes through bytes.
    let ids = tokenizer::encode(&tok, "é").unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(tokenizer::decode(&tok, &ids).unwrap(), "é");
}

/// Write `w` as a Hugging Face directory: config.json, tokenizer.json, safetensors in
/// `dtype`, split into `shards` files with an index when more than one.
fn write_hf_dir(dir: &std::path::Path, cfg: &LlamaConfig, w: &Weights, dtype: safetensors::Dtype, shards: usize) {
    let rope_scaling = cfg.rope_scaling.map(|s| {
        serde_json::json!({"rope_type": "llama3", "factor": s.factor, "low_freq_factor": s.low_freq_factor,
            "high_freq_factor": s.high_freq_factor, "original_max_position_embeddings": s.original_max_position_embeddings})
    });
    let config = serde_json::json!({
        "model_type": "llama", "hidden_size": cfg.dim, "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.n_kv_heads,
        "intermediate_size": cfg.ffn_dim, "vocab_size": cfg.vocab_size, "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta, "rope_scaling": rope_scaling, "max_position_embeddings": cfg.max_seq_len,
        "tie_word_embeddings": cfg.tie_embeddings, "bos_token_id": 1, "eos_token_id": 2
    });
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&config).unwrap()).unwrap();
    let file = GgufFile::from_bytes(tiny_gguf(cfg, w, GgmlType::F32).to_bytes(), "t.gguf").unwrap();
    tokenizer::from_gguf(&file).unwrap().save(dir.join("tokenizer.json"), false).unwrap();

    let encode = |x: &[f32]| -> Vec<u8> {
        match dtype {
            safetensors::Dtype::F32 => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
            safetensors::Dtype::F16 => x.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
            safetensors::Dtype::BF16 => x.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect(),
            _ => unreachable!(),
        }
    };
    let mut all: Vec<(String, Vec<usize>, Vec<u8>)> = vec![
        (WeightName::TokEmbd.hf(), vec![cfg.vocab_size, cfg.dim], encode(&w.tok_embeddings.data)),
        (WeightName::Norm.hf(), vec![cfg.dim], encode(&w.norm)),
    ];
    for (i, l) in w.layers.iter().enumerate() {
        let n = |t| WeightName::Layer(i, t).hf();
        all.push((n(LayerTensor::AttnNorm), vec![cfg.dim], encode(&l.attn_norm)));
        all.push((n(LayerTensor::FfnNorm), vec![cfg.dim], encode(&l.ffn_norm)));
        for (t, m) in [
            (LayerTensor::Wq, &l.wq),
            (LayerTensor::Wk, &l.wk),
            (LayerTensor::Wv, &l.wv),
            (LayerTensor::Wo, &l.wo),
            (LayerTensor::WGate, &l.w_gate),
            (LayerTensor::WUp, &l.w_up),
            (LayerTensor::WDown, &l.w_down),
        ] {
            all.push((n(t), vec![m.rows, m.cols], encode(&m.data)));
        }
    }
    let per = all.len().div_ceil(shards);
    let mut weight_map = serde_json::Map::new();
    for (s, chunk) in all.chunks(per).enumerate() {
        let fname = if shards == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{shards:05}.safetensors", s + 1)
        };
        let views: Vec<(String, safetensors::tensor::TensorView)> = chunk
            .iter()
            .map(|(n, shape, b)| (n.clone(), safetensors::tensor::TensorView::new(dtype, shape.clone(), b).unwrap()))
            .collect();
        safetensors::serialize_to_file(views, None, &dir.join(&fname)).unwrap();
        for (n, _, _) in chunk {
            weight_map.insert(n.clone(), serde_json::Value::String(fname.clone()));
        }
    }
    if shards > 1 {
        let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
        std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    }
}

#[test]
fn hf_directory_single_and_sharded() {
    let cfg = tiny_config();
    let w = Weights::random(&cfg, 3).unwrap();
    let toks = [5u32, 6, 7, 100];
    let want = logits(&w, &toks);
    for (dtype, shards, tol) in
        [(safetensors::Dtype::F32, 1, 1e-6), (safetensors::Dtype::BF16, 3, 2e-2), (safetensors::Dtype::F16, 2, 2e-3)]
    {
        let dir = tempfile::tempdir().unwrap();
        write_hf_dir(dir.path(), &cfg, &w, dtype, shards);
        let m = LoadedModel::from_hf_dir(dir.path()).unwrap();
        assert_eq!(m.config.rope_scaling, cfg.rope_scaling);
        let err = max_rel_err(&logits(&m.weights, &toks), &want);
        assert!(err < tol, "{dtype:?} x{shards}: rel err {err}");
        assert_eq!(tokenizer::encode(&m.tokenizer, " the").unwrap().len(), 1);
    }
}

#[test]
fn hf_directory_errors_name_the_problem() {
    let cfg = tiny_config();
    let w = Weights::random(&cfg, 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_hf_dir(dir.path(), &cfg, &w, safetensors::Dtype::F32, 1);
    // config.json that contradicts the weights
    let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    let bad: HashMap<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    let mut bad = bad;
    bad.insert("intermediate_size".into(), 500.into());
    std::fs::write(dir.path().join("config.json"), serde_json::to_string(&bad).unwrap()).unwrap();
    let e = format!("{:#}", LoadedModel::from_hf_dir(dir.path()).err().unwrap());
    assert!(e.contains("mlp.gate_proj.weight") && e.contains("[384, 128]") && e.contains("[500, 128]"), "{e}");
    // truncated safetensors file
    std::fs::write(dir.path().join("config.json"), text).unwrap();
    let st = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    let e = format!("{:#}", LoadedModel::from_hf_dir(dir.path()).err().unwrap());
    assert!(e.contains("model.safetensors") && e.contains("invalid safetensors"), "{e}");
}
