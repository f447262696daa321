//! The command line as a user meets it: completions, comma lists, help and examples on
//! every flag, refused flags, --json, the offline roofline, and what the messages say when
//! there is no GPU or no CUDA toolkit. Runs the built binary; no GPU needed.

use clap::CommandFactory;
use std::path::Path;
use std::process::{Command, Output};

fn has_driver() -> bool {
    ["/usr/lib/x86_64-linux-gnu/libcuda.so.1", "/usr/local/nvidia/lib64/libcuda.so.1", "/usr/lib64/libcuda.so.1"]
        .iter()
        .any(|p| Path::new(p).exists())
}

fn run_in(reports: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kernlab"));
    c.args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("KERNLAB_REPORTS", reports)
        // Never install wheels from a test.
        .env("KERNLAB_AUTO_INSTALL", "0");
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().expect("running kernlab");
    assert!(!text(&o).contains("panicked"), "kernlab panicked:\n{}", text(&o));
    o
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn kernlab(args: &[&str]) -> Output {
    let tmp = std::env::temp_dir().join("kernlab-cli-flags-reports");
    run_in(&tmp, args, &[])
}

#[test]
fn completions_are_generated_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = kernlab(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", text(&o));
        let s = String::from_utf8_lossy(&o.stdout);
        for word in ["kernlab", "sweep", "roofline", "--dry-run"] {
            assert!(s.contains(word), "{shell} completion lacks {word}");
        }
    }
    let o = kernlab(&["completions", "tcsh"]);
    assert!(!o.status.success() && text(&o).contains("possible values"), "{}", text(&o));
}

/// The lines of a dry run that name a shape, i.e. what was planned.
fn planned(args: &[&str]) -> Vec<String> {
    let o = kernlab(args);
    assert!(o.status.success(), "{args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.contains("candidates,")).map(String::from).collect()
}

#[test]
fn comma_lists_equal_repeated_flags() {
    let base = ["sweep", "gemm", "--dry-run", "--no-compile"];
    let comma = planned(&[&base[..], &["--shape", "1x4096x4096,16x4096x4096", "--dtype", "bf16,fp16"]].concat());
    let repeated = planned(
        &[&base[..], &["--shape", "1x4096x4096", "--shape", "16x4096x4096", "--dtype", "bf16", "--dtype", "fp16"]]
            .concat(),
    );
    assert_eq!(comma.len(), 4, "{comma:?}");
    assert_eq!(comma, repeated);
    // Replay's strategies: a bad one in a comma list is named.
    let o = kernlab(&["replay", "docs/results/gemm-decode-grid-h200.csv", "--strategy", "tpe,bogus"]);
    assert!(!o.status.success() && text(&o).contains("bogus"), "{}", text(&o));
    // Every repeatable flag takes a comma list, except -D (a macro value may hold commas).
    let mut cmd = kernlab::cli::Cli::command();
    cmd.build();
    for sub in cmd.get_subcommands() {
        for arg in sub.get_arguments() {
            let repeats = matches!(arg.get_action(), clap::ArgAction::Append) && arg.get_long().is_some();
            if repeats {
                assert_eq!(
                    arg.get_value_delimiter(),
                    Some(','),
                    "{} --{} repeats but takes no comma list",
                    sub.get_name(),
                    arg.get_long().unwrap()
                );
            }
        }
    }
}

#[test]
fn every_flag_has_help_and_every_command_examples() {
    let mut cmd = kernlab::cli::Cli::command();
    cmd.build();
    assert!(cmd.get_after_help().is_some_and(|h| h.to_string().contains("Examples:")));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        let name = sub.get_name();
        let after = sub.get_after_help().map(|h| h.to_string()).unwrap_or_default();
        assert!(after.contains("Examples:") && after.contains(&format!("kernlab {name}")), "{name}: no examples");
        for arg in sub.get_arguments().filter(|a| !matches!(a.get_id().as_str(), "help" | "version")) {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(!help.trim().is_empty(), "{name} {}: no help text", arg.get_id());
            let names = if arg.get_action().takes_values() { arg.get_value_names().unwrap_or_default() } else { &[] };
            for v in names {
                assert!(!v.ends_with('S'), "{name} {}: plural value name {v}", arg.get_id());
            }
        }
    }
    // What the user sees.
    let t = text(&kernlab(&["e2e", "--help"]));
    assert!(t.contains("--top-p <P>") && t.contains("--gpu <N>") && t.contains("Examples:"), "{t}");
}

#[test]
fn flags_that_do_not_apply_are_refused() {
    for extra in [
        &["--strategy", "tpe"][..],
        &["--budget", "10"][..],
        &["--time-budget", "1m"][..],
        &["--stop-within", "10"][..],
        &["--resume"][..],
        &["--json"][..],
    ] {
        let o = kernlab(&[&["sweep", "gemm", "--dry-run", "--no-compile"][..], extra].concat());
        assert!(!o.status.success(), "{extra:?} was accepted with --dry-run");
        assert!(text(&o).contains("cannot be used with"), "{extra:?}: {}", text(&o));
    }
    for only_dry in [&["--arch", "sm_86"][..], &["--no-compile"][..]] {
        let o = kernlab(&[&["sweep", "gemm"][..], only_dry].concat());
        assert!(!o.status.success() && text(&o).contains("--dry-run"), "{only_dry:?}: {}", text(&o));
    }
    let o = kernlab(&["roofline", "--ceilings", "docs/results/ceilings-h200.json", "--remeasure"]);
    assert!(!o.status.success() && text(&o).contains("cannot be used with"), "{}", text(&o));
}

#[test]
fn devices_json_is_json_with_or_without_a_gpu() {
    let o = kernlab(&["devices", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", String::from_utf8_lossy(&o.stdout)));
    assert!(v["nvrtc"]["found"].is_boolean() && v["cublas"]["found"].is_boolean(), "{v}");
    if has_driver() {
        return;
    }
    assert!(!o.status.success());
    assert_eq!(v["gpus"], serde_json::json!([]));
    let why = v["gpu_error"].as_str().unwrap();
    assert!(why.contains("Without a GPU these still work") && why.contains("roofline --ceilings"), "{why}");
}

#[test]
fn no_gpu_messages_name_what_still_works() {
    if has_driver() {
        return;
    }
    for cmd in [&["sweep", "gemm", "--shape", "1x4096x4096", "--json"][..], &["e2e", "--json"][..], &["selftest"][..]] {
        let o = kernlab(cmd);
        let t = text(&o);
        assert!(!o.status.success(), "{cmd:?} succeeded without a GPU");
        for works in
            ["kernlab list", "--dry-run", "kernlab report", "kernlab replay", "kernlab quality", "kernlab export"]
        {
            assert!(t.contains(works), "{cmd:?} does not mention {works}:\n{t}");
        }
        assert!(!t.contains("cargo test"), "{cmd:?}: {t}");
        assert_eq!(t.matches("error:").count(), 1, "{cmd:?}: {t}");
    }
}

#[test]
fn roofline_draws_saved_ceilings_without_a_gpu() {
    let tmp = tempfile::tempdir().unwrap();
    let saved = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/results/ceilings-h200.json");
    let o = run_in(tmp.path(), &["roofline", "--ceilings", saved.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("no GPU needed") && t.contains("DRAM read"), "{t}");
    let pngs: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("roofline-"))
        .collect();
    assert_eq!(pngs.len(), 1, "{t}");
    if has_driver() {
        return;
    }
    // No flag: an empty reports/ names --ceilings; one saved file there is drawn.
    let empty = tempfile::tempdir().unwrap();
    let o = run_in(empty.path(), &["roofline"], &[]);
    assert!(!o.status.success() && text(&o).contains("--ceilings"), "{}", text(&o));
    std::fs::copy(&saved, empty.path().join("ceilings-nvidia-h200-sm90.json")).unwrap();
    let o = run_in(empty.path(), &["roofline"], &[]);
    assert!(o.status.success() && text(&o).contains("drawing the saved ceilings"), "{}", text(&o));
}

/// A folder with a `python3` that has no pip (what a minimal Debian image has).
fn python_without_pip() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let py = dir.path().join("python3");
    std::fs::write(&py, "#!/bin/sh\nif [ \"$2\" = pip ]; then echo 'No module named pip' >&2; exit 1; fi\nexit 0\n")
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&py, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn without_a_toolkit_the_error_names_the_fix() {
    let empty = tempfile::tempdir().unwrap();
    let cuda = empty.path().to_str().unwrap();
    let no_pip = python_without_pip();
    let hide: Vec<(&str, &str)> = vec![
        ("KERNLAB_CUDA_ONLY", "1"),
        ("KERNLAB_CUDA_DIR", cuda),
        ("HOME", cuda),
        ("XDG_CACHE_HOME", cuda),
        ("LD_LIBRARY_PATH", ""),
        ("PATH", no_pip.path().to_str().unwrap()),
    ];
    let o = run_in(empty.path(), &["compile", "kernels/gemm/mma_multistage.cu"], &hide);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    for fix in [
        "NVRTC",
        "was not found",
        "scripts/setup-nvrtc.sh",
        "python3 -m pip install",
        "nvidia-cuda-nvrtc==",
        "ensurepip",
    ] {
        assert!(t.contains(fix), "the message lacks {fix:?}:\n{t}");
    }
    // Without any python3 the message says to get one.
    let mut no_python = hide.clone();
    no_python.retain(|(k, _)| *k != "PATH");
    no_python.push(("PATH", cuda));
    let t = text(&run_in(empty.path(), &["compile", "kernels/gemm/mma_multistage.cu"], &no_python));
    assert!(t.contains("no python3 here") && t.contains("apt-get install python3-pip"), "{t}");
    // devices reports both libraries missing, with their fixes.
    let o = run_in(empty.path(), &["devices", "--json"], &hide);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["nvrtc"]["found"], false);
    assert!(v["cublas"]["error"].as_str().unwrap().contains("nvidia-cublas"), "{v}");
}

/// Issue #19's fresh machine: no toolkit, no wheels in kernlab's cache, only python3 with
/// pip. `kernlab compile` (like sweep, selftest, roofline and e2e) installs NVRTC and the
/// CUDA headers itself and compiles. Needs the network (pip), as CI's own set-up does; pip's
/// download cache is left in place, so the wheels setup-nvrtc.sh fetched are reused.
#[test]
fn a_machine_without_a_toolkit_installs_nvrtc_itself_and_compiles() {
    let cache = tempfile::tempdir().unwrap();
    let xdg = cache.path().to_str().unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    let hide: Vec<(&str, &str)> =
        vec![("XDG_CACHE_HOME", xdg), ("LD_LIBRARY_PATH", ""), ("CUDA_HOME", ""), ("CUDA_PATH", "")];
    // Where another NVRTC is still visible (a toolkit in /usr/local/cuda, wheels in a
    // site-packages), this machine cannot play the fresh one: say so and stop.
    let o = run_in(cache.path(), &["devices", "--json"], &hide);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    if v["nvrtc"]["found"] != false {
        eprintln!("skipped: NVRTC is visible outside kernlab's cache here ({})", v["nvrtc"]);
        return;
    }
    let mut c = Command::new(env!("CARGO_BIN_EXE_kernlab"));
    c.args(["compile", "kernels/gemm/mma_multistage.cu", "--arch", "sm_90a"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("KERNLAB_REPORTS", cache.path())
        .env("KERNLAB_AUTO_INSTALL", "1")
        .env("PATH", path);
    for (k, v) in &hide {
        c.env(k, v);
    }
    let o = c.output().expect("running kernlab");
    let t = text(&o);
    assert!(o.status.success(), "compile after the automatic install failed:\n{t}");
    let installed = cache.path().join("kernlab/cuda/nvidia");
    assert!(installed.is_dir(), "no wheels in {}:\n{t}", installed.display());
    assert!(t.contains("sm_90a"), "{t}");
}
