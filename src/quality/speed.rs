//! Decode speed of each method's GPU format (`kernlab quality --speed-preset llama3-8b`).
//!
//! A method's speed is that of the format it writes, not of its weights' values, so it is
//! measured on random weights at a model shape of the user's choice: each distinct format
//! runs once through `kernlab e2e` (a child process, so a faulting kernel costs one row,
//! not the table) at batch 1, and its tokens/s fill the quality table's `decode_tok_s`.

use super::methods::Method;
use crate::quant::GroupSize;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

/// The `kernlab e2e` flags that run `m`'s format on the GPU, or None for the reference
/// (the f32 model, not a GPU format).
///
/// - per-tensor scales store the per-channel format (every row's scale equal);
/// - AWQ folds its searched scales into the weights and stores zero points per group, GPTQ
///   stores zero points per group, act-order adds the column permutation;
/// - mixed precision keeps k linears bf16 over its per-channel base: at another model's
///   shape the ranking does not carry over, so the first k down projections stand in.
pub fn e2e_flags(m: Method) -> Option<Vec<String>> {
    let int4 = |group: String, zeros: bool| {
        let mut f = vec!["--weights".to_string(), "int4".into(), "--int4-group".into(), group];
        if zeros {
            f.push("--int4-zeros".into());
        }
        f
    };
    let group = |g: GroupSize| match g {
        GroupSize::PerChannel => "channel".to_string(),
        GroupSize::Group(n) => n.to_string(),
    };
    Some(match m {
        Method::Reference => return None,
        Method::Bf16 => vec!["--weights".into(), "bf16".into()],
        Method::Int8 => vec!["--weights".into(), "int8".into()],
        Method::RtnTensor { symmetric } => int4("channel".into(), !symmetric),
        Method::Rtn { group: g, symmetric } => int4(group(g), !symmetric),
        Method::Awq { group: g } => int4(g.to_string(), true),
        Method::Gptq { group: g, act_order } => {
            let mut f = int4(g.to_string(), true);
            if act_order {
                f.push("--int4-act-order".into());
            }
            f
        }
        Method::Mixed { keep } => {
            let mut f = int4("channel".into(), true);
            if keep > 0 {
                let list: Vec<String> = (0..keep).map(|l| format!("{l}.down")).collect();
                f.extend(["--int4-keep-bf16".into(), list.join(",")]);
            }
            f
        }
    })
}

/// A `kernlab e2e` child found no GPU: every other format would fail the same way.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NoGpu(String);

/// Batch-1 decode tokens/s of `kernlab e2e` with `flags` at `preset`, from its JSON report.
/// A child that found no GPU gives a [`NoGpu`] error.
pub fn measure(flags: &[String], preset: &str, db: Option<&Path>) -> Result<f64> {
    let exe = std::env::current_exe().context("finding the kernlab binary to run e2e")?;
    let mut cmd = Command::new(exe);
    cmd.args(["e2e", "--preset", preset, "--batch", "1", "--prompt-len", "128", "--gen-len", "128"]);
    cmd.args(["--runs", "2", "--ignore-eos", "--json"]).args(flags);
    if let Some(db) = db {
        cmd.arg("--db").arg(db);
    }
    let out = cmd.output().context("running kernlab e2e")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(3).collect();
        let tail = tail.into_iter().rev().collect::<Vec<_>>().join(" / ");
        // Every "no GPU" error of the GPU layer ends with this advice.
        if err.contains(crate::gpu::libs::WITHOUT_GPU) {
            return Err(NoGpu(format!("kernlab e2e {} found no GPU: {tail}", flags.join(" "))).into());
        }
        bail!("kernlab e2e {} failed ({}): {tail}", flags.join(" "), out.status);
    }
    tok_s_of_report(&String::from_utf8_lossy(&out.stdout))
}

/// The batch-1 throughput of an e2e JSON report.
pub fn tok_s_of_report(json: &str) -> Result<f64> {
    let v: serde_json::Value = serde_json::from_str(json).context("reading kernlab e2e's JSON report")?;
    let rows = v.get("rows").and_then(|r| r.as_array()).context("the e2e report has no rows")?;
    rows.iter()
        .find(|r| r.get("batch").and_then(|b| b.as_u64()) == Some(1))
        .and_then(|r| r.get("throughput_tok_s")?.as_f64())
        .context("the e2e report has no batch-1 throughput")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(m: &str) -> Option<String> {
        e2e_flags(m.parse().unwrap()).map(|f| f.join(" "))
    }

    #[test]
    fn each_method_runs_its_format() {
        assert_eq!(flags("reference"), None);
        assert_eq!(flags("int8-channel").unwrap(), "--weights int8");
        assert_eq!(flags("rtn-g128-sym").unwrap(), "--weights int4 --int4-group 128");
        assert_eq!(flags("rtn-tensor-asym").unwrap(), "--weights int4 --int4-group channel --int4-zeros");
        assert_eq!(flags("rtn-channel-sym"), flags("rtn-tensor-sym"));
        assert_eq!(flags("awq-g64"), flags("gptq-g64"));
        assert_eq!(flags("gptq-g64"), flags("rtn-g64-asym"));
        assert!(flags("gptq-g128-act").unwrap().ends_with("--int4-zeros --int4-act-order"));
        assert!(flags("mixed-k2").unwrap().ends_with("--int4-keep-bf16 0.down,1.down"));
    }

    #[test]
    fn the_report_gives_batch_1() {
        let j = r#"{"rows": [{"batch": 8, "throughput_tok_s": 900.0}, {"batch": 1, "throughput_tok_s": 227.5}]}"#;
        assert_eq!(tok_s_of_report(j).unwrap(), 227.5);
        assert!(tok_s_of_report(r#"{"rows": []}"#).is_err());
        assert!(tok_s_of_report("not json").is_err());
    }
}
