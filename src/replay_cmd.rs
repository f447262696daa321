//! `kernlab replay`: its arguments, the replay (tune::replay) and its chart (report).

use crate::tune::replay::{replay, ReplayOptions};
use crate::tune::search::SearchStrategy;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Sweep CSVs that hold a full grid (every valid candidate measured), e.g.
    /// docs/results/gemm-decode-grid-h200.csv.
    #[arg(required = true, value_name = "CSV")]
    pub csvs: Vec<PathBuf>,
    /// Runs per strategy and space, each with its own seed.
    #[arg(long, default_value_t = 50)]
    pub seeds: usize,
    /// A run has succeeded once its best candidate is within this many % of the optimum.
    #[arg(long, default_value_t = 3.0)]
    pub within: f64,
    /// Strategies to replay (repeatable: tpe, evolve, random, grid). Default: all.
    #[arg(long = "strategy")]
    pub strategies: Vec<String>,
    /// Folder for search-replay.csv, search-replay-curves.csv and search-replay.png.
    #[arg(long, default_value = "reports")]
    pub out: PathBuf,
}

pub fn run(a: ReplayArgs) -> Result<ExitCode> {
    let strategies = if a.strategies.is_empty() {
        SearchStrategy::ALL.to_vec()
    } else {
        a.strategies.iter().map(|s| SearchStrategy::parse(s)).collect::<Result<Vec<_>>>()?
    };
    let png = a.out.join("search-replay.png");
    let opts = ReplayOptions { csvs: a.csvs, seeds: a.seeds, within_pct: a.within, strategies, out_dir: a.out };
    let r = replay(&opts)?;
    crate::report::plot_replay::plot_replay(&r.curves, opts.seeds, opts.within_pct, &png)?;
    print!("{}", r.table);
    println!("table: {}  ·  curves: {}  ·  chart: {}", r.csv.display(), r.curves_csv.display(), png.display());
    Ok(ExitCode::SUCCESS)
}
