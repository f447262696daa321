//! AWQ checkpoint directories (AutoAWQ's GEMM layout) written by kernlab and read back the
//! way `kernlab e2e` reads them: the writer with zero points 0 and 15 and symmetric linears,
//! bit for bit; the command's own `--format awq` path on the tiny preset, dequantized linears
//! compared; and the refusals of what AWQ cannot hold.

mod checkpoint_support;

use checkpoint_support::{
    assert_dequantized_as_written, assert_stacked_as_written, load, quantize_args, quantize_layers, test_meta, tmp,
};
use kernlab::llama::hf_write::{write_awq_dir, LAYER_LINEARS};
use kernlab::llama::names::WeightName;
use kernlab::llama::quantized::QuantMethod;
use kernlab::llama::{LlamaConfig, Weights};
use kernlab::quality::quantize_cmd::{run, CheckpointFormat};
use kernlab::quant::{GroupSize, HalfDtype, RtnConfig, Zeros};

#[test]
fn an_awq_checkpoint_with_extreme_and_symmetric_zeros_reads_back_bit_for_bit() {
    let c = LlamaConfig::preset("tiny").unwrap();
    let w = Weights::random(&c, 5).unwrap();
    let asym = RtnConfig { group: GroupSize::Group(32), symmetric: false, scale_dtype: HalfDtype::F16 };
    let sym = RtnConfig { symmetric: true, ..asym };
    let mut linears = quantize_layers(&w, |i| if i == 3 { &sym } else { &asym });
    // Force the extremes AWQ's nibbles must hold: zero points 0 and 15.
    if let Zeros::Int(z) = &mut linears[0][0].zeros {
        z[0] = 0;
        z[1] = 15;
        z[9] = 0;
    } else {
        panic!("asymmetric RTN gives integer zeros");
    }
    let dir = tmp("awq-rtn");
    let meta = test_meta(&linears);
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
    assert_stacked_as_written(&src.model_linears().unwrap(), &linears);
    assert_dequantized_as_written(&Weights::load(&cfg, &src).unwrap(), &linears);
    std::fs::remove_dir_all(&dir).unwrap();

    // A zero point of 16 (GPTQ v1's overflow) has no AWQ nibble: refused, nothing written.
    if let Zeros::Int(z) = &mut linears[1][2].zeros {
        z[0] = 16;
    }
    let meta = test_meta(&linears);
    let e = format!("{:#}", write_awq_dir(&dir, &w, &meta).unwrap_err());
    assert!(e.contains("zero point 16") && e.contains("layers.1.self_attn.v_proj"), "{e}");
    assert!(!dir.exists());
}

#[test]
fn kernlab_quantize_writes_an_awq_checkpoint_that_loads() {
    let dir = tmp("awq-cmd");
    run(quantize_args("awq", CheckpointFormat::Awq, dir.clone())).unwrap();
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
    let (ga, aw) = (tmp("awq-as-gptq"), tmp("awq-as-awq"));
    run(quantize_args("rtn-asym", CheckpointFormat::Gptq, ga.clone())).unwrap();
    run(quantize_args("rtn-asym", CheckpointFormat::Awq, aw.clone())).unwrap();
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
        let out = tmp("awq-refused");
        let e = run(quantize_args(m, CheckpointFormat::Awq, out.clone())).unwrap_err().to_string();
        assert!(
            e.contains("--format awq") && e.contains("asymmetric grouped") && e.contains("--format gptq"),
            "{m}: {e}"
        );
        assert!(!out.exists(), "{m}: nothing is written");
    }
}
