//! The command line on bad input and without a GPU: clear errors, non-zero exits, no panics.

use std::process::Command;

fn kernlab(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kernlab"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("KERNLAB_REPORTS", std::env::temp_dir().join("kernlab-cli-test-reports"))
        // Never install wheels from a test.
        .env("KERNLAB_AUTO_INSTALL", "0")
        .output()
        .expect("run kernlab");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("panicked"), "kernlab panicked:\n{text}");
    (out.status.success(), text)
}

#[test]
fn unknown_family_lists_the_known_ones() {
    let (ok, text) = kernlab(&["sweep", "nosuchfamily", "--dry-run", "--no-compile"]);
    assert!(!ok);
    assert!(text.contains("gemm"), "{text}");
}

#[test]
fn nonsense_shapes_are_rejected_with_the_expected_form() {
    for bad in ["12x12", "0x4096x4096", "ax4096x4096", "1x4096x4097"] {
        let (ok, text) = kernlab(&["sweep", "gemm", "--dry-run", "--no-compile", "--shape", bad]);
        assert!(!ok, "{bad} was accepted");
        assert!(text.starts_with("error:") || text.contains("error:"), "{text}");
    }
    let (_, text) = kernlab(&["sweep", "gemm", "--dry-run", "--no-compile", "--shape", "1x4096x4097"]);
    assert!(text.contains("multiple of 8"), "{text}");
}

#[test]
fn malformed_sweep_file_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, "family = \"gemm\"\n[[variant]\nname = \"x\"\n").unwrap();
    let (ok, text) = kernlab(&["sweep", "gemm", "--dry-run", "--file", p.to_str().unwrap()]);
    assert!(!ok);
    assert!(text.contains("bad.toml") && text.contains("line 2"), "{text}");
}

#[test]
fn empty_space_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.toml");
    let cu = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels/gemm/mma_multistage.cu");
    std::fs::write(
        &p,
        format!("family = \"gemm\"\nshapes = [\"64x64x64\"]\n[[variant]]\nname = \"mma_multistage\"\nfile = \"{}\"\nparams = {{ BM = [] }}\n", cu.display()),
    )
    .unwrap();
    let (ok, text) = kernlab(&["sweep", "gemm", "--dry-run", "--file", p.to_str().unwrap()]);
    assert!(!ok);
    assert!(text.contains("no values"), "{text}");
}

#[test]
fn dry_run_enumerates_without_a_gpu() {
    let (ok, text) = kernlab(&["sweep", "gemm", "--dry-run", "--no-compile"]);
    assert!(ok, "{text}");
    assert!(text.contains("2048x28672x4096") && text.contains("distinct kernels"), "{text}");
}

#[test]
fn dry_run_compiles_for_a_chosen_arch() {
    let (ok, text) = kernlab(&["sweep", "gemm", "--dry-run", "--arch", "sm_86", "--shape", "1x4096x4096"]);
    assert!(ok, "{text}");
    assert!(text.contains("0 failed"), "{text}");
    let (ok, text) = kernlab(&["sweep", "gemm", "--dry-run", "--arch", "hopper"]);
    assert!(!ok && text.contains("sm_90a"), "{text}");
}

#[test]
fn gpu_commands_without_a_gpu_explain_what_is_missing() {
    // On CI there is no driver; on a GPU machine this passes trivially.
    let has_driver = std::path::Path::new("/usr/lib/x86_64-linux-gnu/libcuda.so.1").exists()
        || std::path::Path::new("/usr/local/nvidia/lib64/libcuda.so.1").exists();
    if has_driver {
        return;
    }
    for cmd in [&["devices"][..], &["selftest"][..], &["sweep", "gemm", "--shape", "1x64x64"][..]] {
        let (ok, text) = kernlab(cmd);
        assert!(!ok, "{cmd:?} succeeded without a GPU");
        assert!(text.contains("no NVIDIA driver found") && text.contains("--dry-run"), "{cmd:?}: {text}");
    }
}

/// A copy of sweeps/gemm.toml with `edit` applied, in a temporary folder (its template
/// paths still resolve from the project root). Returns the folder, the file and its text.
fn edited_gemm_sweep(edit: impl Fn(&str) -> String) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let text =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sweeps/gemm.toml")).unwrap();
    let text = edit(&text);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("gemm.toml");
    std::fs::write(&p, &text).unwrap();
    (dir, p, text)
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn a_zero_watchdog_timeout_is_rejected() {
    let (ok, text) = kernlab(&["sweep", "gemm", "--dry-run", "--no-compile", "--timeout", "0s"]);
    assert!(!ok, "--timeout 0s was accepted");
    assert!(text.contains("--timeout") && text.contains("more than zero"), "{text}");
}

#[test]
fn an_unknown_variant_fails_a_dry_run_without_compiling() {
    let (_dir, p, text) = edited_gemm_sweep(|t| t.replacen("name = \"mma_skinny\"", "name = \"mma_nosuch\"", 1));
    let (ok, out) = kernlab(&["sweep", "gemm", "--dry-run", "--no-compile", "--file", p.to_str().unwrap()]);
    assert!(!ok, "an unknown variant passed:\n{out}");
    let at = format!("{}:{}", p.display(), line_of(&text, "mma_nosuch"));
    assert!(out.contains(&at) && out.contains("no variant \"mma_nosuch\""), "{out}");
}

#[test]
fn the_family_argument_must_match_the_sweep_file() {
    let (ok, text) = kernlab(&["sweep", "gemm", "--dry-run", "--no-compile", "--file", "sweeps/softmax.toml"]);
    assert!(!ok, "a softmax file ran as gemm:\n{text}");
    assert!(text.contains("family \"softmax\", not \"gemm\""), "{text}");
}

#[test]
fn shape_and_dtype_errors_name_the_flag() {
    let (ok, text) = kernlab(&["sweep", "gemm", "--dry-run", "--no-compile", "--shape", "16x40x"]);
    assert!(!ok && text.contains("--shape 16x40x: bad shape"), "{text}");
    let (ok, text) = kernlab(&["sweep", "gemm", "--dry-run", "--no-compile", "--shape", "1x4096x4097"]);
    assert!(!ok && text.contains("--shape 1x4096x4097") && text.contains("multiple of 8"), "{text}");
    let (ok, text) = kernlab(&["sweep", "gemm", "--dry-run", "--no-compile", "--dtype", "int3"]);
    assert!(!ok && text.contains("--dtype int3: unknown dtype"), "{text}");
}

#[test]
fn shape_and_dtype_errors_name_the_sweep_file_line() {
    let (_dir, p, text) = edited_gemm_sweep(|t| t.replacen("shapes = [", "shapes = [\n  \"16x40x\",", 1));
    let (ok, out) = kernlab(&["sweep", "gemm", "--dry-run", "--no-compile", "--file", p.to_str().unwrap()]);
    let at = format!("{}:{}: shape \"16x40x\"", p.display(), line_of(&text, "\"16x40x\""));
    assert!(!ok && out.contains(&at), "{out}\nwanted {at}");
    let (_dir, p, text) = edited_gemm_sweep(|t| t.replacen("dtypes = [\"bf16\"]", "dtypes = [\"bf16\", \"int3\"]", 1));
    let (ok, out) = kernlab(&["sweep", "gemm", "--dry-run", "--no-compile", "--file", p.to_str().unwrap()]);
    let at = format!("{}:{}: dtype \"int3\"", p.display(), line_of(&text, "\"int3\""));
    assert!(!ok && out.contains(&at), "{out}\nwanted {at}");
}

#[test]
fn a_prompt_length_near_the_limit_does_not_wrap_past_the_context_check() {
    let huge = u64::MAX.to_string();
    let (ok, text) = kernlab(&["e2e", "--preset", "tiny", "--prompt-len", &huge, "--gen-len", "1"]);
    assert!(!ok && text.contains("context"), "{text}");
}

#[test]
fn search_flags_are_checked_before_any_work() {
    let (ok, text) = kernlab(&["sweep", "gemm", "--dry-run", "--no-compile", "--strategy", "annealing"]);
    assert!(!ok && text.contains("grid, random, tpe, warm or evolve"), "{text}");
    let (ok, text) = kernlab(&["sweep", "gemm", "--dry-run", "--no-compile", "--stop-within", "150"]);
    assert!(!ok && text.contains("between 0 and 100"), "{text}");
    let (ok, text) = kernlab(&["sweep", "gemm", "--dry-run", "--no-compile", "--time-budget", "0s"]);
    assert!(!ok && text.contains("more than zero"), "{text}");
    let good = ["--strategy", "tpe", "--budget", "40", "--time-budget", "10m", "--stop-within", "10"];
    // Well-formed search flags are refused with --dry-run, which lists the whole space.
    let (ok, text) = kernlab(&[&["sweep", "gemm", "--dry-run", "--no-compile"][..], &good[..]].concat());
    assert!(!ok && text.contains("cannot be used with"), "{text}");
    let (_, help) = kernlab(&["sweep", "--help"]);
    assert!(help.contains("at most 300 valid candidates") && help.contains("warm otherwise"), "{help}");
}
