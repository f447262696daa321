//! Spaces far larger than memory: sampled and refused without being built, and the peak
//! memory of this test process (its own binary, so nothing else runs in it) stays small.

use kernlab::tune::space::{DeviceLimits, Strategy, Sweep};
use kernlab::tune::strategy;

/// A sweep over `n` parameters of `k` values each (the space has k^n points).
fn wide(dir: &std::path::Path, n: usize, k: usize, constraint: &str) -> Sweep {
    let macros: String = (0..n).map(|i| format!("#ifndef P{i}\n#define P{i} 1\n#endif\n")).collect();
    std::fs::write(dir.join("w.cu"), macros).unwrap();
    let vals: Vec<String> = (1..=k).map(|v| v.to_string()).collect();
    let params: Vec<String> = (0..n).map(|i| format!("P{i} = [{}]", vals.join(", "))).collect();
    let text = format!(
        "family = \"gemm\"\n[[variant]]\nname = \"w\"\nfile = \"w.cu\"\nparams = {{ {} }}\n\
         derived = {{ A = \"P0 * P1 * 64\" }}\nconstraints = [\"{constraint}\", \"A <= max_smem\"]\n",
        params.join(", ")
    );
    let p = dir.join(format!("w{n}x{k}.toml"));
    std::fs::write(&p, text).unwrap();
    Sweep::load(&p, &["M", "N", "K"]).unwrap()
}

fn peak_rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok());
    kb.unwrap_or(0.0) / 1024.0
}

#[test]
fn huge_spaces_in_little_memory() {
    let dir = tempfile::tempdir().unwrap();
    let limits = DeviceLimits::for_arch("sm_90a").unwrap();
    let shape = vec![("M".to_string(), 64), ("N".to_string(), 64), ("K".to_string(), 64)];
    // 16 params × 16 values = 2^64 points: 100 random candidates, a strided grid, a refusal.
    let s = wide(dir.path(), 16, 16, "P2 % 2 == 0");
    let env = s.env(&shape, 2, &limits).unwrap();
    let r = strategy::choose(&s, &env, Strategy::Random, 100, 1).unwrap();
    assert_eq!(r.chosen.len(), 100);
    assert_eq!(r.total, 1u128 << 64);
    let g = strategy::choose(&s, &env, Strategy::Grid, 1000, 0).unwrap();
    assert_eq!(g.chosen.len(), 1000);
    let err = format!("{:#}", strategy::choose(&s, &env, Strategy::Grid, 0, 0).unwrap_err());
    assert!(err.contains("18446744073709551616 points") && err.contains("--strategy random --budget"), "{err}");
    // 10^9 points: the old code tried to allocate ~24 GB here.
    let s9 = wide(dir.path(), 9, 10, "P2 % 2 == 0");
    let err = format!("{:#}", s9.enumerate(&shape, 2, &limits).unwrap_err());
    assert!(err.contains("1000000000 points"), "{err}");
    // The largest space examined point by point: 10^6 points, every one checked.
    let s6 = wide(dir.path(), 6, 10, "P2 % 2 == 0");
    let env6 = s6.env(&shape, 2, &limits).unwrap();
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
    let limits = DeviceLimits::for_arch("sm_90a").unwrap();
    let shape = vec![("M".to_string(), 64), ("N".to_string(), 64), ("K".to_string(), 64)];
    let s = wide(dir.path(), 16, 16, "P2 % 2 == 0");
    let env = s.env(&shape, 2, &limits).unwrap();
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
