//! `--shard i/n`: a deterministic partition of a sweep's space, so a cluster scheduler (a
//! Slurm job array, say) can run the pieces on different hosts and `kernlab merge` bring
//! them together.
//!
//! A candidate belongs to shard `hash(key) mod n`, where `key` is its canonical text
//! (`variant|NAME=value,...`, parameters sorted by name) and `hash` the first 8 bytes of its
//! SHA-256, read big-endian. Why a hash of the key and not an index over the enumeration:
//! - it is the same on every host and for every strategy, seed, budget and search order,
//!   and it needs no enumeration, so it works on lazy spaces of 2^64 points that tpe and
//!   evolve only sample (an index needs the space laid out first);
//! - a candidate's shard does not depend on the shape, dtype, GPU or on which other points
//!   the constraints drop, so one host compiles the same kernels for every shape;
//! - the cost is balance: shards are equal in size only on average (binomially), which is
//!   close for spaces of hundreds of candidates and more, and visibly uneven for a few dozen.
//!
//! The filter acts on the space itself ([`crate::tune::space::SweepSpace`] drops points of
//! other shards like a constraint does), before any strategy looks at it: grid measures its
//! whole piece, random and tpe sample within it, and `--budget` counts per shard.

use anyhow::{bail, Result};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;

/// Shard `index` of `count` (0-based: `--shard 0/4` … `--shard 3/4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// Parses `i/n` with 0 ≤ i < n and n ≥ 1, with errors that say what to type instead.
    pub fn parse(text: &str) -> Result<Shard> {
        let example = "e.g. --shard 0/4 for the first of four pieces";
        let Some((i, n)) = text.trim().split_once('/') else {
            bail!("--shard {text:?}: expected INDEX/COUNT, {example}");
        };
        let num = |s: &str, what: &str| -> Result<u64> {
            match s.trim().parse::<u64>() {
                Ok(v) => Ok(v),
                Err(_) => bail!("--shard {text:?}: {what} {s:?} is not a whole number ≥ 0; {example}"),
            }
        };
        let (index, count) = (num(i, "the index")?, num(n, "the count")?);
        if count == 0 {
            bail!("--shard {text:?}: the count must be at least 1; {example}");
        }
        if index >= count {
            bail!(
                "--shard {text:?}: the index must be below the count (shards are numbered 0..{}, as \
                 SLURM_ARRAY_TASK_ID of `--array=0-{}`); {example}",
                count - 1,
                count - 1
            );
        }
        Ok(Shard { index, count })
    }

    /// Whether the candidate (`variant` at `params`) falls in this shard.
    pub fn contains(&self, variant: &str, params: &BTreeMap<String, i64>) -> bool {
        self.count <= 1 || shard_of(variant, params, self.count) == self.index
    }

    /// The drop-count rule for candidates of the other shards.
    pub fn drop_rule(&self) -> String {
        format!("in another shard than {self}")
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// clap's value parser for `--shard`.
pub fn parse_arg(s: &str) -> std::result::Result<Shard, String> {
    Shard::parse(s).map_err(|e| e.to_string().trim_start_matches(&format!("--shard {s:?}: ")).to_string())
}

/// A candidate's canonical text: the same for the same point, whatever order built it.
/// (Variant and parameters rather than a `Candidate`, so the space can use this module.)
pub fn canonical_key(variant: &str, params: &BTreeMap<String, i64>) -> String {
    // BTreeMap iterates in name order, so the parameters come out sorted.
    let params: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{variant}|{}", params.join(","))
}

/// The shard of `count` that the candidate belongs to.
pub fn shard_of(variant: &str, params: &BTreeMap<String, i64>, count: u64) -> u64 {
    let digest = Sha256::digest(canonical_key(variant, params).as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % count.max(1)
}

/// Refuses to resume a `--shard` sweep into a CSV that holds candidates of other shards:
/// the file was written by another piece or by a whole sweep (a job array whose tasks share
/// one `--out`, say). Resuming would count those rows against this shard's budget and could
/// crown another piece's candidate, measured on another host, as this shard's winner.
/// `rows` are the resumed candidate rows as (variant, params); peer rows are not candidates.
pub fn check_resumed_rows<'a>(
    shard: Shard,
    csv: &std::path::Path,
    rows: impl IntoIterator<Item = (&'a str, &'a BTreeMap<String, i64>)>,
) -> Result<()> {
    let mut outside = 0usize;
    let mut first = None;
    for (variant, params) in rows {
        if !shard.contains(variant, params) {
            outside += 1;
            first.get_or_insert_with(|| canonical_key(variant, params));
        }
    }
    if let Some(first) = first {
        bail!(
            "--shard {shard} --resume: {} holds {outside} candidate row(s) of other shards (the first: {first}); \
             it was written by another --shard or by a sweep without one. Give each shard its own --out \
             (e.g. --out reports/gemm-{}.csv) and bring the pieces together with `kernlab merge`",
            csv.display(),
            shard.index
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resuming_a_shard_refuses_rows_of_other_shards() {
        let shard = Shard { index: 1, count: 4 };
        let points: Vec<BTreeMap<String, i64>> = (0..64).map(|i| cand(&[("BM", i)])).collect();
        let mine: Vec<&BTreeMap<String, i64>> = points.iter().filter(|p| shard.contains("v", p)).collect();
        let theirs = points.iter().find(|p| !shard.contains("v", p)).unwrap();
        assert!(!mine.is_empty());
        let csv = std::path::Path::new("reports/gemm.csv");
        check_resumed_rows(shard, csv, mine.iter().map(|p| ("v", *p))).unwrap();
        let mixed = mine.iter().map(|p| ("v", *p)).chain([("v", theirs)]);
        let err = format!("{:#}", check_resumed_rows(shard, csv, mixed).unwrap_err());
        assert!(err.contains("1 candidate row(s) of other shards") && err.contains("kernlab merge"), "{err}");
        assert!(err.contains(&canonical_key("v", theirs)) && err.contains("reports/gemm.csv"), "{err}");
        // One shard is the whole space: nothing is outside it.
        check_resumed_rows(Shard { index: 0, count: 1 }, csv, [("v", theirs)]).unwrap();
    }

    fn cand(params: &[(&str, i64)]) -> BTreeMap<String, i64> {
        params.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn parse_accepts_valid_and_explains_the_rest() {
        assert_eq!(Shard::parse("0/1").unwrap(), Shard { index: 0, count: 1 });
        assert_eq!(Shard::parse(" 3/4 ").unwrap(), Shard { index: 3, count: 4 });
        for (bad, says) in [
            ("4/4", "below the count"),
            ("5/4", "below the count"),
            ("0/0", "at least 1"),
            ("1", "INDEX/COUNT"),
            ("-1/4", "not a whole number"),
            ("a/4", "not a whole number"),
            ("1/b", "not a whole number"),
            ("", "INDEX/COUNT"),
            ("1/2/3", "not a whole number"),
            ("99999999999999999999/1", "not a whole number"),
        ] {
            let err = format!("{:#}", Shard::parse(bad).unwrap_err());
            assert!(err.contains(says), "{bad:?}: {err}");
        }
        assert!(parse_arg("4/4").unwrap_err().starts_with("the index must be below the count"));
    }

    #[test]
    fn the_key_and_the_shard_do_not_depend_on_insertion_order() {
        let a = cand(&[("BM", 64), ("BN", 128), ("STAGES", 3)]);
        let b = cand(&[("STAGES", 3), ("BN", 128), ("BM", 64)]);
        assert_eq!(canonical_key("mma", &a), "mma|BM=64,BN=128,STAGES=3");
        assert_eq!(canonical_key("mma", &a), canonical_key("mma", &b));
        assert_eq!(shard_of("mma", &a, 1 << 20), shard_of("mma", &b, 1 << 20));
        assert_eq!(shard_of("v", &cand(&[]), 1), 0);
    }
}
