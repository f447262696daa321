//! Selecting winners and peers out of sweep records, and exporting records as JSON.
//!
//! CSV export is `tune::record::to_csv_bytes`; it is already pandas-friendly.

use crate::tune::record::{CandidateRecord, Status};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// What a winner competes within: the same kernel family, dtype and problem shape.
/// Ordered by family, dtype, then shape with numbers compared as numbers, so
/// `16x4096` comes before `128x4096` in tables and charts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShapeKey {
    pub family: String,
    pub dtype: String,
    pub shape: String,
}

impl Ord for ShapeKey {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (&self.family, &self.dtype)
            .cmp(&(&o.family, &o.dtype))
            .then_with(|| natural_cmp(&self.shape, &o.shape))
            .then_with(|| self.shape.cmp(&o.shape))
    }
}

impl PartialOrd for ShapeKey {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

/// Compares text with runs of digits taken as numbers: `16x4096` < `128x4096`.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(cb.iter()) {
        let ord = match (x, y) {
            ((true, x), (true, y)) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if ord != std::cmp::Ordering::Equal {
            return ord;
        }
    }
    ca.len().cmp(&cb.len())
}

impl ShapeKey {
    pub fn of(r: &CandidateRecord) -> ShapeKey {
        ShapeKey { family: r.family.clone(), dtype: r.dtype.clone(), shape: r.shape.clone() }
    }
    /// `gemm bf16 16x4096x14336`
    pub fn label(&self) -> String {
        format!("{} {} {}", self.family, self.dtype, self.shape)
    }
}

/// A row that can be ranked: its status is `status` and it has a positive, finite median.
fn timed_with_status(r: &CandidateRecord, status: Status) -> Option<f64> {
    if r.status != Some(status) {
        return None;
    }
    r.median_us().filter(|t| t.is_finite() && *t > 0.0)
}

/// Verified, timed candidates (never peers, never failures).
pub fn is_ranked(r: &CandidateRecord) -> bool {
    timed_with_status(r, Status::Ok).is_some()
}

/// The fastest `Ok` row per (family, dtype, shape), in key order.
///
/// Rows whose median is within the larger of the two spreads of the fastest are a tie
/// with it; among tied rows the smallest `key()` (variant, then parameters) wins, so the
/// same CSV always gives the same winner however its rows are ordered.
pub fn winners_per_shape(records: &[CandidateRecord]) -> Vec<&CandidateRecord> {
    let mut groups: BTreeMap<ShapeKey, Vec<&CandidateRecord>> = BTreeMap::new();
    for r in records.iter().filter(|r| is_ranked(r)) {
        groups.entry(ShapeKey::of(r)).or_default().push(r);
    }
    // The same rule the sweep used to pick its winner, so the report never disagrees.
    groups.into_values().filter_map(|g| crate::tune::winner::pick(g)).collect()
}

/// The one winner of `key`: the row the table lists and every chart marks. Every caller
/// goes through this (or [`winners_per_shape`], the same rule over all keys), so no chart
/// can outline a different candidate than the table names.
pub fn winner_of<'a>(records: &'a [CandidateRecord], key: &ShapeKey) -> Option<&'a CandidateRecord> {
    let group: Vec<&CandidateRecord> = records.iter().filter(|r| is_ranked(r) && ShapeKey::of(r) == *key).collect();
    crate::tune::winner::pick(group)
}

/// The peer row (cuBLAS, PyTorch, ...) per (family, dtype, shape): the fastest peer row
/// when a sweep measured several.
pub fn peers_per_shape(records: &[CandidateRecord]) -> BTreeMap<ShapeKey, &CandidateRecord> {
    let mut out: BTreeMap<ShapeKey, &CandidateRecord> = BTreeMap::new();
    for r in records {
        let Some(t) = timed_with_status(r, Status::Peer) else { continue };
        let k = ShapeKey::of(r);
        let better = match out.get(&k) {
            Some(cur) => t < cur.median_us().unwrap_or(f64::INFINITY),
            None => true,
        };
        if better {
            out.insert(k, r);
        }
    }
    out
}

/// The peer's median time for `winner`'s shape: the peer row if the sweep has one, else
/// the `peer_time_us` column the sweep wrote beside each candidate.
pub fn peer_time_us(winner: &CandidateRecord, peers: &BTreeMap<ShapeKey, &CandidateRecord>) -> Option<f64> {
    peers
        .get(&ShapeKey::of(winner))
        .and_then(|p| p.median_us())
        .or(winner.peer_us)
        .filter(|t| t.is_finite() && *t > 0.0)
}

/// How many rows of each status (`ok`, `wrong`, ...; rows without one count as `unknown`).
pub fn status_counts(records: &[CandidateRecord]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in records {
        let s = r.status.map(|s| s.as_str()).unwrap_or("unknown");
        *out.entry(s.to_string()).or_insert(0) += 1;
    }
    out
}

/// Records as a pretty JSON array (the serde form of [`CandidateRecord`]).
pub fn records_to_json(records: &[CandidateRecord]) -> Result<Vec<u8>> {
    let mut v = serde_json::to_vec_pretty(records)?;
    v.push(b'\n');
    Ok(v)
}

pub fn write_records_json(records: &[CandidateRecord], path: &Path) -> Result<()> {
    std::fs::write(path, records_to_json(records)?).with_context(|| format!("writing {}", path.display()))
}

/// Compact parameter text: `BM=128 BN=64 STAGES=3`.
pub fn params_text(r: &CandidateRecord) -> String {
    r.params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tune::record::Timing;

    fn rec(variant: &str, bm: i64, median: f64, spread: f64, status: Status) -> CandidateRecord {
        let mut params = BTreeMap::new();
        params.insert("BM".to_string(), bm);
        CandidateRecord {
            family: "gemm".into(),
            variant: variant.into(),
            dtype: "bf16".into(),
            shape: "16x16x16".into(),
            params,
            status: Some(status),
            timing: Some(Timing {
                median_us: median,
                p20_us: median - spread,
                p80_us: median + spread,
                min_us: median - spread,
                reps: 10,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn fastest_ok_wins_and_failures_never_do() {
        let rs = vec![
            rec("a", 64, 10.0, 0.1, Status::Ok),
            rec("a", 128, 5.0, 0.1, Status::Wrong),
            rec("cublas", 0, 4.0, 0.1, Status::Peer),
            rec("a", 32, 12.0, 0.1, Status::Ok),
        ];
        let w = winners_per_shape(&rs);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].params["BM"], 64);
        let peers = peers_per_shape(&rs);
        assert_eq!(peer_time_us(w[0], &peers), Some(4.0));
    }

    #[test]
    fn ties_within_spread_break_by_key_in_any_order() {
        // 10.0 and 10.3 overlap (spread 0.5): the smaller key (BM=128 < BM=64 as text) wins.
        let a = rec("a", 64, 10.0, 0.5, Status::Ok);
        let b = rec("a", 128, 10.3, 0.5, Status::Ok);
        let w1 = winners_per_shape(&[a.clone(), b.clone()])[0].key();
        let w2 = winners_per_shape(&[b.clone(), a.clone()])[0].key();
        assert_eq!(w1, w2);
        assert_eq!(w1, b.key());
        // The per-key pick is the same row as the all-keys one.
        let rs = [a.clone(), b.clone()];
        assert_eq!(winner_of(&rs, &ShapeKey::of(&a)).map(|w| w.key()), Some(w1));
        // Outside the spread the faster wins.
        let c = rec("a", 128, 11.0, 0.1, Status::Ok);
        let d = rec("a", 64, 10.0, 0.1, Status::Ok);
        assert_eq!(winners_per_shape(&[c, d.clone()])[0].key(), d.key());
    }

    #[test]
    fn shapes_sort_naturally() {
        use std::cmp::Ordering::*;
        assert_eq!(natural_cmp("16x4096", "128x4096"), Less);
        assert_eq!(natural_cmp("4096x4096x4096", "128x4096x4096"), Greater);
        assert_eq!(natural_cmp("16x4096", "16x4096"), Equal);
        assert_eq!(natural_cmp("", "a"), Less);
    }

    #[test]
    fn rows_without_timing_are_skipped() {
        let mut r = rec("a", 64, 10.0, 0.1, Status::Ok);
        r.timing = None;
        assert!(winners_per_shape(&[r]).is_empty());
        assert!(winners_per_shape(&[]).is_empty());
    }

    #[test]
    fn json_export_parses_back() {
        let rs = vec![rec("a", 64, 10.0, 0.1, Status::Ok)];
        let v: serde_json::Value = serde_json::from_slice(&records_to_json(&rs).unwrap()).unwrap();
        assert_eq!(v[0]["status"], "ok");
        assert_eq!(v[0]["params"]["BM"], 64);
        assert_eq!(status_counts(&rs)["ok"], 1);
    }
}
