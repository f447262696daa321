//! Choosing the winner among measured candidates, with ties decided deterministically.

use super::record::{CandidateRecord, Status};

/// The fastest verified candidate. Candidates whose median is within the larger of the two
/// spreads of the fastest one are a tie: timing noise cannot order them, so the tie goes to
/// the smallest candidate key (variant, then tunables), which is the same on every run.
pub fn pick<'a>(records: impl IntoIterator<Item = &'a CandidateRecord>) -> Option<&'a CandidateRecord> {
    let ok: Vec<&CandidateRecord> =
        records.into_iter().filter(|r| r.status == Some(Status::Ok) && r.timing.is_some()).collect();
    let fastest = ok.iter().min_by(|a, b| {
        a.timing.unwrap().median_us.total_cmp(&b.timing.unwrap().median_us).then_with(|| a.key().cmp(&b.key()))
    })?;
    let ft = fastest.timing.unwrap();
    ok.iter()
        .filter(|r| {
            let t = r.timing.unwrap();
            t.median_us - ft.median_us <= ft.spread_us().max(t.spread_us())
        })
        .min_by(|a, b| a.key().cmp(&b.key()))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tune::record::Timing;

    fn rec(name: &str, med: f64, spread: f64, status: Status) -> CandidateRecord {
        CandidateRecord {
            variant: name.into(),
            status: Some(status),
            timing: Some(Timing {
                median_us: med,
                p20_us: med - spread,
                p80_us: med + spread,
                min_us: med - spread,
                reps: 10,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn fastest_wins_ties_go_to_smallest_key_and_failures_never_win() {
        let a = rec("b", 10.0, 0.1, Status::Ok);
        let b = rec("c", 12.0, 0.1, Status::Ok);
        let wrong = rec("a", 1.0, 0.1, Status::Wrong);
        assert_eq!(pick([&a, &b, &wrong]).unwrap().variant, "b");
        // "a2" is 0.05 slower but within spread: a tie, and its key sorts first.
        let tie = rec("a2", 10.05, 0.1, Status::Ok);
        assert_eq!(pick([&a, &b, &tie]).unwrap().variant, "a2");
        assert_eq!(pick([&b, &tie, &a]).unwrap().variant, "a2");
        assert!(pick([&wrong]).is_none());
    }
}
