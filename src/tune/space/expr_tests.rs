//! Tests of the expression language: values, precedence, checked arithmetic, limits.

use super::*;

const NAMES: &[&str] = &["BM", "BN", "M"];
const VALUES: &[i64] = &[64, 32, 17];

fn eval(src: &str) -> Result<i64, String> {
    let p = compile(src, NAMES).map_err(|e| format!("compile: {e}"))?;
    p.eval(VALUES).map_err(|e| format!("eval: {e}"))
}

/// Runs `f` on a thread with a small stack: a recursion that grows with the input would
/// overflow it and abort the test binary.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new().stack_size(256 * 1024).spawn(f).unwrap().join().unwrap()
}

#[test]
fn values_precedence_and_short_circuit() {
    for (src, want) in [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 4 - 3", 3),
        ("BM / BN * 3", 6),
        ("-7 / 2", -3),
        ("-7 % 2", -1),
        ("ceil_div(M, 16)", 2),
        ("ceil_div(-7, 2)", -3),
        ("ceil_div(7, -2)", -3),
        ("ceil_div(9223372036854775807, 1)", i64::MAX),
        ("min(BM, BN) + max(1, -1)", 33),
        ("BM % BN == 0 && M > 16", 1),
        ("!(BM < BN) || 1 / 0 == 0", 1),
        ("BM < BN && 1 / 0 == 0", 0),
        ("- - -5", -5),
        ("!!true", 1),
        ("-9223372036854775808", i64::MIN),
        ("1 + 1 == 2 != false", 1),
    ] {
        assert_eq!(eval(src), Ok(want), "{src}");
    }
}

/// Each `(source, part)` fails in `stage` (`compile` or `eval`) with `part` in its message.
fn assert_errors(stage: &str, cases: &[(&str, &str)]) {
    for (src, part) in cases {
        let err = eval(src).unwrap_err();
        assert!(err.starts_with(&format!("{stage}:")) && err.contains(part), "{src}: {err}");
    }
}

#[test]
fn overflow_and_division_errors_name_the_subexpression() {
    let cases = &[
        ("9223372036854775807 + 1", "`9223372036854775807 + 1` overflows"),
        ("BM * 4611686018427387904", "`BM * 4611686018427387904` overflows"),
        ("4294967296 * 4294967296 > 0", "overflows"),
        ("ceil_div(-9223372036854775808, -1)", "overflows"),
        ("-9223372036854775808 / -1", "overflows"),
        ("-(-9223372036854775808)", "overflows"),
        ("-9223372036854775807 - 2", "overflows"),
        ("BM / (BN - 32)", "`BM / (BN - 32)` divides by zero"),
        ("BM % 0", "divides by zero"),
        ("ceil_div(BM, 0)", "divides by zero"),
    ];
    assert_errors("eval", cases);
}

#[test]
fn compile_errors_say_what_and_where() {
    let cases = &[
        ("BM + (N > 4)", "unknown name \"N\""),
        ("BM + (M > 4)", "`+` needs a number"),
        ("BM && 1", "`&&` needs a condition"),
        ("BM < BN < M", "`<` needs a number"),
        ("BM = 4", "comparison is `==`"),
        ("BM & 4", "logical and is `&&`"),
        ("BM ^ 2", "unexpected character '^'"),
        ("2.5 * BM", "whole decimal integers"),
        ("9223372036854775808", "does not fit"),
        ("99999999999999999999999 + 1", "does not fit"),
        ("pow(2, 3)", "unknown function \"pow\""),
        ("min(1)", "min takes two numbers"),
        ("(BM + 1", "is not closed"),
        ("BM BN", "unexpected `BN`"),
        ("", "ends where a value is expected"),
        ("BM +", "ends where a value is expected"),
    ];
    assert_errors("compile", cases);
}

#[test]
fn deep_nesting_is_an_error_without_recursing() {
    let deep = |n: usize| format!("{}1{}", "(".repeat(n), ")".repeat(n));
    let err = on_small_stack(move || compile(&deep(50_000), NAMES).unwrap_err());
    assert!(err.message.contains("100001 bytes long; the limit is 4096"), "{err}");
    let err = on_small_stack(move || compile(&deep(MAX_DEPTH + 1), NAMES).unwrap_err());
    assert!(err.message.contains("nest more than 64 deep"), "{err}");
    let calls = format!("{}1{}", "min(1, ".repeat(MAX_DEPTH + 1), ")".repeat(MAX_DEPTH + 1));
    assert!(compile(&calls, NAMES).unwrap_err().message.contains("nest more than"));
    let ok = on_small_stack(move || compile(&deep(MAX_DEPTH), NAMES).unwrap().eval(&[]).unwrap());
    assert_eq!(ok, 1);
}

#[test]
fn long_sums_and_unary_chains_are_linear_and_iterative() {
    let sum50k = vec!["1"; 50_000].join("+");
    assert!(compile(&sum50k, NAMES).unwrap_err().message.contains("the limit is 4096"));
    let minus100k = format!("{}1", "-".repeat(100_000));
    assert!(compile(&minus100k, NAMES).unwrap_err().message.contains("the limit is 4096"));
    // Near the longest accepted: 1300 terms, ~4000 signs, compiled and run on a small stack.
    let sum = vec!["BM"; 1300].join("+");
    assert_eq!(on_small_stack(move || compile(&sum, NAMES).unwrap().eval(VALUES)), Ok(83_200));
    let signs = format!("{}1", "-".repeat(MAX_LEN - 2));
    assert_eq!(on_small_stack(move || compile(&signs, NAMES).unwrap().eval(VALUES)), Ok(1));
    let nots = format!("{}true", "!".repeat(MAX_LEN - 5));
    assert_eq!(on_small_stack(move || compile(&nots, NAMES).unwrap().eval(VALUES)), Ok(0));
}

#[test]
fn types_and_variables_are_known_after_compiling() {
    let p = compile("BN * 2 <= M || BM == 64", NAMES).unwrap();
    assert_eq!(p.ty(), Type::Bool);
    assert_eq!(p.variables(), &[1, 2, 0]);
    assert_eq!(compile("ceil_div(M, BN)", NAMES).unwrap().ty(), Type::Int);
}
