//! Which tuning parameters matter: the levels each parameter took in a sweep and how much
//! the best time changes across them. Feeds the strip charts, the heat map and the HTML.

use super::export::{is_ranked, ShapeKey};
use crate::tune::record::CandidateRecord;
use std::collections::{BTreeMap, BTreeSet};

/// The variant is treated as one more parameter, so sweeps over several template files
/// show which file wins the same way they show which tile size wins.
pub const VARIANT_AXIS: &str = "variant";

/// Text of `r`'s value for axis `name`, or None if the row does not set it.
pub fn level_of(r: &CandidateRecord, name: &str) -> Option<String> {
    if name == VARIANT_AXIS {
        Some(r.variant.clone())
    } else {
        r.params.get(name).map(|v| v.to_string())
    }
}

/// Orders levels numerically when they are numbers, by text otherwise.
fn level_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<i64>(), b.parse::<i64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        _ => a.cmp(b),
    }
}

/// One parameter of a sweep, as it varied among the verified candidates of one shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamAxis {
    pub name: String,
    /// Distinct values, in numeric order.
    pub levels: Vec<String>,
    /// Best time at the worst level over best time at the best level (≥ 1): how much
    /// getting this parameter wrong costs, with the others tuned.
    pub effect: f64,
}

impl ParamAxis {
    pub fn index_of(&self, level: &str) -> Option<usize> {
        self.levels.iter().position(|l| l == level)
    }
}

/// Verified, timed candidates of one (family, dtype, shape).
pub fn ranked_rows<'a>(records: &'a [CandidateRecord], key: &ShapeKey) -> Vec<&'a CandidateRecord> {
    records.iter().filter(|r| is_ranked(r) && ShapeKey::of(r) == *key).collect()
}

/// Axes that took at least two values among `rows`, most influential first (ties by name).
pub fn param_axes(rows: &[&CandidateRecord]) -> Vec<ParamAxis> {
    let mut names: BTreeSet<String> = rows.iter().flat_map(|r| r.params.keys().cloned()).collect();
    names.insert(VARIANT_AXIS.to_string());
    let mut axes = Vec::new();
    for name in names {
        // Best median per level.
        let mut best: BTreeMap<String, f64> = BTreeMap::new();
        for r in rows {
            let (Some(l), Some(t)) = (level_of(r, &name), r.median_us()) else { continue };
            let e = best.entry(l).or_insert(f64::INFINITY);
            *e = e.min(t);
        }
        if best.len() < 2 {
            continue;
        }
        let lo = best.values().copied().fold(f64::INFINITY, f64::min);
        let hi = best.values().copied().fold(0.0, f64::max);
        let mut levels: Vec<String> = best.into_keys().collect();
        levels.sort_by(|a, b| level_order(a, b));
        axes.push(ParamAxis { name, levels, effect: if lo > 0.0 { hi / lo } else { 1.0 } });
    }
    axes.sort_by(|a, b| b.effect.total_cmp(&a.effect).then_with(|| a.name.cmp(&b.name)));
    axes
}

/// Every (family, dtype, shape) that has at least one verified, timed candidate.
pub fn ranked_shapes(records: &[CandidateRecord]) -> Vec<ShapeKey> {
    let set: BTreeSet<ShapeKey> = records.iter().filter(|r| is_ranked(r)).map(ShapeKey::of).collect();
    set.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tune::record::{Status, Timing};

    fn rec(bm: i64, st: i64, t: f64) -> CandidateRecord {
        let mut params = BTreeMap::new();
        params.insert("BM".to_string(), bm);
        params.insert("STAGES".to_string(), st);
        params.insert("FIXED".to_string(), 1);
        CandidateRecord {
            family: "gemm".into(),
            variant: "v".into(),
            dtype: "bf16".into(),
            shape: "s".into(),
            params,
            status: Some(Status::Ok),
            timing: Some(Timing { median_us: t, p20_us: t, p80_us: t, min_us: t, reps: 1 }),
            ..Default::default()
        }
    }

    #[test]
    fn ranks_parameters_by_effect() {
        // BM matters 5× (best 10 vs 50 µs), STAGES 1.25×; FIXED and the single variant do not vary.
        let rs = [rec(64, 2, 10.0), rec(128, 2, 40.0), rec(64, 3, 12.5), rec(256, 3, 50.0)];
        let rows: Vec<&CandidateRecord> = rs.iter().collect();
        let axes = param_axes(&rows);
        assert_eq!(axes.len(), 2);
        assert_eq!(axes[0].name, "BM");
        assert_eq!(axes[0].levels, vec!["64", "128", "256"]);
        assert!((axes[0].effect - 5.0).abs() < 1e-12);
        assert_eq!(axes[1].name, "STAGES");
        assert!((axes[1].effect - 1.25).abs() < 1e-12);
        assert!(param_axes(&[]).is_empty());
    }
}
