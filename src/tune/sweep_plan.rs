//! What the sweep will do on each shape: which strategy, over which space, under which
//! limits. Pure: no GPU, no files.
//!
//! Grid and random choose their whole list up front ([`plan_candidates`], through
//! [`crate::tune::strategy::choose`]); tpe and evolve learn as they go and draw from the
//! shape's lazy space through [`LazySpace`], never building it.
//!
//! A strategy that uses priors (warm) gets the tuned database's winners of the kernel's
//! other shapes through [`warm_priors`]; the caller loads the database.
//!
//! The default when neither `--strategy` nor the sweep file names one: grid when the whole
//! space is going to be measured anyway (at most [`FULL_SWEEP_LIMIT`] valid candidates, no
//! `--budget` below that, no `--time-budget`, no `--stop-within`), warm (tpe+warm)
//! otherwise. In the replay of the recorded full grids and the big spaces
//! (docs/results/search-replay.md) tpe+warm needs the fewest evaluations to come within 3 %
//! of the optimum on every CSV, ahead of tpe, random, evolve and grid, once the budget is
//! below the space's size; with no winners of other shapes in the tuned database it is tpe,
//! proposal for proposal.

use super::db::{TunedDb, TunedEntry};
use super::record::CandidateRecord;
use super::search::warm::{order_priors, ShapeDims, ShapePriors, WarmConfig};
use super::search::{LazySpace, SearchStrategy, Searcher};
use super::shape_search::{Limits, PlannedSearch};
use super::space::{Candidate, DeviceLimits, ShapeEnv, Strategy, Sweep};
use super::strategy::{self, MEASURE_LIMIT};
use crate::kernels::{DType, Family, Shape};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// Spaces with at most this many valid candidates are swept in full by default.
pub const FULL_SWEEP_LIMIT: u128 = 300;

/// What will be measured for one (dtype, shape) by grid or random.
#[derive(Debug, Clone)]
pub struct ShapePlan {
    pub dtype: DType,
    pub shape: Shape,
    /// Points of the space (all variants).
    pub total: u128,
    /// Dropped points by rule (among the examined ones when `note` says it was a sample).
    pub dropped: Vec<(String, u128)>,
    /// Chosen by the strategy (before skipping what is already measured).
    pub chosen: usize,
    /// Set when the space was sampled or the strategy found fewer than the budget.
    pub note: Option<String>,
    /// Still to measure.
    pub todo: Vec<Candidate>,
}

/// How candidates are chosen, as the command line and the sweep file ask.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SearchRequest {
    /// `--strategy`, else the sweep file's; `None` = the default rule.
    pub strategy: Option<SearchStrategy>,
    /// Evaluations per shape; 0 = all.
    pub budget: usize,
    /// Time per shape.
    pub time_budget: Option<Duration>,
    /// Stop a shape once its best is within this many percent of its roofline bound.
    pub stop_within_pct: Option<f64>,
    pub seed: u64,
}

impl SearchRequest {
    fn limits(&self, evals: Option<usize>) -> Limits {
        Limits { max_evals: evals, max_time: self.time_budget, stop_within_pct: self.stop_within_pct }
    }
}

/// The strategy of one shape under the default rule (see the module's comment).
pub fn default_strategy(valid: Option<u128>, req: &SearchRequest) -> SearchStrategy {
    let limited = req.time_budget.is_some() || req.stop_within_pct.is_some();
    match valid {
        Some(n) if n <= FULL_SWEEP_LIMIT && !limited && (req.budget == 0 || req.budget as u128 >= n) => {
            SearchStrategy::Grid
        }
        _ => SearchStrategy::Warm,
    }
}

/// One shape's work.
pub struct ShapeWork<'a> {
    pub dtype: DType,
    pub shape: Shape,
    pub strategy: SearchStrategy,
    pub limits: Limits,
    pub how: How<'a>,
    /// Winners of other shapes to try first, for a strategy that uses them (warm); empty
    /// until [`warm_priors`] fills them in.
    pub priors: Vec<Candidate>,
}

pub enum How<'a> {
    /// Grid or random: the list is fixed.
    Planned(ShapePlan),
    /// A strategy that learns, over the shape's lazy space.
    Adaptive(LazySpace<'a>),
}

impl ShapeWork<'_> {
    /// The searcher for this shape (adaptive ones borrow the space).
    pub fn searcher(&self, seed: u64) -> Box<dyn Searcher + '_> {
        match &self.how {
            How::Planned(p) => Box::new(PlannedSearch::new(p.todo.clone())),
            How::Adaptive(space) => self.strategy.searcher_with_priors(space, seed, &self.priors),
        }
    }

    /// About how many candidates this run will measure, for the progress bar.
    pub fn expected(&self, resumed: usize) -> usize {
        match &self.how {
            How::Planned(p) => p.todo.len(),
            How::Adaptive(space) => {
                let all = space.valid().map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
                self.limits.max_evals.unwrap_or(all).min(all).saturating_sub(resumed)
            }
        }
    }
}

/// Plans every shape: `envs` are the shapes' expression values, one per entry of `shapes`.
#[allow(clippy::too_many_arguments)]
pub fn plan_work<'a>(
    fam: &dyn Family,
    sweep: &'a Sweep,
    shapes: &[(DType, Shape)],
    envs: &'a [ShapeEnv],
    req: &SearchRequest,
    done: &HashSet<String>,
) -> Result<Vec<ShapeWork<'a>>> {
    if req.budget > MEASURE_LIMIT {
        bail!(
            "a budget of {} candidates per shape is more than the {MEASURE_LIMIT} kernlab measures; lower --budget",
            req.budget
        );
    }
    let mut out = Vec::new();
    for ((dt, shape), env) in shapes.iter().zip(envs) {
        let at = || format!("{} {}", dt.name(), shape.label());
        let planned = |strategy: SearchStrategy| -> Result<ShapeWork<'a>> {
            let kind = if strategy == SearchStrategy::Random { Strategy::Random } else { Strategy::Grid };
            let p = plan_one(fam, sweep, env, (*dt, shape), kind, req, done).with_context(at)?;
            let how = How::Planned(p);
            Ok(ShapeWork {
                dtype: *dt,
                shape: shape.clone(),
                strategy,
                limits: req.limits(None),
                how,
                priors: Vec::new(),
            })
        };
        // Grid and random asked for by name never need the space examined here.
        if let Some(s @ (SearchStrategy::Grid | SearchStrategy::Random)) = req.strategy {
            out.push(planned(s)?);
            continue;
        }
        let space = LazySpace::new(sweep.space(env)?).with_context(at)?;
        let strategy = req.strategy.unwrap_or_else(|| default_strategy(space.valid(), req));
        let work = match strategy {
            SearchStrategy::Grid | SearchStrategy::Random => planned(strategy)?,
            SearchStrategy::Tpe | SearchStrategy::Warm | SearchStrategy::Evolve => {
                let evals = adaptive_budget(&space, strategy, req).with_context(at)?;
                let limits = req.limits(evals);
                let how = How::Adaptive(space);
                ShapeWork { dtype: *dt, shape: shape.clone(), strategy, limits, how, priors: Vec::new() }
            }
        };
        out.push(work);
    }
    Ok(out)
}

/// Where a sweep's warm-start priors may come from: tuned-database entries of this kernel
/// measured on this GPU with this NVRTC, whose variant's template is unchanged.
pub struct PriorSource<'a> {
    pub kernel: &'a str,
    pub gpu: &'a str,
    pub cc: &'a str,
    pub nvrtc: &'a str,
    /// Each variant's current template hash.
    pub source_hashes: &'a BTreeMap<String, String>,
}

/// The priors of `w` when its strategy uses them: the database's winners of the same kernel
/// and dtype on this GPU ([`prior_sources`]), nearest shapes first ([`order_priors`]).
pub fn warm_priors(db: &TunedDb, src: &PriorSource, w: &ShapeWork) -> Vec<Candidate> {
    if !w.strategy.uses_priors() || !matches!(w.how, How::Adaptive(_)) {
        return Vec::new();
    }
    let target: ShapeDims = w.shape.dims.iter().cloned().collect();
    order_priors(&target, &prior_sources(&db.entries, src, w.dtype.name(), &target), WarmConfig::default().per_shape)
}

/// The entries a warm start learns from: winners of the same kernel and dtype at other
/// shapes, fresh under `src`, and this very shape's winner of an older template (the
/// template changed, so the database lookup no longer serves it, but where it won is the best
/// first guess; at distance 0 it comes first). A fresh winner of this very shape is not a
/// prior: the lookup already serves it, and a sweep of the shape is asked to measure it
/// afresh anyway. Entries for other GPUs are left out: what wins on one GPU says little
/// about another.
pub fn prior_sources(entries: &[TunedEntry], src: &PriorSource, dtype: &str, target: &ShapeDims) -> Vec<ShapePriors> {
    entries
        .iter()
        .filter(|e| e.kernel == src.kernel && e.gpu == src.gpu && e.cc == src.cc && e.nvrtc == src.nvrtc)
        .filter(|e| e.dtype == dtype && src.source_hashes.contains_key(&e.variant))
        .filter(|e| {
            let fresh = src.source_hashes.get(&e.variant) == Some(&e.source_hash);
            (e.shape != *target && fresh) || (e.shape == *target && !fresh)
        })
        .map(|e| ShapePriors {
            shape: e.shape.clone(),
            ranked: vec![Candidate { variant: e.variant.clone(), params: e.params.clone() }],
        })
        .collect()
}

/// The evaluation budget of a strategy that learns: `None` = until the space is used up,
/// which needs a space whose size is known.
fn adaptive_budget(space: &LazySpace, strategy: SearchStrategy, req: &SearchRequest) -> Result<Option<usize>> {
    if req.budget > 0 {
        return Ok(Some(req.budget));
    }
    match space.valid() {
        Some(n) if n <= MEASURE_LIMIT as u128 => Ok(None),
        _ if req.time_budget.is_some() => Ok(Some(MEASURE_LIMIT)),
        Some(n) => bail!(
            "{} with no budget would measure all {n} valid candidates, more than the {MEASURE_LIMIT} kernlab \
             measures per shape; pass --budget N (e.g. --budget 200) or --time-budget 30m",
            strategy.name()
        ),
        None => bail!(
            "{} with no budget on a space of {} points (too many to examine one by one): nothing would stop \
             it; pass --budget N (e.g. --budget 200) or --time-budget 30m",
            strategy.name(),
            space.points()
        ),
    }
}

fn plan_one(
    fam: &dyn Family,
    sweep: &Sweep,
    env: &ShapeEnv,
    (dt, shape): (DType, &Shape),
    kind: Strategy,
    req: &SearchRequest,
    done: &HashSet<String>,
) -> Result<ShapePlan> {
    let sel = strategy::choose(sweep, env, kind, req.budget, req.seed)?;
    let n = sel.chosen.len();
    let todo =
        sel.chosen.into_iter().filter(|c| !done.contains(&candidate_record(fam, sweep, c, dt, shape).key())).collect();
    Ok(ShapePlan {
        dtype: dt,
        shape: shape.clone(),
        total: sel.total,
        dropped: sel.dropped,
        chosen: n,
        note: sel.note,
        todo,
    })
}

/// Enumerates, filters, applies grid or random and skips candidates whose key is in `done`
/// (the rows of the CSV being resumed). Pure: no GPU, no files.
#[allow(clippy::too_many_arguments)]
pub fn plan_candidates(
    fam: &dyn Family,
    sweep: &Sweep,
    shapes: &[(DType, Shape)],
    limits: &DeviceLimits,
    strategy_kind: Strategy,
    budget: usize,
    seed: u64,
    done: &HashSet<String>,
) -> Result<Vec<ShapePlan>> {
    let req = SearchRequest { budget, seed, ..SearchRequest::default() };
    let mut out = Vec::new();
    for (dt, shape) in shapes {
        let env = sweep.env(&shape.dims, dt.bytes() as i64, limits)?;
        let p = plan_one(fam, sweep, &env, (*dt, shape), strategy_kind, &req, done)
            .with_context(|| format!("{} {}", dt.name(), shape.label()))?;
        out.push(p);
    }
    Ok(out)
}

/// A record carrying a candidate's identity (no measurements yet).
pub fn candidate_record(fam: &dyn Family, _sweep: &Sweep, c: &Candidate, dt: DType, shape: &Shape) -> CandidateRecord {
    CandidateRecord {
        family: fam.name().into(),
        variant: c.variant.clone(),
        dtype: dt.name().into(),
        shape: shape.label(),
        params: c.params.clone(),
        dim_names: fam.shape_dims().iter().map(|d| d.to_string()).collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(m: i64) -> ShapeDims {
        [("M".to_string(), m), ("N".to_string(), 4096), ("K".to_string(), 4096)].into_iter().collect()
    }

    fn entry(m: i64, hash: &str, block: i64) -> TunedEntry {
        TunedEntry {
            kernel: "gemm".into(),
            variant: "v".into(),
            source_hash: hash.into(),
            gpu: "H200".into(),
            cc: "9.0".into(),
            nvrtc: "13.0".into(),
            dtype: "bf16".into(),
            format: None,
            shape: dims(m),
            params: [("BM".to_string(), block)].into_iter().collect(),
            time_us: 1.0,
            peer_us: None,
            measured_at: "2026-12-04T00:00:00Z".into(),
        }
    }

    #[test]
    fn priors_take_other_shapes_fresh_and_this_shape_stale() {
        let hashes: BTreeMap<String, String> = [("v".to_string(), "new".to_string())].into_iter().collect();
        let src = PriorSource { kernel: "gemm", gpu: "H200", cc: "9.0", nvrtc: "13.0", source_hashes: &hashes };
        let entries = vec![
            entry(1, "new", 1),   // this shape, fresh: the lookup serves it
            entry(8, "new", 8),   // another shape, fresh: a prior
            entry(16, "old", 16), // another shape, stale: says nothing of the new template
        ];
        let got: Vec<i64> =
            prior_sources(&entries, &src, "bf16", &dims(1)).iter().map(|p| p.ranked[0].params["BM"]).collect();
        assert_eq!(got, vec![8]);
        // The template changed: this shape's old winner is a prior, and the nearest one.
        let entries = vec![entry(8, "new", 8), entry(1, "old", 1)];
        let sources = prior_sources(&entries, &src, "bf16", &dims(1));
        let ordered = order_priors(&dims(1), &sources, 1);
        assert_eq!(ordered.iter().map(|c| c.params["BM"]).collect::<Vec<_>>(), vec![1, 8]);
        // Another GPU's or dtype's winners never count.
        assert!(prior_sources(&entries, &src, "fp16", &dims(1)).is_empty());
    }
}
