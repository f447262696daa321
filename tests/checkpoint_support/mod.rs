//! What the AWQ and GPTQ checkpoint tests share: scratch directories, `kernlab quantize`
//! arguments on the tiny preset, the writer's metadata, quantized layers, and the checks
//! that a checkpoint reads back as written.
#![allow(dead_code)]

use kernlab::llama::gguf_model::BosPolicy;
use kernlab::llama::hf_write::{CheckpointMeta, LAYER_LINEARS};
use kernlab::llama::names::WeightName;
use kernlab::llama::quantized::{QuantConfig, QuantizedSource};
use kernlab::llama::{LlamaConfig, Weights};
use kernlab::quality::quantize_cmd::{CheckpointFormat, QuantizeArgs};
use kernlab::quant::{quantize_rtn, stack_rows, Int4Weight, RtnConfig};
use std::path::{Path, PathBuf};

/// A fresh (removed) scratch directory `name` of this process (unique across the tests).
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// `kernlab quantize --preset tiny` with `method` into `out`, sized to run in a test.
pub fn quantize_args(method: &str, format: CheckpointFormat, out: PathBuf) -> QuantizeArgs {
    QuantizeArgs {
        model: None,
        preset: Some("tiny".into()),
        out,
        method: method.into(),
        format,
        calib_text: None,
        window: 32,
        calib_windows: 2,
        damp: 0.01,
        awq_grid: 4,
        sample_rows: 64,
    }
}

/// The writer's metadata for `linears`: asymmetric, no tokenizer, no BOS, no chat template.
pub fn test_meta(linears: &[Vec<Int4Weight>]) -> CheckpointMeta<'_> {
    CheckpointMeta {
        linears,
        symmetric: false,
        tokenizer: None,
        bos: &BosPolicy::None,
        chat_template: None,
        made_by: "test".into(),
    }
}

/// Every layer's seven linears of `w` quantized with RTN, linear i (LAYER_LINEARS order)
/// with `rtn(i)`.
pub fn quantize_layers<'a>(w: &Weights, rtn: impl Fn(usize) -> &'a RtnConfig) -> Vec<Vec<Int4Weight>> {
    w.layers
        .iter()
        .map(|l| {
            [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]
                .iter()
                .enumerate()
                .map(|(i, m)| quantize_rtn(&m.data, m.rows, m.cols, rtn(i)).unwrap())
                .collect()
        })
        .collect()
}

/// The config, quantization config and quantized source of a checkpoint directory.
pub fn load(dir: &Path) -> (LlamaConfig, QuantConfig, QuantizedSource) {
    let cfg = LlamaConfig::from_hf_json(&dir.join("config.json")).unwrap();
    let q = QuantConfig::from_hf_dir(dir).unwrap().expect("a quantization_config");
    let src = QuantizedSource::open(dir, &cfg, q.clone()).unwrap();
    (cfg, q, src)
}

/// The model's stacked int4 linears (qkv, o, gate_up, down per layer) are the written
/// layers' linears, stacked, bit for bit.
pub fn assert_stacked_as_written(stacked: &[Int4Weight], linears: &[Vec<Int4Weight>]) {
    for (l, qs) in linears.iter().enumerate() {
        assert_eq!(stacked[4 * l], stack_rows(&[&qs[0], &qs[1], &qs[2]]).unwrap(), "layer {l} qkv");
        assert_eq!(stacked[4 * l + 1], qs[3], "layer {l} o");
        assert_eq!(stacked[4 * l + 2], stack_rows(&[&qs[4], &qs[5]]).unwrap(), "layer {l} gate_up");
        assert_eq!(stacked[4 * l + 3], qs[6], "layer {l} down");
    }
}

/// The dense weights read back hold the written linears' dequantized values exactly.
pub fn assert_dequantized_as_written(back: &Weights, linears: &[Vec<Int4Weight>]) {
    for (l, (lb, qs)) in back.layers.iter().zip(linears).enumerate() {
        let mats = [&lb.wq, &lb.wk, &lb.wv, &lb.wo, &lb.w_gate, &lb.w_up, &lb.w_down];
        for ((m, q), t) in mats.iter().zip(qs).zip(LAYER_LINEARS) {
            assert_eq!(m.data, q.dequantize(), "{}", WeightName::Layer(l, t));
        }
    }
}
