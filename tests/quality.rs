//! `kernlab quality` end to end on the real SmolLM2-135M GGUF and real text (Hamlet held out,
//! Macbeth for calibration; both fetched by scripts/fetch-test-model.sh), on the CPU.
//!
//! The assertions are the orderings every correct implementation of these methods shows on a
//! trained model, with margins far from what was measured (64-token window: int8 KL 0.005,
//! RTN g64 0.45, AWQ 0.35, GPTQ 0.45, per-channel RTN ~1, per-tensor RTN ~13). A quantizer
//! that scales, packs or updates wrongly lands far outside them. ~1.5 minutes in release.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

fn home_cache(sub: &str) -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/kernlab").join(sub)
}

/// Never a silent pass: the files are CI's to fetch.
fn require(path: PathBuf) -> PathBuf {
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-test-model.sh (CI's scripts/test.sh does)",
        path.display()
    );
    path
}

#[derive(Debug, serde::Deserialize)]
struct Row {
    method: String,
    perplexity: f64,
    kl: f64,
    top1: f64,
    bits_per_weight: f64,
}

#[test]
fn quantizers_on_real_weights_order_as_they_should() {
    let model_dir = std::env::var_os("KERNLAB_MODEL_DIR").map(PathBuf::from).unwrap_or_else(|| home_cache("models"));
    require(model_dir.join("SmolLM2-135M-Instruct.Q4_1.gguf"));
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("q.csv");
    let methods = "reference,int8-channel,rtn-tensor-sym,rtn-channel-asym,rtn-g64-asym,awq-g64,gptq-g64,mixed-k4";
    let out = Command::new(env!("CARGO_BIN_EXE_kernlab"))
        .args(["quality", "--methods", methods, "--window", "64", "--eval-windows", "1", "--calib-windows", "1"])
        .arg("--out")
        .arg(&csv)
        .env("KERNLAB_MODEL_DIR", &model_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "kernlab quality failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("perplexity") && stdout.contains("gptq-g64"), "{stdout}");
    assert!(csv.with_extension("png").metadata().unwrap().len() > 1000, "the chart was not drawn");

    let rows: HashMap<String, Row> = csv::Reader::from_path(&csv)
        .unwrap()
        .deserialize::<Row>()
        .map(|r| r.unwrap())
        .map(|r| (r.method.clone(), r))
        .collect();
    let kl = |m: &str| rows[m].kl;
    let r = &rows["reference"];
    assert_eq!((r.kl, r.top1), (0.0, 1.0));
    assert!(r.perplexity > 5.0 && r.perplexity < 200.0, "reference perplexity {} on Hamlet", r.perplexity);
    assert!(kl("int8-channel") < 0.05, "int8 per channel is nearly lossless: {}", kl("int8-channel"));
    assert!(kl("rtn-g64-asym") > 0.05 && kl("rtn-g64-asym") < 2.0, "{}", kl("rtn-g64-asym"));
    assert!(kl("rtn-tensor-sym") > 5.0 * kl("rtn-g64-asym"), "one scale per tensor must cost far more than g64");
    assert!(kl("rtn-channel-asym") > kl("rtn-g64-asym"), "groups of 64 must beat one scale per row");
    assert!(kl("awq-g64") < kl("rtn-g64-asym"), "AWQ's searched scales must improve on plain RTN g64");
    assert!(kl("gptq-g64") < 1.2 * kl("rtn-g64-asym"), "GPTQ must not be worse than RTN at g64");
    assert!(kl("mixed-k4") < kl("rtn-channel-asym"), "keeping 4 linears in bf16 must improve on its base");
    let bits = |m: &str| rows[m].bits_per_weight;
    assert!((bits("rtn-g64-asym") - 4.375).abs() < 1e-9, "4 bits + a 16-bit scale and an 8-bit zero per 64 weights");
    assert!(bits("mixed-k4") > bits("rtn-channel-asym") && bits("int8-channel") > 8.0);
}
