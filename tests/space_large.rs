//! Spaces far larger than memory: sampled and refused without being built, and the peak
//! memory of this test process (its own binary, so nothing else runs in it) stays small.

mod sweep_support;

use kernlab::tune::space::{Strategy, Sweep};
use kernlab::tune::strategy;
use sweep_support::{env_64, shape_64, sm90a, wide_sweep};

/// A sweep over `n` parameters of `k` values each (the space has k^n points), P2 even, and a
/// derived value the shared-memory limit bounds.
fn wide(dir: &std::path::Path, n: usize, k: usize) -> Sweep {
    let rest = "derived = { A = \"P0 * P1 * 64\" }\nconstraints = [\"P2 % 2 == 0\", \"A <= max_smem\"]";
    wide_sweep(dir, n, k, "", rest)
}

fn peak_rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok());
    kb.unwrap_or(0.0) / 1024.0
}

#[test]
fn huge_spaces_in_little_memory() {
    let dir = tempfile::tempdir().unwrap();
    // 16 params × 16 values = 2^64 points: 100 random candidates, a strided grid, a refusal.
    let s = wide(dir.path(), 16, 16);
    let env = env_64(&s);
    let r = strategy::choose(&s, &env, Strategy::Random, 100, 1).unwrap();
    assert_eq!(r.chosen.len(), 100);
    assert_eq!(r.total, 1u128 << 64);
    let g = strategy::choose(&s, &env, Strategy::Grid, 1000, 0).unwrap();
    assert_eq!(g.chosen.len(), 1000);
    let err = format!("{:#}", strategy::choose(&s, &env, Strategy::Grid, 0, 0).unwrap_err());
    assert!(err.contains("18446744073709551616 points") && err.contains("--strategy random --budget"), "{err}");
    // 10^9 points: the old code tried to allocate ~24 GB here.
    let s9 = wide(dir.path(), 9, 10);
    let err = format!("{:#}", s9.enumerate(&shape_64(), 2, &sm90a()).unwrap_err());
    assert!(err.contains("1000000000 points"), "{err}");
    // The largest space examined point by point: 10^6 points, every one checked.
    let s6 = wide(dir.path(), 6, 10);
    let env6 = env_64(&s6);
    let e = strategy::choose(&s6, &env6, Strategy::Grid, 10, 0).unwrap();
    assert_eq!(e.examined, 1_000_000);
    assert!(!e.sampled && e.chosen.len() == 10);
    let peak = peak_rss_mib();
    println!("peak RSS after 2^64-point sampling and a 10^6-point grid: {peak:.0} MiB");
    assert!(peak < 300.0, "peak RSS {peak:.0} MiB");
}

#[test]
fn strategies_that_learn_search_a_2_pow_64_space_through_the_lazy_adapter() {
    use kernlab::tune::search::{run_search, Budget, LazySpace, SearchSpace, SearchStrategy};
    let dir = tempfile::tempdir().unwrap();
    let s = wide(dir.path(), 16, 16);
    let env = env_64(&s);
    let space = LazySpace::new(s.space(&env).unwrap()).unwrap();
    assert_eq!((space.points(), space.valid(), space.list().is_none()), (1u128 << 64, None, true));
    let v = &s.variants[0];
    for strategy in [SearchStrategy::Tpe, SearchStrategy::Evolve] {
        let mut searcher = strategy.searcher(&space, 3);
        // A bowl in P0 and P1; every proposal is checked against the sweep file's constraints.
        let trace = run_search(searcher.as_mut(), Budget::evals(150), 4, |batch| {
            batch
                .iter()
                .map(|c| {
                    let point: Vec<i64> = v.param_names().map(|k| c.params[k]).collect();
                    assert!(
                        v.is_valid(&s.path, &point, &env).unwrap(),
                        "{} proposed an invalid point",
                        strategy.name()
                    );
                    Some(1.0 + ((c.params["P0"] - 9).pow(2) + (c.params["P1"] - 4).pow(2)) as f64)
                })
                .collect()
        });
        assert_eq!(trace.evaluated.len(), 150);
        assert!(space.take_error().is_none());
    }
    let peak = peak_rss_mib();
    assert!(peak < 300.0, "peak RSS {peak:.0} MiB");
}
