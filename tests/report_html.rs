//! `build_report` over a reports dir of synthetic sweeps: every chart is written and
//! linked, every sweep gets its table and its CSV link, text is escaped.

mod report_support;

use kernlab::report::build_report;
use kernlab::roofline::ceilings_file_name;
use kernlab::tune::record::{read_records_from, to_csv_bytes};
use report_support::*;

#[test]
fn report_references_every_chart_and_table() {
    let (dir, _keep) = out_dir("html");
    let gemm = gemm_records();
    let mut norm = rmsnorm_records();
    norm[0].variant = "<script>alert(1)</script>".into();
    std::fs::write(dir.join("gemm.csv"), to_csv_bytes(&gemm).unwrap()).unwrap();
    std::fs::write(dir.join("rmsnorm.csv"), to_csv_bytes(&norm).unwrap()).unwrap();
    std::fs::write(dir.join("notes.csv"), b"tokens_per_s,batch\n100,1\n").unwrap();
    // The peer table sweeps read and e2e's benchmark rows are known inputs: no warning.
    std::fs::write(dir.join("torch_peers.csv"), b"family,shape\nsoftmax,1x8\n").unwrap();
    std::fs::write(dir.join("e2e-20261127-101010.csv"), b"label,batch\nkernlab,1\n").unwrap();
    let c = ceilings();
    c.save(&dir.join(ceilings_file_name(&c.gpu, &c.compute_capability))).unwrap();

    let out = dir.join("index.html");
    let summary = build_report(&dir, &out).unwrap();
    let html = std::fs::read_to_string(&out).unwrap();

    assert_eq!(summary.sweeps.len(), 2);
    assert_eq!(summary.ceilings.len(), 1);
    // An unknown non-sweep CSV is a warning, listed in the page's notes, not a failure.
    assert_eq!(summary.warnings.len(), 1, "{:?}", summary.warnings);
    assert!(html.contains("notes.csv"));
    // roofline + per sweep: bars + (strips + heat map) per shape.
    assert_eq!(summary.charts.len(), 1 + (1 + 3 * 2) + (1 + 2 * 2), "{:#?}", summary.charts);
    for chart in &summary.charts {
        assert!(chart.exists());
        let name = chart.file_name().unwrap().to_str().unwrap();
        assert!(html.contains(&format!("src=\"{name}\"")), "{name} not shown");
        assert!(html.contains(&format!("href=\"{name}\"")), "{name} not linked");
        assert!(png_info(chart).1 > 10);
    }
    assert!(!html.contains("data:image"), "charts are files beside the page, not inline");
    for stem in ["gemm", "rmsnorm"] {
        assert!(html.contains(&format!("id=\"table-{stem}\"")));
        assert!(html.contains(&format!("href=\"{stem}.csv\"")));
    }
    assert!(html.contains("16x4096x14336") && html.contains("2048x4096"));
    assert!(html.contains("NVIDIA H100 80GB HBM3"));
    assert!(!html.contains("<script>"));
    // Every winner row: 3 GEMM shapes + 2 RMSNorm shapes.
    assert_eq!(html.matches("<tr><td class=\"l\">gemm</td>").count(), 3);
    assert_eq!(html.matches("<tr><td class=\"l\">rmsnorm</td>").count(), 2);
}

#[test]
fn report_without_ceilings_or_data_still_renders() {
    let (dir, _keep) = out_dir("html_empty");
    let out = dir.join("index.html");
    let summary = build_report(&dir, &out).unwrap();
    assert!(summary.charts.is_empty());
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("kernlab roofline"));
}

#[test]
fn csv_round_trip() {
    let records = gemm_records();
    let back = read_records_from(&to_csv_bytes(&records).unwrap()).unwrap();
    assert_eq!(back.len(), records.len());
    for (a, b) in records.iter().zip(&back) {
        assert_eq!(a.key(), b.key());
        assert_eq!(a.status, b.status);
        match (a.median_us(), b.median_us()) {
            (Some(x), Some(y)) => assert!((x - y).abs() < 1e-3),
            (None, None) => {}
            other => panic!("timing lost: {other:?}"),
        }
        assert_eq!(a.tflops.is_some(), b.tflops.is_some());
    }
    // The winners are the same after a round trip.
    let wa: Vec<String> = kernlab::report::winners_per_shape(&records).iter().map(|r| r.key()).collect();
    let wb: Vec<String> = kernlab::report::winners_per_shape(&back).iter().map(|r| r.key()).collect();
    assert_eq!(wa, wb);
}
