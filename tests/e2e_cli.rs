//! `kernlab e2e` on bad input (no GPU needed: arguments are checked before the GPU opens).

use std::process::Command;

/// Runs `kernlab e2e` with `args` and checks that it fails with every one of `needles` in
/// its error output.
fn assert_refused(args: &[&str], needles: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_kernlab")).arg("e2e").args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "e2e {args:?} succeeded");
    assert!(needles.iter().all(|n| err.contains(n)), "e2e {args:?}: {err}");
}

#[test]
fn missing_model_file_is_a_clear_error() {
    assert_refused(&["--model", "/no/such/model.gguf"], &["does not exist"]);
}

#[test]
fn prompt_longer_than_the_context_is_a_clear_error() {
    assert_refused(&["--preset", "tiny", "--prompt-len", "250", "--gen-len", "10"], &["context", "260"]);
}

#[test]
fn hf_reference_without_model_is_refused() {
    assert_refused(&["--hf-reference", "ref.json"], &["--model"]);
}

#[test]
fn quant_weights_with_a_bf16_check_are_refused() {
    assert_refused(&["--preset", "tiny", "--weights", "int4", "--check-cpu"], &["--weights int4", "--validate"]);
    assert_refused(&["--preset", "tiny", "--weights", "int8", "--check-cpu"], &["--weights int8", "--validate"]);
    assert_refused(&["--weights", "int2"], &["int2", "bf16", "int4", "int8"]);
}
