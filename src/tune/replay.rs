//! `kernlab replay`: run every search strategy many times, with different seeds, against a
//! recorded full-grid sweep, without a GPU.
//!
//! Each (dtype, shape) of a sweep CSV is one space: its candidates are the rows (a row's
//! presence makes it valid), a row with status `ok` has its median time, every other row
//! (wrong, compile or launch error, fault, timeout) is a failure; the peer row is not part
//! of the space. The optimum is the fastest `ok` row. For each strategy and seed the search
//! runs until it has evaluated the optimum; the trace gives the evaluations needed to come
//! within `within_pct` % of the optimum and the fraction of the optimum reached
//! (optimum time / best time so far) after every evaluation.

pub use super::replay_table::{percentile, Curve, SpaceSummary};
use crate::tune::record::{read_records, Status};
use crate::tune::search::warm::{label_dims, order_priors, ShapePriors, WarmConfig};
use crate::tune::search::{run_search, Budget, ListSpace, SearchSpace, SearchStrategy, Searcher};
use crate::tune::space::Candidate;
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One recorded space: a (dtype, shape) of one sweep CSV.
pub struct RecordedSpace {
    /// The CSV's file stem.
    pub source: String,
    /// The kernel family of its rows (`gemm`, `gemm_int4`, ...).
    pub family: String,
    pub dtype: String,
    pub shape: String,
    pub space: ListSpace,
    /// Median time of each candidate, `None` for a failure.
    pub times: HashMap<Candidate, Option<f64>>,
    pub optimum_us: f64,
}

impl RecordedSpace {
    pub fn size(&self) -> usize {
        self.times.len()
    }
    pub fn label(&self) -> String {
        format!("{} {} {}", self.source, self.dtype, self.shape)
    }

    /// The `k` fastest `ok` candidates, fastest first (ties in candidate order, so the
    /// list does not depend on hashing).
    pub fn best(&self, k: usize) -> Vec<Candidate> {
        let mut ok: Vec<(&Candidate, f64)> = self.times.iter().filter_map(|(c, t)| t.map(|t| (c, t))).collect();
        ok.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(b.0)));
        ok.into_iter().take(k).map(|(c, _)| c.clone()).collect()
    }
}

/// Leave-one-out priors for `target`: the best `per_shape` `ok` candidates of every space
/// in `pool` of the same family and dtype at another shape, in [`order_priors`]'s order.
/// A space of the same shape is left out even when it comes from another CSV (another
/// recording of the same problem): its winner is the answer, and a replay that used it
/// would measure recall, not transfer. A target whose label is not a shape gets none.
pub fn priors_for(target: &RecordedSpace, pool: &[&RecordedSpace], per_shape: usize) -> Vec<Candidate> {
    let Some(dims) = label_dims(&target.shape) else { return Vec::new() };
    let sources: Vec<ShapePriors> = pool
        .iter()
        .filter(|s| s.family == target.family && s.dtype == target.dtype)
        .filter_map(|s| {
            let shape = label_dims(&s.shape).filter(|d| *d != dims)?;
            Some(ShapePriors { shape, ranked: s.best(per_shape) })
        })
        .collect();
    order_priors(&dims, &sources, per_shape)
}

/// The spaces of one sweep CSV, in the order their first rows appear. A (dtype, shape)
/// without a single `ok` row has no optimum and is left out; a file with no space at all
/// is an error.
pub fn load_spaces(path: &Path) -> Result<Vec<RecordedSpace>> {
    let records = read_records(path)?;
    let name = path.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    let source = name.strip_suffix(".gz").unwrap_or(&name);
    let source = source.strip_suffix(".csv").unwrap_or(source).to_string();
    let mut order: Vec<(String, String)> = Vec::new();
    let mut groups: HashMap<(String, String), Vec<(Candidate, Option<f64>)>> = HashMap::new();
    let mut family = String::new();
    for r in records {
        if r.status == Some(Status::Peer) || r.status.is_none() {
            continue;
        }
        if family.is_empty() {
            family = r.family.clone();
        }
        let key = (r.dtype.clone(), r.shape.clone());
        let time =
            if r.status == Some(Status::Ok) { r.median_us().filter(|t| t.is_finite() && *t > 0.0) } else { None };
        let c = Candidate { variant: r.variant, params: r.params };
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push((c, time));
    }
    let mut out = Vec::new();
    for key in order {
        let rows = groups.remove(&key).unwrap_or_default();
        let mut times = HashMap::new();
        let mut list = Vec::new();
        for (c, t) in rows {
            // A candidate recorded twice (a resumed sweep) counts once, with its first result.
            if !times.contains_key(&c) {
                times.insert(c.clone(), t);
                list.push(c);
            }
        }
        let Some(optimum_us) = times.values().flatten().copied().min_by(f64::total_cmp) else { continue };
        out.push(RecordedSpace {
            source: source.clone(),
            family: family.clone(),
            dtype: key.0,
            shape: key.1,
            space: ListSpace::new(list),
            times,
            optimum_us,
        });
    }
    if out.is_empty() {
        bail!(
            "{}: no (dtype, shape) with a verified, timed candidate (status ok); \
             replay needs a sweep CSV with measured rows",
            path.display()
        );
    }
    Ok(out)
}

/// The runs of one strategy on one space, one entry per seed.
pub struct SpaceRuns {
    pub strategy: SearchStrategy,
    /// Evaluations each seed needed to come within the threshold.
    pub evals_to_within: Vec<usize>,
    /// Per seed, optimum / best-so-far after 1, 2, ... evaluations (0 before a success),
    /// padded with 1.0 to the space's size once the optimum was found.
    pub fraction: Vec<Vec<f64>>,
}

/// Runs `strategy` on `space` once per seed; `priors` are the candidates a warm start
/// tries first ([`priors_for`]), ignored by the other strategies.
pub fn run_space(
    space: &RecordedSpace,
    strategy: SearchStrategy,
    seeds: usize,
    within_pct: f64,
    priors: &[Candidate],
) -> SpaceRuns {
    // Grid has no seed: one run stands for all.
    let seeds = if strategy == SearchStrategy::Grid { 1 } else { seeds.max(1) };
    run_space_with(space, strategy, seeds, within_pct, &|sp, seed| strategy.searcher_with_priors(sp, seed, priors))
}

/// A searcher made for one space and seed.
pub type MakeSearcher<'f> = dyn for<'a> Fn(&'a dyn SearchSpace, u64) -> Box<dyn Searcher + 'a> + Sync + 'f;

/// [`run_space`] with searchers made by `make` (a strategy with other settings), `seeds` runs.
pub fn run_space_with(
    space: &RecordedSpace,
    strategy: SearchStrategy,
    seeds: usize,
    within_pct: f64,
    make: &MakeSearcher,
) -> SpaceRuns {
    let n = space.size();
    let threshold = space.optimum_us * (1.0 + within_pct / 100.0);
    let runs: Vec<(usize, Vec<f64>)> = (0..seeds as u64)
        .into_par_iter()
        .map(|seed| {
            let mut searcher = make(&space.space, seed);
            let budget = Budget { good_enough_us: Some(space.optimum_us), ..Budget::default() };
            let trace = run_search(searcher.as_mut(), budget, 1, |batch| {
                batch.iter().map(|c| space.times.get(c).copied().flatten()).collect()
            });
            let mut fraction: Vec<f64> =
                trace.best_so_far().into_iter().map(|b| b.map_or(0.0, |b| space.optimum_us / b)).collect();
            let reached = fraction.iter().position(|&f| space.optimum_us / f <= threshold).map_or(n, |i| i + 1);
            fraction.resize(n, fraction.last().copied().unwrap_or(0.0));
            (reached, fraction)
        })
        .collect();
    let (evals_to_within, fraction) = runs.into_iter().unzip();
    SpaceRuns { strategy, evals_to_within, fraction }
}

pub fn summarize(space: &RecordedSpace, runs: &SpaceRuns) -> SpaceSummary {
    let mut e: Vec<f64> = runs.evals_to_within.iter().map(|&x| x as f64).collect();
    e.sort_by(f64::total_cmp);
    let median = percentile(&e, 0.5);
    let worst = runs.evals_to_within.iter().copied().max().unwrap_or(0);
    let n = space.size() as f64;
    SpaceSummary {
        label: space.label(),
        source: space.source.clone(),
        size: space.size(),
        strategy: runs.strategy,
        seeds: runs.evals_to_within.len(),
        median_evals: median,
        worst_evals: worst,
        median_pct: 100.0 * median / n,
        worst_pct: 100.0 * worst as f64 / n,
    }
}

/// Where curves are sampled, in % of the space: log-spaced so the first evaluations, where
/// strategies differ, are resolved.
pub fn curve_grid() -> Vec<f64> {
    let mut xs: Vec<f64> = (0..=40).map(|i| 10f64.powf(-0.5 + 2.5 * i as f64 / 40.0)).collect();
    xs.dedup();
    xs
}

pub fn curve(source: &str, strategy: SearchStrategy, runs: &[(&RecordedSpace, &SpaceRuns)]) -> Curve {
    let points = curve_grid()
        .into_iter()
        .map(|x| {
            let mut ys: Vec<f64> = runs
                .iter()
                .flat_map(|(space, r)| {
                    // Evaluations made by x % of this space; before the first one, nothing is reached.
                    let k = (x / 100.0 * space.size() as f64).floor() as usize;
                    r.fraction.iter().map(move |f| if k == 0 { 0.0 } else { f[(k - 1).min(f.len() - 1)] })
                })
                .collect();
            ys.sort_by(f64::total_cmp);
            let mean = ys.iter().sum::<f64>() / ys.len().max(1) as f64;
            (x, mean, percentile(&ys, 0.1), percentile(&ys, 0.9))
        })
        .collect();
    Curve { source: source.to_string(), strategy, points }
}

/// Options of `kernlab replay`.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub csvs: Vec<PathBuf>,
    pub seeds: usize,
    pub within_pct: f64,
    pub strategies: Vec<SearchStrategy>,
    /// CSVs loaded only as sources of warm-start priors, not replayed themselves.
    pub prior_csvs: Vec<PathBuf>,
    /// Folder for search-replay.csv and search-replay-curves.csv (the command draws the PNG).
    pub out_dir: PathBuf,
}

/// Everything a replay found.
pub struct ReplayResult {
    pub spaces: Vec<SpaceSummary>,
    pub curves: Vec<Curve>,
    pub table: String,
    pub csv: PathBuf,
    pub curves_csv: PathBuf,
}

pub fn replay(opts: &ReplayOptions) -> Result<ReplayResult> {
    if opts.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    if !(opts.within_pct >= 0.0 && opts.within_pct.is_finite()) {
        bail!("--within must be a non-negative percentage, got {}", opts.within_pct);
    }
    let replayed: Vec<Vec<RecordedSpace>> = opts.csvs.iter().map(|p| load_spaces(p)).collect::<Result<_>>()?;
    let extra: Vec<Vec<RecordedSpace>> = opts.prior_csvs.iter().map(|p| load_spaces(p)).collect::<Result<_>>()?;
    // Every space loaded in this run, replayed or not, is a source of priors for the others.
    let pool: Vec<&RecordedSpace> = replayed.iter().chain(&extra).flatten().collect();
    let per_shape = WarmConfig::default().per_shape;
    let mut spaces = Vec::new();
    let mut curves = Vec::new();
    for loaded in &replayed {
        let priors: Vec<Vec<Candidate>> = loaded.iter().map(|s| priors_for(s, &pool, per_shape)).collect();
        for &strategy in &opts.strategies {
            let runs: Vec<SpaceRuns> = loaded
                .iter()
                .zip(&priors)
                .map(|(s, p)| {
                    let p: &[Candidate] = if strategy.uses_priors() { p } else { &[] };
                    run_space(s, strategy, opts.seeds, opts.within_pct, p)
                })
                .collect();
            let pairs: Vec<(&RecordedSpace, &SpaceRuns)> = loaded.iter().zip(&runs).collect();
            spaces.extend(pairs.iter().map(|(s, r)| summarize(s, r)));
            curves.push(curve(&loaded[0].source, strategy, &pairs));
        }
    }
    std::fs::create_dir_all(&opts.out_dir).with_context(|| format!("creating {}", opts.out_dir.display()))?;
    let csv = opts.out_dir.join("search-replay.csv");
    let curves_csv = opts.out_dir.join("search-replay-curves.csv");
    super::replay_table::write_csv(&csv, &spaces)?;
    super::replay_table::write_curves_csv(&curves_csv, &curves)?;
    let table = super::replay_table::format_table(&spaces, opts.within_pct);
    Ok(ReplayResult { spaces, curves, table, csv, curves_csv })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recorded space of one variant `v` with X in 1..=8, fastest at X = `best`.
    fn space(source: &str, family: &str, shape: &str, best: i64) -> RecordedSpace {
        let c = |x: i64| Candidate { variant: "v".into(), params: [("X".to_string(), x)].into_iter().collect() };
        let times: HashMap<Candidate, Option<f64>> =
            (1..=8).map(|x| (c(x), Some(10.0 + (x - best).abs() as f64))).collect();
        let mut list: Vec<Candidate> = times.keys().cloned().collect();
        list.sort();
        RecordedSpace {
            source: source.into(),
            family: family.into(),
            dtype: "bf16".into(),
            shape: shape.into(),
            space: ListSpace::new(list),
            times,
            optimum_us: 10.0,
        }
    }

    #[test]
    fn leave_one_out_never_hands_a_space_its_own_shape() {
        let target = space("a", "gemm", "16x4096x4096", 3);
        // The same shape recorded by another CSV: its winner is the target's answer (X = 3).
        let twin = space("b", "gemm", "16x4096x4096", 3);
        let near = space("a", "gemm", "1x4096x4096", 6);
        let far = space("b", "gemm", "2048x4096x4096", 8);
        let other_family = space("a", "gemm_int4", "16x4096x14336", 2);
        let pool = [&target, &twin, &near, &far, &other_family];
        let x = |c: &Candidate| c.params["X"];
        let priors: Vec<i64> = priors_for(&target, &pool, 2).iter().map(x).collect();
        assert!(!priors.contains(&3), "the twin's winner leaked: {priors:?}");
        assert!(!priors.contains(&2), "another family's winner is no prior: {priors:?}");
        // Winners nearest first (1x…, then 2048x…), then the runners-up: X = 5 and 7 tie
        // at the 1x… shape and the lower comes first; X = 7 at 2048x… is already there.
        assert_eq!(priors, [6, 8, 5, 7]);
    }
}
