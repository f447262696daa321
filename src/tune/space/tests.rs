//! Tests of sweep-file parsing and lazy enumeration.

use super::*;
use std::io::Write;

fn setup(sweep: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sweeps")).unwrap();
    std::fs::create_dir_all(dir.path().join("kernels/t")).unwrap();
    std::fs::write(
        dir.path().join("kernels/t/k.cu"),
        "#ifndef BM\n#define BM 64\n#endif\n#ifndef BN\n#define BN 64\n#endif\n#ifndef WM\n#define WM 32\n#endif\n",
    )
    .unwrap();
    let p = dir.path().join("sweeps/t.toml");
    std::fs::File::create(&p).unwrap().write_all(sweep.as_bytes()).unwrap();
    (dir, p)
}

/// The error (with its causes) of loading `sweep`, which must fail.
fn load_error(sweep: &str) -> String {
    let (_d, p) = setup(sweep);
    format!("{:#}", Sweep::load(&p, &["M", "N", "K"]).unwrap_err())
}

const GOOD: &str = r#"
family = "gemm"
shapes = ["16x64x64"]
[tolerance]
bf16 = 0.02
[[variant]]
name = "k"
file = "kernels/t/k.cu"
params = { BM = [32, 64, 128], BN = [32, 64], WM = [16, 32, 64] }
derived = { WARPS = "BM / WM" }
constraints = [
  "BM % WM == 0",
  "WARPS <= 2",
  "BM * BN * 2 <= max_smem",
]
"#;

fn limits() -> DeviceLimits {
    DeviceLimits { max_smem: 8192, max_threads: 1024, sm_count: 132, cc: 90 }
}

#[test]
fn enumerates_and_counts_drops() {
    let (_d, p) = setup(GOOD);
    let s = Sweep::load(&p, &["M", "N", "K"]).unwrap();
    let shape = vec![("M".to_string(), 16), ("N".to_string(), 64), ("K".to_string(), 64)];
    let e = s.enumerate(&shape, 2, &limits()).unwrap();
    assert_eq!(e.total, 18);
    // Hand count: pairs (BM,WM) with BM%WM==0 and BM/WM<=2:
    // (32,16),(32,32),(64,32),(64,64),(128,64) → 5, × BN {32,64} = 10;
    // smem BM*BN*2 <= 8192 drops (128,64)×BN=64 (16384) and (128,64)×BN=32 is 8192 (kept),
    // (64,*)×BN=64 = 8192 kept. So 9 kept.
    assert_eq!(e.kept.len(), 9, "{:?}", e.kept);
    let dropped: usize = e.dropped.iter().map(|(_, n)| n).sum();
    assert_eq!(dropped + e.kept.len(), e.total);
    assert!(e.dropped.iter().any(|(r, _)| r.contains("BM % WM == 0")));
    // Deterministic order.
    let e2 = s.enumerate(&shape, 2, &limits()).unwrap();
    assert_eq!(e.kept, e2.kept);
}

#[test]
fn when_filters_by_shape() {
    let (_d, p) = setup(&GOOD.replace("name = \"k\"", "name = \"k\"\nwhen = \"M > 16\""));
    let s = Sweep::load(&p, &["M", "N", "K"]).unwrap();
    let e = s.enumerate(&[("M".into(), 16), ("N".into(), 64), ("K".into(), 64)], 2, &limits()).unwrap();
    assert!(e.kept.is_empty());
    assert!(e.dropped[0].0.contains("not for this shape"));
}

#[test]
fn bad_sweep_files_are_errors_that_say_what_and_where() {
    let edit = |from: &str, to: &str| GOOD.replace(from, to);
    let cases: &[(String, &[&str])] = &[
        // An unknown name in a constraint: the file and line, and the name.
        (edit("\"WARPS <= 2\"", "\"WARPZ <= 2\""), &["t.toml:13", "WARPZ"]),
        (edit("WM = [16, 32, 64] }", "WM = [16, 32, 64], XX = [1] }"), &["unknown parameter XX"]),
        (edit("BN = [32, 64]", "BN = []"), &["no values"]),
        (edit("BN = [32, 64]", "BN = [32, 64, 32]"), &["lists 32 twice"]),
        // Malformed TOML, and a misspelt key.
        ("family = \"gemm\"\n[[variant]\nname = 1\n".to_string(), &["line 2"]),
        (edit("constraints", "constrains"), &["constrains"]),
        (edit("\"BM % WM == 0\"", "\"BM % (WM == 0\""), &["bad expression"]),
        // Types are checked when the file is read.
        (edit("\"WARPS <= 2\"", "\"WARPS * 2\""), &["t.toml:13:", "is a number; it must be a condition"]),
    ];
    for (sweep, needles) in cases {
        let err = load_error(sweep);
        assert!(needles.iter().all(|n| err.contains(n)), "{err}\nwanted {needles:?}");
    }
}

#[test]
fn ceil_div_and_limits_for_arch() {
    let (_d, p) = setup(&GOOD.replace("\"WARPS <= 2\"", "\"ceil_div(M, BM) * BM >= M\""));
    let s = Sweep::load(&p, &["M", "N", "K"]).unwrap();
    let e = s.enumerate(&[("M".into(), 17), ("N".into(), 64), ("K".into(), 64)], 2, &limits()).unwrap();
    assert!(!e.kept.is_empty());
    assert_eq!(DeviceLimits::for_arch("sm_90a").unwrap().max_smem, 232_448);
    assert!(DeviceLimits::for_arch("gpu").is_err());
}

/// A template declaring P0..P39, and a sweep over `n` of them with `k` values each.
fn wide(n: usize, k: usize, constraints: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sweeps")).unwrap();
    let macros: String = (0..40).map(|i| format!("#ifndef P{i}\n#define P{i} 1\n#endif\n")).collect();
    std::fs::write(dir.path().join("w.cu"), macros).unwrap();
    let vals: Vec<String> = (1..=k).map(|v| v.to_string()).collect();
    let params: Vec<String> = (0..n).map(|i| format!("P{i} = [{}]", vals.join(", "))).collect();
    let text = format!(
        "family = \"gemm\"\n[[variant]]\nname = \"w\"\nfile = \"w.cu\"\nparams = {{ {} }}\nconstraints = [{constraints}]\n",
        params.join(", ")
    );
    let p = dir.path().join("sweeps/w.toml");
    std::fs::write(&p, text).unwrap();
    (dir, p)
}

fn mnk() -> Vec<(String, i64)> {
    vec![("M".into(), 16), ("N".into(), 64), ("K".into(), 64)]
}

#[test]
fn error_line_is_the_expression_not_a_comment_that_quotes_it() {
    let text = GOOD.replace("[[variant]]", "# old: \"WARPZ <= 2\" was too strict\n[[variant]]");
    let err = load_error(&text.replace("\"WARPS <= 2\"", "\"WARPZ <= 2\""));
    assert!(err.contains("t.toml:14:"), "{err}");
    // The same for a derived value and for `when`, on lines of their own.
    let err = load_error(
        &GOOD.replace("derived = { WARPS = \"BM / WM\" }", "# \"BM / WX\"\nderived = { WARPS = \"BM / WX\" }"),
    );
    assert!(err.contains("t.toml:11:") && err.contains("WX"), "{err}");
}

#[test]
fn deep_or_long_expressions_in_a_sweep_are_errors_with_the_line() {
    for bad in [format!("{}1{} == 1", "(".repeat(50_000), ")".repeat(50_000)), format!("{}1 > 0", "-".repeat(100_000))]
    {
        let (_d, p) = setup(&GOOD.replace("\"BM % WM == 0\"", &format!("\"{bad}\"")));
        let err = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || format!("{:#}", Sweep::load(&p, &["M", "N", "K"]).unwrap_err()))
            .unwrap()
            .join()
            .unwrap();
        assert!(err.contains("t.toml:12:") && err.contains("the limit is 4096"), "{err}");
    }
}

#[test]
fn overflow_while_enumerating_is_an_error_naming_line_and_point() {
    let (_d, p) = setup(&GOOD.replace("WARPS = \"BM / WM\"", "WARPS = \"BM * 4611686018427387904\""));
    let s = Sweep::load(&p, &["M", "N", "K"]).unwrap();
    let err = format!("{:#}", s.enumerate(&mnk(), 2, &limits()).unwrap_err());
    assert!(err.contains("t.toml:10:") && err.contains("overflows") && err.contains("BM=32,BN=32,WM=16"), "{err}");
    let (_d, p) = setup(&GOOD.replace("\"WARPS <= 2\"", "\"ceil_div(-9223372036854775808, WM - 17) > 0\""));
    let s = Sweep::load(&p, &["M", "N", "K"]).unwrap();
    let err = format!("{:#}", s.enumerate(&mnk(), 2, &limits()).unwrap_err());
    assert!(err.contains("overflows"), "{err}");
}

#[test]
fn space_of_2_pow_64_is_sampled_without_being_built() {
    let (_d, p) = wide(16, 16, "\"P0 + P1 <= 20\"");
    let s = Sweep::load(&p, &["M", "N", "K"]).unwrap();
    assert_eq!(s.variants[0].size(), 1u128 << 64);
    let env = s.env(&mnk(), 2, &limits()).unwrap();
    let sel = crate::tune::strategy::choose(&s, &env, Strategy::Random, 100, 5).unwrap();
    assert_eq!(sel.chosen.len(), 100);
    assert!(sel.chosen.iter().all(|c| c.params["P0"] + c.params["P1"] <= 20));
    let distinct: std::collections::BTreeSet<_> = sel.chosen.iter().collect();
    assert_eq!(distinct.len(), 100);
    // Structural bound on the work and memory: only the examined points were touched.
    assert!(sel.sampled && sel.examined < 1000, "{}", sel.examined);
    assert_eq!(sel.total, 1u128 << 64);
    let rejected: u128 = sel.dropped.iter().map(|(_, n)| n).sum();
    assert_eq!(rejected + 100, sel.examined);
    let again = crate::tune::strategy::choose(&s, &env, Strategy::Random, 100, 5).unwrap();
    assert_eq!(again.chosen, sel.chosen);
    // A grid over it refuses with the size and what to run instead ...
    let err = format!("{:#}", crate::tune::strategy::choose(&s, &env, Strategy::Grid, 0, 0).unwrap_err());
    assert!(err.contains("18446744073709551616 points") && err.contains("--strategy random --budget"), "{err}");
    let err = format!("{:#}", s.enumerate(&mnk(), 2, &limits()).unwrap_err());
    assert!(err.contains("18446744073709551616 points"), "{err}");
    // ... and with a budget takes one valid point per stride.
    let g = crate::tune::strategy::choose(&s, &env, Strategy::Grid, 8, 0).unwrap();
    assert_eq!(g.chosen.len(), 8);
    assert_eq!(s.variants[0].point((1u128 << 64) - 1).unwrap(), vec![16; 16]);
    assert_eq!(s.variants[0].point(1u128 << 64), None);
}

#[test]
fn sampling_a_space_where_nothing_is_valid_stops_and_says_so() {
    let (_d, p) = wide(10, 10, "\"P0 > 99\"");
    let s = Sweep::load(&p, &["M", "N", "K"]).unwrap();
    let env = s.env(&mnk(), 2, &limits()).unwrap();
    let sel = crate::tune::strategy::choose(&s, &env, Strategy::Random, 10, 1).unwrap();
    assert!(sel.chosen.is_empty());
    assert_eq!(sel.examined, 100_000);
    let note = sel.note.unwrap();
    assert!(note.contains("examined 100000 of 10000000000") && note.contains("found only 0"), "{note}");
}

#[test]
fn space_larger_than_2_pow_128_is_an_error_at_load() {
    let (_d, p) = wide(33, 16, "");
    let err = format!("{:#}", Sweep::load(&p, &["M", "N", "K"]).unwrap_err());
    assert!(err.contains("w.toml:2:") && err.contains("more than 2^128 points"), "{err}");
}

#[test]
fn exhaustive_choice_matches_selecting_from_the_enumerated_list() {
    let (_d, p) = setup(GOOD);
    let s = Sweep::load(&p, &["M", "N", "K"]).unwrap();
    let e = s.enumerate(&mnk(), 2, &limits()).unwrap();
    let env = s.env(&mnk(), 2, &limits()).unwrap();
    for (st, budget, seed) in
        [(Strategy::Grid, 0, 0), (Strategy::Grid, 4, 0), (Strategy::Random, 5, 3), (Strategy::Random, 0, 9)]
    {
        let sel = crate::tune::strategy::choose(&s, &env, st, budget, seed).unwrap();
        assert_eq!(sel.chosen, crate::tune::strategy::select(&e.kept, st, budget, seed));
        assert!(!sel.sampled && sel.examined == 18 && sel.note.is_none());
    }
    let v = &s.variants[0];
    let point = v.point(0).unwrap();
    assert_eq!(v.candidate(&point), e.kept[0]);
    assert!(v.is_valid(&s.path, &point, &env).unwrap());
}

#[test]
fn keep_variants_narrows_and_names_the_unknown() {
    let two = format!("{GOOD}{}", GOOD.split("[[variant]]").nth(1).map(|v| format!("[[variant]]{v}")).unwrap())
        .replacen("name = \"k\"", "name = \"k2\"", 2)
        .replacen("name = \"k2\"", "name = \"k\"", 1);
    let (_d, p) = setup(&two);
    let mut s = Sweep::load(&p, &["M", "N", "K"]).unwrap();
    assert_eq!(s.variants.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["k", "k2"]);
    s.keep_variants(&[]).unwrap();
    assert_eq!(s.variants.len(), 2, "no names keeps every variant");
    let err = format!("{:#}", s.keep_variants(&["k3".into()]).unwrap_err());
    assert!(err.contains("k3") && err.contains("k, k2"), "{err}");
    s.keep_variants(&["k2".into()]).unwrap();
    assert_eq!(s.variants.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["k2"]);
}
