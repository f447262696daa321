//! `kernlab e2e` on bad input (no GPU needed: arguments are checked before the GPU opens).

use std::process::Command;

fn e2e(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kernlab")).arg("e2e").args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn missing_model_file_is_a_clear_error() {
    let (ok, err) = e2e(&["--model", "/no/such/model.gguf"]);
    assert!(!ok);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn prompt_longer_than_the_context_is_a_clear_error() {
    let (ok, err) = e2e(&["--preset", "tiny", "--prompt-len", "250", "--gen-len", "10"]);
    assert!(!ok);
    assert!(err.contains("context") && err.contains("260"), "{err}");
}

#[test]
fn hf_reference_without_model_is_refused() {
    let (ok, err) = e2e(&["--hf-reference", "ref.json"]);
    assert!(!ok);
    assert!(err.contains("--model"), "{err}");
}

#[test]
fn int4_weights_with_a_bf16_check_are_refused() {
    let (ok, err) = e2e(&["--preset", "tiny", "--weights", "int4", "--check-cpu"]);
    assert!(!ok);
    assert!(err.contains("--weights int4") && err.contains("--validate"), "{err}");
    let (ok, err) = e2e(&["--weights", "int8"]);
    assert!(!ok);
    assert!(err.contains("int8") && err.contains("int4"), "{err}");
}
