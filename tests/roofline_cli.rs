//! `kernlab report` and `kernlab roofline` at the command line, without a GPU: the report
//! over an empty, a missing and a synthetic reports dir; roofline's argument errors.

mod report_support;

use kernlab::roofline::ceilings_file_name;
use kernlab::tune::record::to_csv_bytes;
use report_support::*;
use std::path::Path;
use std::process::{Command, Output};

fn kernlab(reports: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kernlab"))
        .args(args)
        .env("KERNLAB_REPORTS", reports)
        .output()
        .expect("running kernlab")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn report_of_a_missing_dir_says_what_to_run() {
    let tmp = tempfile::tempdir().unwrap();
    let o = kernlab(&tmp.path().join("nope"), &["report"]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.starts_with("error: no reports directory"), "{t}");
    assert!(t.contains("kernlab sweep"), "{t}");
}

#[test]
fn report_of_an_empty_dir_renders_and_explains() {
    let tmp = tempfile::tempdir().unwrap();
    let o = kernlab(tmp.path(), &["report"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let html = tmp.path().join("index.html");
    assert!(t.contains(&format!("report: {}", html.display())), "{t}");
    assert!(t.contains("kernlab roofline") && t.contains("0 sweep(s)"), "{t}");
    assert!(std::fs::read_to_string(&html).unwrap().contains("No ceilings found"));
}

#[test]
fn report_over_synthetic_results_links_every_chart() {
    let (dir, _keep) = out_dir("cli_report");
    std::fs::write(dir.join("gemm-20250601-120000.csv"), to_csv_bytes(&gemm_records()).unwrap()).unwrap();
    std::fs::write(dir.join("rmsnorm-20250601-130000.csv"), to_csv_bytes(&rmsnorm_records()).unwrap()).unwrap();
    let c = ceilings();
    c.save(&dir.join(ceilings_file_name(&c.gpu, &c.compute_capability))).unwrap();
    let out = dir.join("sub").join("page.html");
    let o = kernlab(&dir, &["report", "--out", out.to_str().unwrap()]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("2 sweep(s)") && t.contains("1 ceilings file(s)"), "{t}");
    let html = std::fs::read_to_string(&out).unwrap();
    // Charts go beside the page, not into the reports dir.
    let charts: Vec<_> = std::fs::read_dir(dir.join("sub"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    assert!(charts.len() >= 5, "{charts:?}");
    assert!(!html.contains("data:image"));
    for p in &charts {
        assert!(png_info(p).1 > 10, "{} looks blank", p.display());
        assert!(html.contains(&format!("src=\"{}\"", p.file_name().unwrap().to_str().unwrap())));
    }
    assert!(dir.join("sub/roofline-nvidia-h100-80gb-hbm3-sm90.png").exists());
    assert!(!dir.join("roofline-nvidia-h100-80gb-hbm3-sm90.png").exists());
    // The page sits in another folder: links go up to where the data files are.
    assert!(html.contains("href=\"../gemm-20250601-120000.csv\""));
}

#[test]
fn roofline_checks_torch_peers_before_touching_the_gpu() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("peers.json");
    let o = kernlab(tmp.path(), &["roofline", "--torch-peers", missing.to_str().unwrap()]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("reading torch peers") && t.contains("peers.json"), "{t}");
    std::fs::write(&missing, b"{\"copy_gbps\": 1}").unwrap();
    let t = text(&kernlab(tmp.path(), &["roofline", "--torch-peers", missing.to_str().unwrap()]));
    assert!(t.contains("not the output of scripts/torch_copy_peer.py"), "{t}");
}

#[test]
fn roofline_help_lists_its_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let t = text(&kernlab(tmp.path(), &["roofline", "--help"]));
    for flag in ["--gpu", "--remeasure", "--no-candidates", "--torch-peers"] {
        assert!(t.contains(flag), "{flag} missing from:\n{t}");
    }
    let t = text(&kernlab(tmp.path(), &["report", "--help"]));
    assert!(t.contains("--out"), "{t}");
}
