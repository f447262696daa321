//! AWQ checkpoint directories (AutoAWQ's GEMM layout) written by kernlab and read back the
//! way `kernlab e2e` reads them: the writer with zero points 0 and 15 and symmetric linears,
//! bit for bit; the command's own `--format awq` path on the tiny preset, dequantized linears
//! compared; and the refusals of what AWQ cannot hold.

use kernlab::llama::gguf_model::BosPolicy;
use kernlab::llama::hf_write::{write_awq_dir, CheckpointMeta, LAYER_LINEARS};
use kernlab::llama::names::WeightName;
use kernlab::llama::quantized::{QuantConfig, QuantMethod, QuantizedSource};
use kernlab::llama::{LlamaConfig, Weights};
use kernlab::quality::quantize_cmd::{run, CheckpointFormat, QuantizeArgs};
use kernlab::quant::{quantize_rtn, stack_rows, GroupSize, HalfDtype, Int4Weight, RtnConfig, Zeros};

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("kl-awq-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn args(method: &str, format: CheckpointFormat, out: std::path::PathBuf) -> QuantizeArgs {
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

fn load(dir: &std::path::Path) -> (LlamaConfig, QuantConfig, QuantizedSource) {
    let cfg = LlamaConfig::from_hf_json(&dir.join("config.json")).unwrap();
    let q = QuantConfig::from_hf_dir(dir).unwrap().expect("a quantization_config");
    let src = QuantizedSource::open(dir, &cfg, q.clone()).unwrap();
    (cfg, q, src)
}

#[test]
fn an_awq_checkpoint_with_extreme_and_symmetric_zeros_reads_back_bit_for_bit() {
    let c = LlamaConfig::preset("tiny").unwrap();
    let w = Weights::random(&c, 5).unwrap();
    let asym = RtnConfig { group: GroupSize::Group(32), symmetric: false, scale_dtype: HalfDtype::F16 };
    let sym = RtnConfig { symmetric: true, ..asym };
    let mut linears: Vec<Vec<Int4Weight>> = w
        .layers
        .iter()
        .map(|l| {
            [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]
                .iter()
                .enumerate()
                .map(|(i, m)| quantize_rtn(&m.data, m.rows, m.cols, if i == 3 { &sym } else { &asym }).unwrap())
                .collect()
        })
        .collect();
    // Force the extremes AWQ's nibbles must hold: zero points 0 and 15.
    if let Zeros::Int(z) = &mut linears[0][0].zeros {
        z[0] = 0;
        z[1] = 15;
        z[9] = 0;
    } else {
        panic!("asymmetric RTN gives integer zeros");
    }
    let dir = tmp("rtn");
    let meta = CheckpointMeta {
        linears: &linears,
        symmetric: false,
        tokenizer: None,
        bos: &BosPolicy::None,
        chat_template: None,
        made_by: "test".into(),
    };
    write_awq_dir(&dir, &w, &meta).unwrap();
    assert!(write_awq_dir(&dir, &w, &meta).unwrap_err().to_string().contains("already exists"));

    let raw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let qc = &raw["quantization_config"];
    assert_eq!(
        (&qc["quant_method"], &qc["bits"], &qc["group_size"], &qc["zero_point"], &qc["version"]),
        (&"awq".into(), &4.into(), &32.into(), &true.into(), &"gemm".into()),
        "{qc}"
    );
    let (cfg, q, src) = load(&dir);
    assert_eq!((q.method, q.group_size, q.desc_act), (QuantMethod::Awq, Some(32), false));
    let stacked = src.model_linears().unwrap();
    for (l, qs) in linears.iter().enumerate() {
        assert_eq!(stacked[4 * l], stack_rows(&[&qs[0], &qs[1], &qs[2]]).unwrap(), "layer {l} qkv");
        assert_eq!(stacked[4 * l + 1], qs[3], "layer {l} o (symmetric, stored as 8s)");
        assert_eq!(stacked[4 * l + 2], stack_rows(&[&qs[4], &qs[5]]).unwrap(), "layer {l} gate_up");
        assert_eq!(stacked[4 * l + 3], qs[6], "layer {l} down");
    }
    let back = Weights::load(&cfg, &src).unwrap();
    for (l, (lb, qs)) in back.layers.iter().zip(&linears).enumerate() {
        let mats = [&lb.wq, &lb.wk, &lb.wv, &lb.wo, &lb.w_gate, &lb.w_up, &lb.w_down];
        for ((m, q), t) in mats.iter().zip(qs).zip(LAYER_LINEARS) {
            assert_eq!(m.data, q.dequantize(), "{}", WeightName::Layer(l, t));
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();

    // A zero point of 16 (GPTQ v1's overflow) has no AWQ nibble: refused, nothing written.
    if let Zeros::Int(z) = &mut linears[1][2].zeros {
        z[0] = 16;
    }
    let meta = CheckpointMeta {
        linears: &linears,
        symmetric: false,
        tokenizer: None,
        bos: &BosPolicy::None,
        chat_template: None,
        made_by: "test".into(),
    };
    let e = format!("{:#}", write_awq_dir(&dir, &w, &meta).unwrap_err());
    assert!(e.contains("zero point 16") && e.contains("layers.1.self_attn.v_proj"), "{e}");
    assert!(!dir.exists());
}

#[test]
fn kernlab_quantize_writes_an_awq_checkpoint_that_loads() {
    let dir = tmp("cmd");
    run(args("awq", CheckpointFormat::Awq, dir.clone())).unwrap();
    let (cfg, q, src) = load(&dir);
    assert_eq!((q.method, q.group_size), (QuantMethod::Awq, Some(128)));
    let stacked = src.model_linears().unwrap();
    assert_eq!(stacked.len(), 4 * cfg.n_layers);
    // The int4 path (stacked, for gemm_int4) and the dequantized path (bf16, CPU reference)
    // must see the same values.
    let back = Weights::load(&cfg, &src).unwrap();
    for (l, lb) in back.layers.iter().enumerate() {
        let cat = |ms: &[&kernlab::llama::Mat]| ms.iter().flat_map(|m| m.data.clone()).collect::<Vec<_>>();
        let want =
            [cat(&[&lb.wq, &lb.wk, &lb.wv]), lb.wo.data.clone(), cat(&[&lb.w_gate, &lb.w_up]), lb.w_down.data.clone()];
        for (i, want) in want.iter().enumerate() {
            assert_eq!(&stacked[4 * l + i].dequantize(), want, "layer {l} linear {i}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn one_rtn_quantization_loads_the_same_from_awq_and_gptq() {
    let (ga, aw) = (tmp("as-gptq"), tmp("as-awq"));
    run(args("rtn-asym", CheckpointFormat::Gptq, ga.clone())).unwrap();
    run(args("rtn-asym", CheckpointFormat::Awq, aw.clone())).unwrap();
    let (cfg, qg, g) = load(&ga);
    let (_, qa, a) = load(&aw);
    assert!(matches!(qg.method, QuantMethod::Gptq(_)) && qa.method == QuantMethod::Awq);
    assert_eq!(a.model_linears().unwrap(), g.model_linears().unwrap());
    let (wa, wg) = (Weights::load(&cfg, &a).unwrap(), Weights::load(&cfg, &g).unwrap());
    for (l, (la, lg)) in wa.layers.iter().zip(&wg.layers).enumerate() {
        let ma = [&la.wq, &la.wk, &la.wv, &la.wo, &la.w_gate, &la.w_up, &la.w_down];
        let mg = [&lg.wq, &lg.wk, &lg.wv, &lg.wo, &lg.w_gate, &lg.w_up, &lg.w_down];
        for ((x, y), t) in ma.iter().zip(mg).zip(LAYER_LINEARS) {
            assert_eq!(x.data, y.data, "{}", WeightName::Layer(l, t));
        }
    }
    std::fs::remove_dir_all(&ga).unwrap();
    std::fs::remove_dir_all(&aw).unwrap();
}

#[test]
fn awq_refuses_symmetric_and_act_order_methods() {
    for m in ["rtn-sym", "rtn-g32-sym", "gptq-act", "gptq-g64-act"] {
        let out = tmp("refused");
        let e = run(args(m, CheckpointFormat::Awq, out.clone())).unwrap_err().to_string();
        assert!(
            e.contains("--format awq") && e.contains("asymmetric grouped") && e.contains("--format gptq"),
            "{m}: {e}"
        );
        assert!(!out.exists(), "{m}: nothing is written");
    }
}
