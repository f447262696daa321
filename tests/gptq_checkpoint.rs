//! A GPTQ checkpoint directory written by kernlab and read back the way `kernlab e2e` reads
//! it: stacked int4 linears bit for bit, dequantized tensors exactly, and the command's own
//! GPTQ path (calibration, packing, read-back) end to end on the tiny preset.

mod checkpoint_support;

use checkpoint_support::{
    assert_dequantized_as_written, assert_stacked_as_written, quantize_args, quantize_layers, test_meta, tmp,
};
use half::f16;
use kernlab::llama::hf_write::write_gptq_dir;
use kernlab::llama::quantized::{QuantConfig, QuantMethod, QuantizedSource};
use kernlab::llama::{LlamaConfig, Weights};
use kernlab::quality::quantize_cmd::{run, CheckpointFormat, QuantizeArgs};
use kernlab::quant::{zeros_convention, GroupSize, HalfDtype, RtnConfig};

#[test]
fn an_rtn_checkpoint_reads_back_bit_for_bit() {
    let c = LlamaConfig::preset("tiny").unwrap();
    let w = Weights::random(&c, 3).unwrap();
    // Asymmetric g32 with f16 scales, as AutoGPTQ stores them.
    let rtn = RtnConfig { group: GroupSize::Group(32), symmetric: false, scale_dtype: HalfDtype::F16 };
    let linears = quantize_layers(&w, |_| &rtn);
    let dir = tmp("ckpt-rtn");
    let meta = test_meta(&linears);
    write_gptq_dir(&dir, &w, &meta).unwrap();
    assert!(write_gptq_dir(&dir, &w, &meta).unwrap_err().to_string().contains("already exists"));

    let cfg = LlamaConfig::from_hf_json(&dir.join("config.json")).unwrap();
    assert_eq!((cfg.dim, cfg.n_layers, cfg.ffn_dim, cfg.n_kv_heads), (c.dim, c.n_layers, c.ffn_dim, c.n_kv_heads));
    let q = QuantConfig::from_hf_dir(&dir).unwrap().expect("a quantization_config");
    assert_eq!(q.group_size, Some(32));
    let src = QuantizedSource::open(&dir, &cfg, q.clone()).unwrap();
    assert_stacked_as_written(&src.model_linears().unwrap(), &linears);
    let back = Weights::load(&cfg, &src).unwrap();
    assert_dequantized_as_written(&back, &linears);
    for (l, lb) in back.layers.iter().enumerate() {
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
    let dir = tmp("ckpt-gptq");
    let args = quantize_args("gptq", CheckpointFormat::Gptq, dir.clone());
    run(args.clone()).unwrap();
    let cfg = LlamaConfig::from_hf_json(&dir.join("config.json")).unwrap();
    let q = QuantConfig::from_hf_dir(&dir).unwrap().unwrap();
    assert!(matches!(q.method, QuantMethod::Gptq(_)) && q.group_size == Some(128) && !q.desc_act);
    let src = QuantizedSource::open(&dir, &cfg, q).unwrap();
    assert_eq!(src.model_linears().unwrap().len(), 4 * cfg.n_layers);
    let e = run(args).unwrap_err().to_string();
    assert!(e.contains("already exists"), "{e}");
    let bad =
        QuantizeArgs { method: "int8-channel".into(), out: tmp("ckpt-bad"), ..QuantizeArgs::clone(&args_for_error()) };
    assert!(run(bad).unwrap_err().to_string().contains("grouped int4"));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn args_for_error() -> QuantizeArgs {
    QuantizeArgs { calib_windows: 1, ..quantize_args("gptq", CheckpointFormat::Gptq, tmp("ckpt-unused")) }
}
