//! Declaring one shape's winner under timing noise, in the real sweep.
//!
//! The fastest verified candidate and every one within its spread ([`noise::contenders`])
//! are measured again; each one's two measurements are pooled ([`noise::pooled`]) and
//! [`noise::decide`] says whether the fastest pooled one is a clear winner or ties with
//! others. Within a tie the pick is the smallest candidate key ([`winner::pick`]'s rule), so
//! repeated sweeps pick the same candidate or report the same tie. A contender that fails
//! its second measurement (a flaky kernel) cannot win. The second measurements are not
//! written to the CSV, which keeps one row per candidate for resume and replay.

use super::record::{CandidateRecord, Status, Timing};
use super::search::noise;
use super::shape_search::{candidate_of, Measure};
use super::winner;
use anyhow::Result;

/// A shape's winner and how sure the sweep is of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    /// The winner; its timing is the pooled one when it was measured again.
    pub winner: CandidateRecord,
    /// Candidates the winner cannot be told apart from after re-measurement (empty: a
    /// clear win).
    pub tied: Vec<CandidateRecord>,
    /// Candidates measured a second time.
    pub remeasured: usize,
    /// False when the re-measurement was cut short (Ctrl-C): the pick is the first
    /// measurement's and `tied` lists its contenders.
    pub confirmed: bool,
}

/// The first sequence number of re-measurements, past any candidate's own.
pub const REMEASURE_SEQ: u64 = 1 << 40;

/// Settles the winner among `records` (one shape's candidate rows). `None` when no
/// candidate was verified.
pub fn settle(records: &[&CandidateRecord], measure: &mut dyn Measure) -> Result<Option<Settled>> {
    let ok: Vec<&CandidateRecord> =
        records.iter().copied().filter(|r| r.status == Some(Status::Ok) && r.timing.is_some()).collect();
    let first: Vec<Timing> = ok.iter().filter_map(|r| r.timing).collect();
    let contenders = noise::contenders(&first);
    if contenders.is_empty() {
        return Ok(winner::pick(ok.iter().copied()).map(|w| Settled {
            winner: w.clone(),
            tied: Vec::new(),
            remeasured: 0,
            confirmed: true,
        }));
    }
    let cands: Vec<_> = contenders.iter().map(|&i| candidate_of(ok[i])).collect();
    measure.prepare(&cands);
    let mut kept = Vec::new();
    let mut again = Vec::new();
    let mut flaky = Vec::new();
    for (k, (&i, c)) in contenders.iter().zip(&cands).enumerate() {
        let Some(r) = measure.measure(c, REMEASURE_SEQ + k as u64)? else {
            return Ok(unconfirmed(&ok, &contenders));
        };
        match r.timing.filter(|_| r.status == Some(Status::Ok)) {
            Some(t) => {
                kept.push(i);
                again.push(t);
            }
            None => flaky.push(i),
        }
    }
    // Everyone else keeps the first measurement; the contenders get their pooled one.
    let mut pool: Vec<CandidateRecord> = (0..ok.len()).filter(|i| !flaky.contains(i)).map(|i| ok[i].clone()).collect();
    let index_in_pool = |i: usize| i - flaky.iter().filter(|&&f| f < i).count();
    for (&i, t) in kept.iter().zip(&again) {
        pool[index_in_pool(i)].timing = Some(noise::pooled(&first[i], t));
    }
    let remeasured = contenders.len();
    if kept.is_empty() {
        // Every contender failed its second run: the best of the rest wins outright.
        return Ok(winner::pick(pool.iter()).map(|w| Settled {
            winner: w.clone(),
            tied: Vec::new(),
            remeasured,
            confirmed: true,
        }));
    }
    let Some(verdict) = noise::decide(&first, &kept, &again) else { return Ok(None) };
    // The verdict's set: its pick and whoever ties with it; the winner is the smallest key.
    let mut set: Vec<usize> = vec![verdict.pick()];
    if let noise::Verdict::Tie { tied, .. } = &verdict {
        set.extend(tied);
    }
    let members: Vec<&CandidateRecord> = set.iter().map(|&i| &pool[index_in_pool(i)]).collect();
    let Some(w) = winner::pick(members.iter().copied()) else { return Ok(None) };
    let tied = members.iter().filter(|r| r.key() != w.key()).map(|r| (*r).clone()).collect();
    Ok(Some(Settled { winner: w.clone(), tied, remeasured, confirmed: true }))
}

fn unconfirmed(ok: &[&CandidateRecord], contenders: &[usize]) -> Option<Settled> {
    let w = winner::pick(ok.iter().copied())?;
    let tied = contenders.iter().map(|&i| ok[i]).filter(|r| r.key() != w.key()).cloned().collect();
    Some(Settled { winner: w.clone(), tied, remeasured: 0, confirmed: false })
}
