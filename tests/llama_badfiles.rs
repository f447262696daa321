//! Broken GGUF files: every one must give an error that names the file (and the tensor or
//! key when there is one), never a panic or a huge allocation.

use kernlab::llama::ggml_types::GgmlType;
use kernlab::llama::gguf::{MetaArray, MetaValue};
use kernlab::llama::gguf_model::GgufSource;
use kernlab::llama::gguf_write::GgufWriter;
use kernlab::llama::{GgufFile, LlamaConfig, Weights};

const NAME: &str = "bad.gguf";

fn parse_err(bytes: Vec<u8>) -> String {
    match GgufFile::from_bytes(bytes, NAME) {
        Ok(f) => panic!("expected an error, parsed {f:?}"),
        Err(e) => {
            let s = e.to_string();
            assert!(s.starts_with(NAME), "error does not name the file: {s}");
            s
        }
    }
}

/// A small valid file with two tensors.
fn small() -> GgufWriter {
    let mut g = GgufWriter::new();
    g.kv("general.architecture", MetaValue::Str("llama".into()))
        .kv("tokens", MetaValue::Array(MetaArray::Str(vec!["a".into(), "bc".into()])));
    g.tensor_f32("a.weight", &[2, 32], &[0.5; 64]);
    g.tensor("b.weight", &[1, 64], GgmlType::Q8_0, vec![0; 68]);
    g
}

#[test]
fn small_file_is_valid() {
    let f = GgufFile::from_bytes(small().to_bytes(), NAME).unwrap();
    assert_eq!(f.tensor_view("a.weight").unwrap().to_f32().unwrap(), vec![0.5; 64]);
    assert_eq!(f.tensor("b.weight").unwrap().shape(), vec![1, 64]);
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = small().to_bytes();
    for len in 0..bytes.len() {
        let e = parse_err(bytes[..len].to_vec());
        assert!(e.contains("truncated") || e.contains("past the end") || e.contains("cannot fit"), "cut at {len}: {e}");
    }
}

#[test]
fn truncated_data_names_the_tensor() {
    let bytes = small().to_bytes();
    let e = parse_err(bytes[..bytes.len() - 1].to_vec());
    assert!(e.contains("tensor 'b.weight'") && e.contains("past the end"), "{e}");
}

#[test]
fn offset_past_end_names_the_tensor() {
    for off in [1 << 20, u64::MAX - 31] {
        let mut g = small();
        g.tensors[0].offset_override = Some(off);
        let e = parse_err(g.to_bytes());
        assert!(e.contains("tensor 'a.weight'") && e.contains("past the end"), "{e}");
    }
    let mut g = small();
    g.tensors[1].offset_override = Some(3);
    let e = parse_err(g.to_bytes());
    assert!(e.contains("tensor 'b.weight'") && e.contains("not aligned"), "{e}");
}

/// Overwrite the u64 at `pos` of a valid file.
fn patch_u64(mut b: Vec<u8>, pos: usize, v: u64) -> Vec<u8> {
    b[pos..pos + 8].copy_from_slice(&v.to_le_bytes());
    b
}

#[test]
fn absurd_counts() {
    let b = small().to_bytes();
    // tensor count at byte 8, metadata count at byte 16
    assert!(parse_err(patch_u64(b.clone(), 8, u64::MAX)).contains("tensor count"));
    assert!(parse_err(patch_u64(b.clone(), 8, 100_000)).contains("cannot fit"));
    assert!(parse_err(patch_u64(b.clone(), 16, 1 << 40)).contains("metadata count"));
    // The first key's length (byte 24): absurd.
    assert!(parse_err(patch_u64(b.clone(), 24, 1 << 62)).contains("exceeds the limit"));

    // An array whose count claims more elements than the file holds.
    let mut g = GgufWriter::new();
    g.kv("big", MetaValue::Array(MetaArray::U32(vec![1, 2, 3])));
    let b = g.to_bytes();
    let count_pos = 24 + 8 + 3 + 4 + 4; // key len, "big", value type, element type
    let e = parse_err(patch_u64(b, count_pos, 1 << 61));
    assert!(e.contains("metadata 'big'") && e.contains("cannot fit"), "{e}");
}

#[test]
fn absurd_dims_and_types() {
    let mut g = small();
    g.tensors[0].ne = vec![1 << 32, 1 << 32, 1 << 32];
    let e = parse_err(g.to_bytes());
    assert!(e.contains("tensor 'a.weight'") && e.contains("elements"), "{e}");

    let mut g = small();
    g.tensors[0].ne = vec![2; 7];
    assert!(parse_err(g.to_bytes()).contains("7 dimensions"));

    let mut g = small();
    g.tensors[0].ne = vec![64, 0];
    assert!(parse_err(g.to_bytes()).contains("zero dimension"));

    let mut g = small();
    g.tensors[1].ne = vec![48, 1]; // Q8_0 rows must be whole 32-blocks
    let e = parse_err(g.to_bytes());
    assert!(e.contains("tensor 'b.weight'") && e.contains("block size"), "{e}");

    let mut g = small();
    g.tensors[1].type_id = 99;
    let e = parse_err(g.to_bytes());
    assert!(e.contains("tensor 'b.weight'") && e.contains("unknown GGML type id 99"), "{e}");

    let mut g = small();
    g.tensors[1].name = "a.weight".into();
    assert!(parse_err(g.to_bytes()).contains("duplicate"));
}

#[test]
fn bad_headers() {
    assert!(parse_err(b"GGML\x03\0\0\0".to_vec()).contains("not a GGUF file"));
    let mut g = small();
    g.version = 1;
    assert!(parse_err(g.to_bytes()).contains("version 1"));
    g.version = 3u32.swap_bytes();
    assert!(parse_err(g.to_bytes()).contains("big-endian"));
    let mut g = small();
    g.kv("general.alignment", MetaValue::U32(24));
    assert!(parse_err(g.to_bytes()).contains("general.alignment"));
    let mut b = small().to_bytes();
    b[24 + 8 + "general.architecture".len()] = 77; // value type of the first key
    assert!(parse_err(b).contains("unknown metadata value type 77"));
}

#[test]
fn unsupported_dtype_at_load_names_the_tensor() {
    let mut g = small();
    g.tensors[1] = kernlab::llama::gguf_write::WriterTensor {
        name: "k.weight".into(),
        ne: vec![256],
        type_id: GgmlType::Q6_K.id(),
        data: vec![0; 210],
        offset_override: None,
    };
    let f = GgufFile::from_bytes(g.to_bytes(), NAME).unwrap();
    let e = f.tensor_view("k.weight").unwrap().to_f32().unwrap_err().to_string();
    assert!(e.contains("bad.gguf: tensor 'k.weight'") && e.contains("Q6_K"), "{e}");
    let e = f.tensor_view("nope.weight").unwrap_err().to_string();
    assert!(e.contains("bad.gguf: tensor 'nope.weight'") && e.contains("missing"), "{e}");
}

/// A minimal llama GGUF for the tiny preset with all weights F32 zero-filled.
fn tiny_llama(skip: Option<&str>, reshape: Option<(&str, Vec<usize>)>) -> Vec<u8> {
    let cfg = LlamaConfig::preset("tiny").unwrap();
    let mut g = GgufWriter::new();
    let u = |x: usize| MetaValue::U32(x as u32);
    g.kv("general.architecture", MetaValue::Str("llama".into()))
        .kv("llama.block_count", u(cfg.n_layers))
        .kv("llama.embedding_length", u(cfg.dim))
        .kv("llama.feed_forward_length", u(cfg.ffn_dim))
        .kv("llama.attention.head_count", u(cfg.n_heads))
        .kv("llama.attention.head_count_kv", u(cfg.n_kv_heads))
        .kv("llama.vocab_size", u(cfg.vocab_size));
    let mut names = vec![
        ("token_embd.weight".to_string(), vec![cfg.vocab_size, cfg.dim]),
        ("output_norm.weight".to_string(), vec![cfg.dim]),
    ];
    for i in 0..cfg.n_layers {
        for (n, s) in [
            ("attn_norm", vec![cfg.dim]),
            ("ffn_norm", vec![cfg.dim]),
            ("attn_q", vec![cfg.q_dim(), cfg.dim]),
            ("attn_k", vec![cfg.kv_dim(), cfg.dim]),
            ("attn_v", vec![cfg.kv_dim(), cfg.dim]),
            ("attn_output", vec![cfg.dim, cfg.q_dim()]),
            ("ffn_gate", vec![cfg.ffn_dim, cfg.dim]),
            ("ffn_up", vec![cfg.ffn_dim, cfg.dim]),
            ("ffn_down", vec![cfg.dim, cfg.ffn_dim]),
        ] {
            names.push((format!("blk.{i}.{n}.weight"), s));
        }
    }
    for (n, mut s) in names {
        if skip == Some(n.as_str()) {
            continue;
        }
        if let Some((r, shape)) = &reshape {
            if *r == n {
                s = shape.clone();
            }
        }
        let count: usize = s.iter().product();
        g.tensor_f32(&n, &s, &vec![0.0; count]);
    }
    g.to_bytes()
}

fn load_err(bytes: Vec<u8>) -> String {
    let f = GgufFile::from_bytes(bytes, "model.gguf").unwrap();
    let cfg = LlamaConfig::from_gguf(&f).unwrap();
    match Weights::load(&cfg, &GgufSource::new(&f, &cfg)) {
        Ok(_) => panic!("load should fail"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn tiny_llama_loads() {
    let f = GgufFile::from_bytes(tiny_llama(None, None), "model.gguf").unwrap();
    let cfg = LlamaConfig::from_gguf(&f).unwrap();
    Weights::load(&cfg, &GgufSource::new(&f, &cfg)).unwrap();
}

#[test]
fn missing_tensor_is_named() {
    let e = load_err(tiny_llama(Some("blk.2.ffn_up.weight"), None));
    assert!(e.contains("model.gguf") && e.contains("'blk.2.ffn_up.weight' is missing"), "{e}");
}

#[test]
fn config_contradicting_weights_names_tensor_and_shapes() {
    let e = load_err(tiny_llama(None, Some(("blk.1.attn_k.weight", vec![96, 128]))));
    assert!(
        e.contains("model.gguf")
            && e.contains("'blk.1.attn_k.weight'")
            && e.contains("[96, 128]")
            && e.contains("[64, 128]"),
        "{e}"
    );
    let e = load_err(tiny_llama(None, Some(("token_embd.weight", vec![1000, 128]))));
    assert!(e.contains("'token_embd.weight'") && e.contains("[1000, 128]") && e.contains("[1024, 128]"), "{e}");
}

#[test]
fn metadata_type_errors_name_the_key() {
    let mut g = GgufWriter::new();
    g.kv("general.architecture", MetaValue::Str("llama".into()))
        .kv("llama.block_count", MetaValue::Str("thirty".into()));
    let f = GgufFile::from_bytes(g.to_bytes(), "m.gguf").unwrap();
    let e = format!("{:#}", LlamaConfig::from_gguf(&f).unwrap_err());
    assert!(e.contains("m.gguf") && e.contains("llama.embedding_length") && e.contains("missing"), "{e}");
    assert!(f.meta_usize("llama.block_count").unwrap_err().to_string().contains("'llama.block_count'"));
    let mut g = GgufWriter::new();
    g.kv("general.architecture", MetaValue::Str("gpt2".into()));
    let f = GgufFile::from_bytes(g.to_bytes(), "m.gguf").unwrap();
    assert!(format!("{:#}", LlamaConfig::from_gguf(&f).unwrap_err()).contains("only 'llama'"));
}
