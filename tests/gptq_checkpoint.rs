//! A GPTQ checkpoint directory written by kernlab and read back the way `kernlab e2e` reads
//! it: stacked int4 linears bit for bit, dequantized tensors exactly, and the command's own
//! GPTQ path (calibration, packing, read-back) end to end on the tiny preset.

use half::f16;
use kernlab::llama::gguf_model::BosPolicy;
use kernlab::llama::hf_write::{write_gptq_dir, CheckpointMeta, LAYER_LINEARS};
use kernlab::llama::names::WeightName;
use kernlab::llama::quantized::{QuantConfig, QuantMethod, QuantizedSource};
use kernlab::llama::{LlamaConfig, Weights};
use kernlab::quality::quantize_cmd::{run, CheckpointFormat, QuantizeArgs};
use kernlab::quant::{quantize_rtn, stack_rows, zeros_convention, GroupSize, HalfDtype, Int4Weight, RtnConfig};

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("kl-ckpt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn an_rtn_checkpoint_reads_back_bit_for_bit() {
    let c = LlamaConfig::preset("tiny").unwrap();
    let w = Weights::random(&c, 3).unwrap();
    // Asymmetric g32 with f16 scales, as AutoGPTQ stores them.
    let rtn = RtnConfig { group: GroupSize::Group(32), symmetric: false, scale_dtype: HalfDtype::F16 };
    let linears: Vec<Vec<Int4Weight>> = w
        .layers
        .iter()
        .map(|l| {
            [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]
                .iter()
                .map(|m| quantize_rtn(&m.data, m.rows, m.cols, &rtn).unwrap())
                .collect()
        })
        .collect();
    let dir = tmp("rtn");
    let meta = CheckpointMeta {
        linears: &linears,
        symmetric: false,
        tokenizer: None,
        bos: &BosPolicy::None,
        chat_template: None,
        made_by: "test".into(),
    };
    write_gptq_dir(&dir, &w, &meta).unwrap();
    assert!(write_gptq_dir(&dir, &w, &meta).unwrap_err().to_string().contains("already exists"));

    let cfg = LlamaConfig::from_hf_json(&dir.join("config.json")).unwrap();
    assert_eq!((cfg.dim, cfg.n_layers, cfg.ffn_dim, cfg.n_kv_heads), (c.dim, c.n_layers, c.ffn_dim, c.n_kv_heads));
    let q = QuantConfig::from_hf_dir(&dir).unwrap().expect("a quantization_config");
    assert_eq!(q.group_size, Some(32));
    let src = QuantizedSource::open(&dir, &cfg, q.clone()).unwrap();
    let stacked = src.model_linears().unwrap();
    for (l, qs) in linears.iter().enumerate() {
        assert_eq!(stacked[4 * l], stack_rows(&[&qs[0], &qs[1], &qs[2]]).unwrap(), "layer {l} qkv");
        assert_eq!(stacked[4 * l + 1], qs[3], "layer {l} o");
        assert_eq!(stacked[4 * l + 2], stack_rows(&[&qs[4], &qs[5]]).unwrap(), "layer {l} gate_up");
        assert_eq!(stacked[4 * l + 3], qs[6], "layer {l} down");
    }
    let back = Weights::load(&cfg, &src).unwrap();
    for (l, (lb, qs)) in back.layers.iter().zip(&linears).enumerate() {
        let mats = [&lb.wq, &lb.wk, &lb.wv, &lb.wo, &lb.w_gate, &lb.w_up, &lb.w_down];
        for ((m, q), t) in mats.iter().zip(qs).zip(LAYER_LINEARS) {
            assert_eq!(m.data, q.dequantize(), "{}", WeightName::Layer(l, t));
        }
        let f16r: Vec<f32> = w.layers[l].attn_norm.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
        assert_eq!(lb.attn_norm, f16r, "norms are stored as f16");
    }
    if let QuantMethod::Gptq(conv) = q.method {
        assert_eq!(conv, zeros_convention(linears.iter().flatten()).unwrap(), "the convention written is read");
    } else {
        panic!("written as GPTQ, read as {:?}", q.method);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn kernlab_quantize_writes_a_gptq_checkpoint_that_loads() {
    let dir = tmp("gptq");
    let args = QuantizeArgs {
        model: None,
        preset: Some("tiny".into()),
        out: dir.clone(),
        method: "gptq".into(),
        format: CheckpointFormat::Gptq,
        calib_text: None,
        window: 32,
        calib_windows: 2,
        damp: 0.01,
        awq_grid: 4,
        sample_rows: 64,
    };
    run(args.clone()).unwrap();
    let cfg = LlamaConfig::from_hf_json(&dir.join("config.json")).unwrap();
    let q = QuantConfig::from_hf_dir(&dir).unwrap().unwrap();
    assert!(matches!(q.method, QuantMethod::Gptq(_)) && q.group_size == Some(128) && !q.desc_act);
    let src = QuantizedSource::open(&dir, &cfg, q).unwrap();
    assert_eq!(src.model_linears().unwrap().len(), 4 * cfg.n_layers);
    let e = run(args).unwrap_err().to_string();
    assert!(e.contains("already exists"), "{e}");
    let bad = QuantizeArgs { method: "int8-channel".into(), out: tmp("bad"), ..QuantizeArgs::clone(&args_for_error()) };
    assert!(run(bad).unwrap_err().to_string().contains("grouped int4"));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn args_for_error() -> QuantizeArgs {
    QuantizeArgs {
        model: None,
        preset: Some("tiny".into()),
        out: tmp("unused"),
        method: "gptq".into(),
        format: CheckpointFormat::Gptq,
        calib_text: None,
        window: 32,
        calib_windows: 1,
        damp: 0.01,
        awq_grid: 4,
        sample_rows: 64,
    }
}
