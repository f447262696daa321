//! Arguments and printing of `kernlab replay`.

use super::replay::{replay, ReplayOptions};
use super::search::SearchStrategy;
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
    let opts = ReplayOptions { csvs: a.csvs, seeds: a.seeds, within_pct: a.within, strategies, out_dir: a.out };
    let r = replay(&opts)?;
    print!("{}", r.table);
    println!("table: {}  ·  curves: {}  ·  chart: {}", r.csv.display(), r.curves_csv.display(), r.png.display());
    Ok(ExitCode::SUCCESS)
}
