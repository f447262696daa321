//! The report as a page people read (issue #19): colours that do not depend on which
//! families are present, measurement dates from the data, charts as small files beside
//! the page with relative links, notes at the end instead of between sections, readable
//! names in the ceilings table, and the e2e and quality sections.

mod report_support;

use kernlab::report::{build_report, build_report_with, plot_roofline, ReportOptions, RooflineOptions};
use kernlab::roofline::ceilings_file_name;
use kernlab::tune::record::to_csv_bytes;
use report_support::*;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Every RGB colour of a PNG.
fn colours(path: &Path) -> HashSet<[u8; 3]> {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    buf[..info.buffer_size()].chunks(px).map(|c| [c[0], c[1], c[2]]).collect()
}

const GEMM_BLUE: [u8; 3] = [31, 119, 180];
const RMSNORM_ORANGE: [u8; 3] = [255, 127, 14];

#[test]
fn a_family_keeps_its_colour_whatever_else_is_present() {
    let (dir, _keep) = out_dir("page_colours");
    let c = ceilings();
    let alone = dir.join("alone.png");
    plot_roofline(&c, &rmsnorm_records(), &RooflineOptions::default(), &alone).unwrap();
    let mut both_rows = gemm_records();
    both_rows.extend(rmsnorm_records());
    let both = dir.join("both.png");
    plot_roofline(&c, &both_rows, &RooflineOptions::default(), &both).unwrap();
    let (alone, both) = (colours(&alone), colours(&both));
    // rmsnorm is orange alone and beside gemm (it used to take the first colour, gemm's blue).
    assert!(alone.contains(&RMSNORM_ORANGE) && both.contains(&RMSNORM_ORANGE));
    assert!(!alone.contains(&GEMM_BLUE), "rmsnorm alone must not borrow gemm's blue");
    assert!(both.contains(&GEMM_BLUE));
}

/// A reports dir with two sweeps measured on 2025-06-01 (by file time), ceilings, an
/// unreadable CSV, an e2e result and a quality table from docs/results.
fn fixture(name: &str) -> (PathBuf, Option<tempfile::TempDir>) {
    let (dir, keep) = out_dir(name);
    let reports = dir.join("reports");
    std::fs::create_dir_all(&reports).unwrap();
    let measured = SystemTime::UNIX_EPOCH + Duration::from_secs(1_748_779_200); // 2025-06-01 12:00 UTC
    for (file, rows) in [("gemm.csv", gemm_records()), ("rmsnorm.csv", rmsnorm_records())] {
        let p = reports.join(file);
        std::fs::write(&p, to_csv_bytes(&rows).unwrap()).unwrap();
        std::fs::File::options().write(true).open(&p).unwrap().set_modified(measured).unwrap();
    }
    std::fs::write(reports.join("broken.csv"), b"not,a,sweep\n1,2,3\n").unwrap();
    let c = ceilings();
    c.save(&reports.join(ceilings_file_name(&c.gpu, &c.compute_capability))).unwrap();
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/results");
    for f in ["e2e-8b-int4-h200.json", "quality-smollm2-cpu.csv"] {
        std::fs::copy(results.join(f), reports.join(f)).unwrap();
    }
    (dir, keep)
}

fn render(dir: &Path) -> (kernlab::report::ReportSummary, String) {
    let out = dir.join("site").join("index.html");
    let summary = build_report_with(&ReportOptions {
        reports_dir: dir.join("reports"),
        out_html: out.clone(),
        extra_ceilings: vec![],
        roofline_all_candidates: true,
        sections: vec![kernlab::quality::table::report_section()],
    })
    .unwrap();
    (summary, std::fs::read_to_string(out).unwrap())
}

#[test]
fn page_is_small_with_relative_links_and_charts_beside_it() {
    let (dir, _keep) = fixture("page_links");
    let (summary, html) = render(&dir);
    assert!(!summary.charts.is_empty());
    assert!(html.len() < 200_000, "page is {} bytes", html.len());
    assert!(!html.contains("data:image"), "charts must be files, not inline base64");
    let site = std::fs::canonicalize(dir.join("site")).unwrap();
    for chart in &summary.charts {
        assert_eq!(std::fs::canonicalize(chart.parent().unwrap()).unwrap(), site, "{}", chart.display());
    }
    let stray: Vec<_> = std::fs::read_dir(dir.join("reports"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "png"))
        .collect();
    assert!(stray.is_empty(), "PNGs written into the reports dir: {stray:?}");
    for attr in ["href=\"", "src=\""] {
        for target in html.split(attr).skip(1).map(|t| t.split('"').next().unwrap()) {
            assert!(!target.starts_with('/') && !target.contains(':'), "not a relative link: {target}");
        }
    }
    // The data files stay where they are, linked from the page's folder.
    assert!(html.contains("href=\"../reports/gemm.csv\""), "CSV link");
}

#[test]
fn dates_are_when_the_data_was_measured() {
    let (dir, _keep) = fixture("page_dates");
    let (_, html) = render(&dir);
    assert!(html.contains("measured 2025-06-01"), "sweep date from the CSV's file time");
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    // The e2e file was copied just now, so today may appear there; nowhere in the sweeps.
    let sweeps = &html[html.find("id=\"sweep-gemm\"").unwrap()..html.find("id=\"e2e\"").unwrap()];
    assert!(!sweeps.contains(&today), "a sweep section shows the render date");
    assert!(!html.contains("Generated"));
}

#[test]
fn warnings_are_notes_at_the_end_and_keys_have_names() {
    let (dir, _keep) = fixture("page_notes");
    let (summary, html) = render(&dir);
    assert!(summary.warnings.iter().any(|w| w.contains("broken.csv")), "{:?}", summary.warnings);
    let notes = html.find("<section id=\"notes\">").expect("a notes section");
    assert!(html.find("broken.csv").unwrap() > notes, "a warning between sections");
    assert!(html[notes..].find("<h2").is_some() && html[notes + 10..].find("<h2").unwrap() < 40);
    assert!(!html[notes..].contains("id=\"sweep-"), "notes must come after every section");
    assert!(!html.contains("cublas_bf16_8192_tflops"), "raw ceilings key on the page");
    assert!(html.contains("cuBLAS bf16 8192³"));
    // The roofline's (xx %) is explained, naming the ceiling.
    assert!(html.contains("% of the roofline bound") && html.contains("DRAM read ceiling"));
}

#[test]
fn e2e_and_quality_sections_from_their_files() {
    let (dir, _keep) = fixture("page_sections");
    // `kernlab quality` writes its chart beside the CSV: the page shows it from there.
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/results");
    std::fs::copy(results.join("quality-smollm2-cpu.png"), dir.join("reports/quality-smollm2-cpu.png")).unwrap();
    let (summary, html) = render(&dir);
    assert_eq!(summary.e2e.len(), 1);
    assert_eq!(summary.sections.len(), 1);
    let e2e = &html[html.find("id=\"e2e\"").expect("an e2e section")..];
    assert!(e2e.contains("llama3-8b") && e2e.contains("kernlab int4") && e2e.contains(">int4<"));
    assert!(e2e.contains("DRAM copy 4241 GB/s"), "the e2e bound is named");
    let q = &html[html.find("id=\"quality\"").expect("a quality section")..];
    assert!(q.contains("gptq-g64-act") && q.contains("perplexity"));
    assert!(q.contains("<img src=\"../reports/quality-smollm2-cpu.png\""), "the quality chart, linked relatively");
    // Neither file is mistaken for a sweep.
    assert_eq!(summary.sweeps.len(), 2);
}

#[test]
fn a_bare_build_report_still_reads_e2e_files() {
    let (dir, _keep) = fixture("page_bare");
    let summary = build_report(&dir.join("reports"), &dir.join("index.html")).unwrap();
    assert_eq!(summary.e2e.len(), 1);
    assert!(summary.sections.is_empty(), "no section sources given");
}
