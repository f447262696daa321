//! Seeded fuzzing of sweep expressions and sweep files on stable Rust (runs in CI).
//!
//! - expressions from a typed grammar, checked against a reference evaluator in i128
//!   (every overflow, division by zero and short-circuit must agree);
//! - token soup, deep nesting and long chains around the limits, huge literals;
//! - mutations of every expression in the project's sweeps/*.toml;
//! - generated and mutated sweep files (broken TOML, unknown names, empty and huge spaces)
//!   through `Sweep::parse`, every strategy and `Sweep::enumerate`.
//!
//! Every case runs under `catch_unwind`; the test fails on any panic or disagreement and
//! prints the case. Bounded time is structural (length, depth and examine limits); the
//! slowest case is printed, not asserted.

use kernlab::tune::space::expr::{compile, Type, MAX_DEPTH, MAX_LEN};
use kernlab::tune::space::{DeviceLimits, Strategy, Sweep};
use kernlab::tune::strategy;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

const VARS: &[&str] = &["V0", "V1", "V2", "V3"];
const INTERESTING: &[i64] = &[0, 1, -1, 2, 3, 7, 16, 63, 64, 1 << 31, i64::MAX, i64::MIN, i64::MAX - 1, i64::MIN + 1];

/// Runs cases, catching panics; remembers the first failure and the slowest case.
#[derive(Default)]
struct Harness {
    cases: u64,
    panics: u64,
    failures: Vec<String>,
    slowest: (Duration, String),
}

impl Harness {
    fn run(&mut self, label: impl Fn() -> String, f: impl FnOnce() -> Result<(), String>) {
        self.cases += 1;
        let t = Instant::now();
        let r = catch_unwind(AssertUnwindSafe(f));
        let dt = t.elapsed();
        if dt > self.slowest.0 {
            self.slowest = (dt, label().chars().take(120).collect());
        }
        match r {
            Ok(Ok(())) => {}
            Ok(Err(why)) if self.failures.len() < 5 => self.failures.push(format!("{why}\n  case: {}", label())),
            Ok(Err(_)) => {}
            Err(_) => {
                self.panics += 1;
                if self.failures.len() < 5 {
                    self.failures.push(format!("PANIC\n  case: {}", label()));
                }
            }
        }
    }

    fn finish(self, what: &str) {
        println!(
            "{what}: {} cases, {} panics, {} failures, slowest {:?} ({})",
            self.cases,
            self.panics,
            self.failures.len(),
            self.slowest.0,
            self.slowest.1
        );
        assert!(self.failures.is_empty() && self.panics == 0, "{what}:\n{}", self.failures.join("\n"));
    }
}

// ---- Typed expression generator and its reference semantics ----

#[derive(Debug, Clone)]
enum E {
    /// A literal's magnitude (2^63 is only valid right under a minus sign).
    Lit(u64),
    Var(usize),
    Bool(bool),
    Neg(Box<E>),
    Not(Box<E>),
    Bin(&'static str, Box<E>, Box<E>),
    Call(&'static str, Box<E>, Box<E>),
}

fn level(op: &str) -> u8 {
    match op {
        "||" => 1,
        "&&" => 2,
        "==" | "!=" => 3,
        "<" | "<=" | ">" | ">=" => 4,
        "+" | "-" => 5,
        _ => 6,
    }
}

fn gen_int(rng: &mut StdRng, depth: u32) -> E {
    if depth == 0 || rng.random_bool(0.25) {
        return match rng.random_range(0..10) {
            0..=3 => E::Var(rng.random_range(0..VARS.len())),
            4 => E::Lit(INTERESTING[rng.random_range(0..INTERESTING.len())].unsigned_abs()),
            5 => E::Lit(1 << 63),
            6 => E::Lit(rng.random()),
            _ => E::Lit(rng.random_range(0..100)),
        };
    }
    let d = depth - 1;
    match rng.random_range(0..10) {
        0 => E::Neg(Box::new(gen_int(rng, d))),
        1 | 2 => {
            let f = ["min", "max", "ceil_div"][rng.random_range(0..3)];
            E::Call(f, Box::new(gen_int(rng, d)), Box::new(gen_int(rng, d)))
        }
        _ => {
            let op = ["+", "-", "*", "/", "%"][rng.random_range(0..5)];
            E::Bin(op, Box::new(gen_int(rng, d)), Box::new(gen_int(rng, d)))
        }
    }
}

fn gen_bool(rng: &mut StdRng, depth: u32) -> E {
    if depth == 0 || rng.random_bool(0.1) {
        return E::Bool(rng.random());
    }
    let d = depth - 1;
    match rng.random_range(0..10) {
        0 => E::Not(Box::new(gen_bool(rng, d))),
        1..=3 => {
            let op = ["&&", "||"][rng.random_range(0..2)];
            E::Bin(op, Box::new(gen_bool(rng, d)), Box::new(gen_bool(rng, d)))
        }
        4 => E::Bin(["==", "!="][rng.random_range(0..2)], Box::new(gen_bool(rng, d)), Box::new(gen_bool(rng, d))),
        _ => {
            let op = ["==", "!=", "<", "<=", ">", ">="][rng.random_range(0..6)];
            E::Bin(op, Box::new(gen_int(rng, d)), Box::new(gen_int(rng, d)))
        }
    }
}

/// Text with the fewest parentheses the precedence needs (sometimes more), and its level.
fn render(e: &E, rng: &mut StdRng, names: &[&str]) -> (String, u8) {
    let wrap = |(s, l): (String, u8), need: u8, rng: &mut StdRng| {
        if l < need || (l < 8 && rng.random_bool(0.05)) {
            format!("({s})")
        } else {
            s
        }
    };
    match e {
        E::Lit(v) => (v.to_string(), 8),
        E::Var(i) => (names[*i].to_string(), 8),
        E::Bool(b) => (b.to_string(), 8),
        E::Neg(x) => (format!("-{}", wrap(render(x, rng, names), 7, rng)), 7),
        E::Not(x) => (format!("!{}", wrap(render(x, rng, names), 7, rng)), 7),
        E::Call(f, a, b) => (format!("{f}({}, {})", render(a, rng, names).0, render(b, rng, names).0), 8),
        E::Bin(op, a, b) => {
            let l = level(op);
            let sp = if rng.random_bool(0.5) { " " } else { "" };
            (
                format!(
                    "{}{sp}{op}{sp}{}",
                    wrap(render(a, rng, names), l, rng),
                    wrap(render(b, rng, names), l + 1, rng)
                ),
                l,
            )
        }
    }
}

#[derive(Debug, PartialEq)]
enum Outcome {
    CompileError,
    EvalError,
    Value(i64),
}

/// The reference: i128 arithmetic, every intermediate checked against the i64 range.
fn reference(e: &E, vars: &[i64]) -> Outcome {
    fn lits_ok(e: &E, under_neg: bool) -> bool {
        match e {
            E::Lit(v) => *v < 1 << 63 || (*v == 1 << 63 && under_neg),
            E::Var(_) | E::Bool(_) => true,
            E::Neg(x) => lits_ok(x, true),
            E::Not(x) => lits_ok(x, false),
            E::Bin(_, a, b) | E::Call(_, a, b) => lits_ok(a, false) && lits_ok(b, false),
        }
    }
    fn ev(e: &E, vars: &[i64]) -> Option<i128> {
        let fit = |v: i128| (i64::MIN as i128..=i64::MAX as i128).contains(&v).then_some(v);
        match e {
            E::Lit(v) => Some(*v as i128),
            E::Var(i) => Some(vars[*i] as i128),
            E::Bool(b) => Some(*b as i128),
            E::Neg(x) => fit(-ev(x, vars)?),
            E::Not(x) => Some((ev(x, vars)? == 0) as i128),
            E::Bin("&&", a, b) => Some(if ev(a, vars)? == 0 { 0 } else { ev(b, vars)? }),
            E::Bin("||", a, b) => Some(if ev(a, vars)? != 0 { 1 } else { ev(b, vars)? }),
            E::Bin(op, a, b) | E::Call(op, a, b) => {
                let (x, y) = (ev(a, vars)?, ev(b, vars)?);
                match *op {
                    "+" => fit(x + y),
                    "-" => fit(x - y),
                    "*" => fit(x * y),
                    "/" | "%" | "ceil_div" if y == 0 => None,
                    "/" => fit(x / y),
                    "%" if x == i64::MIN as i128 && y == -1 => None,
                    "%" => fit(x % y),
                    "ceil_div" => fit(x / y + ((x % y != 0) && ((x % y > 0) == (y > 0))) as i128),
                    "min" => Some(x.min(y)),
                    "max" => Some(x.max(y)),
                    "==" => Some((x == y) as i128),
                    "!=" => Some((x != y) as i128),
                    "<" => Some((x < y) as i128),
                    "<=" => Some((x <= y) as i128),
                    ">" => Some((x > y) as i128),
                    ">=" => Some((x >= y) as i128),
                    _ => unreachable!(),
                }
            }
        }
    }
    if !lits_ok(e, false) {
        return Outcome::CompileError;
    }
    // A folded `-<literal>` never overflows by itself; the reference's negation of the
    // magnitude is the same value.
    match ev(e, vars) {
        Some(v) => Outcome::Value(v as i64),
        None => Outcome::EvalError,
    }
}

fn values(rng: &mut StdRng) -> Vec<i64> {
    (0..VARS.len())
        .map(|_| {
            if rng.random_bool(0.5) {
                INTERESTING[rng.random_range(0..INTERESTING.len())]
            } else {
                rng.random_range(-300..300)
            }
        })
        .collect()
}

#[test]
fn expressions_agree_with_the_i128_reference() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut h = Harness::default();
    for i in 0..400_000 {
        let depth = rng.random_range(0..=6);
        let e = if i % 3 == 0 { gen_bool(&mut rng, depth) } else { gen_int(&mut rng, depth) };
        let text = render(&e, &mut rng, VARS).0;
        let vars = values(&mut rng);
        let want = reference(&e, &vars);
        let label = || format!("{text:?} with {vars:?}");
        h.run(label, || {
            let got = match compile(&text, VARS) {
                Err(_) if text.len() > MAX_LEN => return Ok(()),
                Err(_) => Outcome::CompileError,
                Ok(p) => {
                    let want_ty = if i % 3 == 0 { Type::Bool } else { Type::Int };
                    if p.ty() != want_ty {
                        return Err(format!("type {:?}, expected {want_ty:?}", p.ty()));
                    }
                    p.eval(&vars).map(Outcome::Value).unwrap_or(Outcome::EvalError)
                }
            };
            if got == want {
                Ok(())
            } else {
                Err(format!("got {got:?}, reference {want:?}"))
            }
        });
    }
    h.finish("typed expressions vs reference");
}

const SOUP: &[&str] = &[
    "(",
    ")",
    "+",
    "-",
    "*",
    "/",
    "%",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "&&",
    "||",
    "!",
    ",",
    "min",
    "max",
    "ceil_div",
    "true",
    "false",
    "V0",
    "V1",
    "X",
    "0",
    "1",
    "64",
    "9223372036854775807",
    "9223372036854775808",
    "99999999999999999999999",
    " ",
    "=",
    "&",
    "|",
    "^",
    "2.5",
    "1e3",
    "é",
    "\"",
    "#",
    "\n",
    "min(",
    "ceil_div(V0,",
    "pow(",
    "_",
    "V0V1",
    "0x10",
];

fn soup(rng: &mut StdRng) -> String {
    let n = rng.random_range(0..40);
    let mut s: String = (0..n).map(|_| SOUP[rng.random_range(0..SOUP.len())]).collect();
    if rng.random_bool(0.02) {
        // Around the limits: deep nesting, long chains, long sums.
        let k = [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 2000, 50_000][rng.random_range(0..5)];
        let part = ["(", "-", "!", "min(1,", "V0+", "1*"][rng.random_range(0..6)];
        s = format!("{}{s}{}", part.repeat(k), ")".repeat(rng.random_range(0..=k)));
    }
    s
}

#[test]
fn token_soup_and_limits_never_panic() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut h = Harness::default();
    for _ in 0..200_000 {
        let text = soup(&mut rng);
        let vars = values(&mut rng);
        h.run(
            || format!("{text:?}"),
            || {
                if let Ok(p) = compile(&text, VARS) {
                    let _ = p.eval(&vars);
                    if text.len() > MAX_LEN {
                        return Err("accepted an expression over the length limit".into());
                    }
                }
                Ok(())
            },
        );
    }
    h.finish("token soup");
}

/// Every expression of the project's sweep files, and every identifier they use.
fn project_expressions() -> (Vec<String>, Vec<String>) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sweeps");
    let mut exprs = Vec::new();
    // The sweep files, and those one folder down (sweeps/big/).
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            files.push(p);
        }
    }
    for f in files.into_iter().filter(|p| p.extension().is_some_and(|x| x == "toml")) {
        let text = std::fs::read_to_string(&f).unwrap();
        let v: toml::Value = toml::from_str(&text).unwrap();
        for var in v.get("variant").and_then(|x| x.as_array()).into_iter().flatten() {
            let strs = var.get("derived").and_then(|d| d.as_table()).into_iter().flat_map(|t| t.values());
            let cons = var.get("constraints").and_then(|c| c.as_array()).into_iter().flatten();
            for s in strs.chain(cons).chain(var.get("when")) {
                exprs.push(s.as_str().unwrap().to_string());
            }
        }
    }
    let mut names: Vec<String> = exprs
        .iter()
        .flat_map(|e| e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map(String::from).collect::<Vec<_>>())
        .filter(|w| w.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_'))
        .collect();
    names.sort();
    names.dedup();
    (exprs, names)
}

fn mutate(rng: &mut StdRng, s: &str, pieces: &[&str]) -> String {
    let mut c: Vec<char> = s.chars().collect();
    for _ in 0..rng.random_range(1..=3) {
        let at = rng.random_range(0..=c.len());
        match rng.random_range(0..4) {
            0 if !c.is_empty() => {
                let end = (at + rng.random_range(1..4)).min(c.len());
                c.drain(at.min(end)..end);
            }
            1 => {
                let p = pieces[rng.random_range(0..pieces.len())];
                c.splice(at..at, p.chars());
            }
            2 if !c.is_empty() => {
                let a = rng.random_range(0..c.len());
                let b = rng.random_range(0..c.len());
                c.swap(a, b);
            }
            _ => {
                let end = (at + rng.random_range(0..20)).min(c.len());
                let dup: Vec<char> = c[at..end].to_vec();
                c.splice(at..at, dup);
            }
        }
    }
    c.into_iter().collect()
}

#[test]
fn mutated_project_expressions_never_panic() {
    let (exprs, names) = project_expressions();
    assert!(exprs.len() > 50, "found only {} expressions", exprs.len());
    let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let mut rng = StdRng::seed_from_u64(11);
    let mut h = Harness::default();
    // Every original compiles against the union of names (they do in their own files).
    for e in &exprs {
        h.run(|| e.clone(), || compile(e, &names).map(|_| ()).map_err(|err| err.to_string()));
    }
    for _ in 0..100_000 {
        let base = &exprs[rng.random_range(0..exprs.len())];
        let text = mutate(&mut rng, base, SOUP);
        let vals: Vec<i64> = (0..names.len()).map(|_| rng.random_range(-2..300)).collect();
        h.run(
            || format!("{text:?}"),
            || {
                if let Ok(p) = compile(&text, &names) {
                    let _ = p.eval(&vals);
                }
                Ok(())
            },
        );
    }
    h.finish("mutated project expressions");
}

// ---- Sweep files ----

/// A depth-3 expression whose literals all fit (most of the time), so that most generated
/// files get past parsing to the strategies; the literal errors have their own tests above.
fn valid_lits(rng: &mut StdRng, gen: fn(&mut StdRng, u32) -> E) -> E {
    let mut e = gen(rng, 3);
    for _ in 0..10 {
        if reference(&e, &[0; 4]) != Outcome::CompileError {
            break;
        }
        e = gen(rng, 3);
    }
    e
}

fn gen_sweep(rng: &mut StdRng) -> String {
    let mut s = String::from("family = \"gemm\"\n");
    if rng.random_bool(0.3) {
        s += &format!("strategy = \"{}\"\n", ["grid", "random", "random", "bogus"][rng.random_range(0..4)]);
    }
    if rng.random_bool(0.3) {
        s += &format!("budget = {}\n", rng.random_range(0..20));
    }
    if rng.random_bool(0.1) {
        s += &format!("[tolerance]\nbf16 = {}\n", ["0.02", "-1", "nan", "1e400", "0"][rng.random_range(0..5)]);
    }
    // Mostly well-formed files (so the strategies and the enumeration get exercised), with
    // each way of being empty or wrong kept at a few percent.
    let n_variants = if rng.random_bool(0.03) { 0 } else { rng.random_range(1..=3) };
    for v in 0..n_variants {
        s += "\n# a comment quoting \"P0 <= 64\" and \"M > 16\"\n[[variant]]\n";
        s += &format!("name = \"v{}\"\n", if rng.random_bool(0.05) { 0 } else { v });
        s += &format!("file = \"{}\"\n", if rng.random_bool(0.03) { "missing.cu" } else { "k.cu" });
        let dims = ["M", "N", "K", "max_smem", "cc", "dtype_bytes"];
        if rng.random_bool(0.3) {
            s += &format!("when = \"{}\"\n", render(&gen_bool(rng, 2), rng, &dims).0);
        }
        if rng.random_bool(0.1) {
            s += &format!("min_cc = {}\n", [80, 90, 100][rng.random_range(0..3)]);
        }
        let n = if rng.random_bool(0.03) { 0 } else { rng.random_range(1..=6) };
        let params: Vec<String> = (0..n)
            .map(|i| {
                let k = if rng.random_bool(0.03) {
                    40
                } else if rng.random_bool(0.02) {
                    0
                } else {
                    rng.random_range(1..=4)
                };
                // Distinct values (powers of two, then odd multiples), one repeat now and then.
                let mut vals: Vec<String> =
                    (0..k).map(|j| (1i64 << (j % 12)) * (1 + 2 * (j / 12))).map(|x| x.to_string()).collect();
                if k > 0 && rng.random_bool(0.005) {
                    vals.push(vals[0].clone());
                }
                if rng.random_bool(0.02) {
                    vals.push(
                        ["99999999999999999999", "-9223372036854775808", "1.5", "\"x\""][rng.random_range(0..4)].into(),
                    );
                }
                let name = if rng.random_bool(0.005) { "Q9".to_string() } else { format!("P{i}") };
                format!("{name} = [{}]", vals.join(", "))
            })
            .collect();
        s += &format!("params = {{ {} }}\n", params.join(", "));
        let mut names: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
        names.extend((0..n).map(|i| format!("P{i}")));
        let nd = rng.random_range(0..=2);
        let mut derived = Vec::new();
        for d in 0..nd {
            let refs: Vec<&str> = names.iter().map(|x| x.as_str()).collect();
            let pick: Vec<&str> = (0..4).map(|_| refs[rng.random_range(0..refs.len())]).collect();
            derived.push(format!("D{d} = \"{}\"", render(&valid_lits(rng, gen_int), rng, &pick).0));
            names.push(format!("D{d}"));
        }
        if !derived.is_empty() {
            s += &format!("derived = {{ {} }}\n", derived.join(", "));
        }
        let refs: Vec<&str> = names.iter().map(|x| x.as_str()).collect();
        let cons: Vec<String> = (0..rng.random_range(0..=3))
            .map(|_| {
                let pick: Vec<&str> = (0..4).map(|_| refs[rng.random_range(0..refs.len())]).collect();
                let text =
                    if rng.random_bool(0.1) { soup(rng) } else { render(&valid_lits(rng, gen_bool), rng, &pick).0 };
                format!("\"{}\"", text.replace('\\', "").replace('"', "").replace('\n', " "))
            })
            .collect();
        s += &format!("constraints = [{}]\n", cons.join(", "));
    }
    if rng.random_bool(0.3) {
        s = mutate(rng, &s, &["[", "]", "{", "}", "=", "\"", "#", ",", "\n", "[[variant]]\n", "P0", "1e99", "\\u0000"]);
    }
    s
}

#[test]
fn generated_and_mutated_sweep_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let macros: String = (0..6).map(|i| format!("#ifndef P{i}\n#define P{i} 1\n#endif\n")).collect();
    std::fs::write(dir.path().join("k.cu"), macros).unwrap();
    let path = dir.path().join("f.toml");
    let limits = [DeviceLimits::for_arch("sm_90a").unwrap(), DeviceLimits::for_arch("sm_80").unwrap()];
    let mut rng = StdRng::seed_from_u64(3);
    let mut h = Harness::default();
    let (mut parsed, mut chosen) = (0u64, 0u64);
    for _ in 0..40_000 {
        let text = gen_sweep(&mut rng);
        let shape: Vec<(String, i64)> =
            ["M", "N", "K"].iter().map(|d| (d.to_string(), rng.random_range(1..5000))).collect();
        let l = limits[rng.random_range(0..2)];
        let budget = rng.random_range(0..12);
        let seed = rng.random();
        h.run(
            || text.clone(),
            || {
                let Ok(s) = Sweep::parse(&path, &text, &["M", "N", "K"]) else { return Ok(()) };
                parsed += 1;
                let Ok(env) = s.env(&shape, 2, &l) else { return Err("no env for a full shape".into()) };
                for st in [Strategy::Grid, Strategy::Random] {
                    if let Ok(sel) = strategy::choose(&s, &env, st, budget, seed) {
                        chosen += sel.chosen.len() as u64;
                        if budget > 0 && sel.chosen.len() > budget {
                            return Err(format!("{} chosen, budget {budget}", sel.chosen.len()));
                        }
                    }
                }
                let _ = s.enumerate(&shape, 2, &l);
                Ok(())
            },
        );
    }
    println!("sweep files: {parsed} parsed, {chosen} candidates chosen");
    assert!(parsed > 1000, "the generator makes too few valid files: {parsed}");
    h.finish("sweep files");
}
