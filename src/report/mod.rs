//! Reports: CSV/JSON exporters, PNG charts (plotters) and the HTML page.
//!
//! Every chart writer is a function of records (and ceilings) and an output path, so the
//! CLI, the HTML builder and the tests call the same code. Entry points:
//!
//! - `kernlab roofline` → [`plot_roofline`] into [`roofline_png_name`];
//! - `kernlab report`   → [`build_report`] (or [`build_report_with`] to pass ceilings kept
//!   elsewhere, e.g. beside the tuned database).

pub mod ceilings_table;
pub mod chart;
pub mod e2e_section;
pub mod escape;
pub mod export;
pub mod figure;
pub mod html;
pub mod labels;
pub mod links;
pub mod plot_bars;
pub mod plot_heatmap;
pub mod plot_ops;
pub mod plot_replay;
pub mod plot_roofline;
pub mod plot_strips;
pub mod sections;
pub mod style;
pub mod sweep_params;
pub mod sweep_table;

pub use export::{peers_per_shape, records_to_json, winners_per_shape, write_records_json, ShapeKey};
pub use html::{build_report, build_report_with, ReportOptions, ReportSummary, SweepSummary};
pub use plot_bars::plot_winner_vs_peer;
pub use plot_heatmap::{heatmap_axes, heatmap_skipped, plot_param_heatmap, MAX_HEATMAP_LEVELS};
pub use plot_roofline::{plot_roofline, roofline_png_name, RooflineOptions};
pub use plot_strips::plot_param_strips;
pub use sections::SectionSource;

use crate::tune::record::CandidateRecord;
use std::path::Path;

/// What every chart title names besides its subject: the GPU and the measurement date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caption {
    pub gpu: String,
    pub date: String,
}

impl Caption {
    /// GPU from the first row that names one; the date the sweep measured, which is the
    /// CSV's last write (the rows carry no timestamp), never the date the page is drawn.
    pub fn for_sweep(records: &[CandidateRecord], csv: &Path) -> Caption {
        let gpu = records.iter().map(|r| r.gpu.trim()).find(|g| !g.is_empty()).unwrap_or("unknown GPU");
        Caption { gpu: gpu.to_string(), date: file_date(csv).unwrap_or_else(|| "date unknown".into()) }
    }
}

/// The UTC date a file was last written (`2026-11-27`): when its results were measured.
pub fn file_date(path: &Path) -> Option<String> {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    Some(chrono::DateTime::<chrono::Utc>::from(modified).format("%Y-%m-%d").to_string())
}
