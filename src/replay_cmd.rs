//! `kernlab replay`: its arguments, the replay (tune::replay) and its chart (report).

use crate::tune::replay::{replay, ReplayOptions};
use crate::tune::search::SearchStrategy;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  kernlab replay docs/results/gemm-decode-grid-h200.csv
  kernlab replay docs/results/*-grid-h200.csv --strategy tpe,random --seeds 100 --within 5 --out /tmp/replay")]
pub struct ReplayArgs {
    /// Sweep CSVs that hold a full grid (every valid candidate measured), e.g.
    /// docs/results/gemm-decode-grid-h200.csv.
    #[arg(required = true, value_name = "CSV")]
    pub csvs: Vec<PathBuf>,
    /// Runs per strategy and space, each with its own seed, e.g. --seeds 100.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub seeds: usize,
    /// A run has succeeded once its best candidate is within this many % of the optimum,
    /// e.g. --within 5.
    #[arg(long, value_name = "PCT", default_value_t = 3.0)]
    pub within: f64,
    /// A strategy to replay (warm, tpe, evolve, random, grid), e.g. --strategy tpe; a comma list
    /// or repeated. Default: all.
    #[arg(long = "strategy", value_name = "STRATEGY", value_delimiter = ',')]
    pub strategies: Vec<String>,
    /// Sweep CSVs read only for warm-start priors (the winners of other shapes of the same
    /// family), not replayed, e.g. --priors docs/results/gemm_int4-grid-h200.csv. The CSVs
    /// replayed are priors for each other too; a space never gets priors of its own shape.
    #[arg(long = "priors", value_name = "CSV", value_delimiter = ',')]
    pub priors: Vec<PathBuf>,
    /// Folder for search-replay.csv, search-replay-curves.csv and search-replay.png, e.g.
    /// --out /tmp/replay.
    #[arg(long, value_name = "DIR", default_value = "reports")]
    pub out: PathBuf,
}

pub fn run(a: ReplayArgs) -> Result<ExitCode> {
    let strategies = if a.strategies.is_empty() {
        SearchStrategy::ALL.to_vec()
    } else {
        a.strategies.iter().map(|s| SearchStrategy::parse(s)).collect::<Result<Vec<_>>>()?
    };
    let png = a.out.join("search-replay.png");
    let opts = ReplayOptions {
        csvs: a.csvs,
        seeds: a.seeds,
        within_pct: a.within,
        strategies,
        prior_csvs: a.priors,
        out_dir: a.out,
    };
    let r = replay(&opts)?;
    crate::report::plot_replay::plot_replay(&r.curves, opts.seeds, opts.within_pct, &png)?;
    print!("{}", r.table);
    println!("table: {}  ·  curves: {}  ·  chart: {}", r.csv.display(), r.curves_csv.display(), png.display());
    Ok(ExitCode::SUCCESS)
}
