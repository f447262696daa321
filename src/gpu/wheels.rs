//! NVIDIA's pip wheels as kernlab's own CUDA install: where they go, the exact commands
//! that install them, and (for the commands that need NVRTC or cuBLAS, when they are
//! missing) installing them, so a machine with only the driver and Rust can run a sweep.
//!
//! NVRTC and the CUDA headers go to `~/.cache/kernlab/cuda`, cuBLAS to
//! `~/.cache/kernlab/cublas`: separate `pip --target` folders, because pip does not merge
//! a second install into an existing `nvidia/` folder of a target.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

/// NVRTC 13.0 and the runtime wheel (which carries `cuda_bf16.h` and the other headers the
/// templates include); the same pins as `scripts/setup-nvrtc.sh`.
pub const NVRTC_WHEELS: [&str; 2] = ["nvidia-cuda-nvrtc==13.0.88", "nvidia-cuda-runtime==13.0.96"];
/// cuBLAS and cuBLASLt for CUDA 13 (any 13.x runs on a CUDA 13 driver).
pub const CUBLAS_WHEELS: [&str; 1] = ["nvidia-cublas>=13,<14"];

static AUTO_INSTALL: AtomicBool = AtomicBool::new(false);

/// Lets this process install missing wheels (the commands that need NVRTC or cuBLAS turn
/// it on; tests and library users do not). `KERNLAB_AUTO_INSTALL=0` keeps it off.
pub fn allow_auto_install() {
    let off = std::env::var_os("KERNLAB_AUTO_INSTALL").is_some_and(|v| v == "0");
    AUTO_INSTALL.store(!off, Ordering::SeqCst);
}

fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|c| c.join("kernlab"))
}

/// Where kernlab (and scripts/setup-nvrtc.sh) install the NVRTC wheels.
pub fn nvrtc_dir() -> Option<PathBuf> {
    cache_dir().map(|c| c.join("cuda"))
}

/// Where kernlab installs the cuBLAS wheel.
pub fn cublas_dir() -> Option<PathBuf> {
    cache_dir().map(|c| c.join("cublas"))
}

/// The pip command that installs `wheels` into `dir`, as the user would type it.
pub fn pip_command(dir: &std::path::Path, wheels: &[&str]) -> String {
    let quoted: Vec<String> =
        wheels.iter().map(|w| if w.contains(['<', '>']) { format!("'{w}'") } else { w.to_string() }).collect();
    format!("python3 -m pip install --no-deps --target {} {}", dir.display(), quoted.join(" "))
}

/// What to run to get NVRTC, for error messages.
pub fn nvrtc_fix() -> String {
    let dir = nvrtc_dir().unwrap_or_else(|| PathBuf::from("~/.cache/kernlab/cuda"));
    format!(
        "To install NVRTC and the CUDA headers (no toolkit needed), run `scripts/setup-nvrtc.sh` or `{}`{}; \
         or install the CUDA 13 toolkit, or set KERNLAB_CUDA_DIR to a folder with lib/ and include/",
        pip_command(&dir, &NVRTC_WHEELS),
        pip_hint()
    )
}

/// What to run to get cuBLAS, for error messages.
pub fn cublas_fix() -> String {
    let dir = cublas_dir().unwrap_or_else(|| PathBuf::from("~/.cache/kernlab/cublas"));
    format!(
        "To install cuBLAS (no toolkit needed), run `{}`{}; or install the CUDA 13 toolkit, or set \
         KERNLAB_CUDA_DIR to a folder with lib/",
        pip_command(&dir, &CUBLAS_WHEELS),
        pip_hint()
    )
}

/// Whether `python3 -m pip` works here.
fn pip_available() -> bool {
    Command::new("python3")
        .args(["-m", "pip", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// How to get pip when it is missing (empty when it is there).
fn pip_hint() -> String {
    if pip_available() {
        return String::new();
    }
    let python = Command::new("python3").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if python.is_ok_and(|s| s.success()) {
        " (pip is missing here: first `python3 -m ensurepip --user`, or `sudo apt-get install python3-pip` on \
         Debian/Ubuntu)"
            .into()
    } else {
        " (no python3 here: first `sudo apt-get install python3-pip`, or your system's python3 and pip)".into()
    }
}

/// Installs `wheels` into `dir` with pip, printing what it does, when this process may
/// (see [`allow_auto_install`]) and pip is there. `Ok(false)`: nothing was tried.
pub fn install(what: &str, dir: &std::path::Path, wheels: &[&str]) -> Result<bool> {
    if !AUTO_INSTALL.load(Ordering::SeqCst) || !pip_available() {
        return Ok(false);
    }
    eprintln!("{what} not found: installing NVIDIA's wheels ({}) into {}", wheels.join(", "), dir.display());
    eprintln!("  (once; set KERNLAB_AUTO_INSTALL=0 to be asked to install it yourself)");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let status = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--target"])
        .arg(dir)
        .args(wheels)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .context("running python3 -m pip")?;
    if !status.success() {
        bail!("`{}` failed ({status}); run it yourself to see why", pip_command(dir, wheels));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pip_commands_name_the_wheels_and_the_folder() {
        let c = pip_command(std::path::Path::new("/x/cuda"), &CUBLAS_WHEELS);
        assert_eq!(c, "python3 -m pip install --no-deps --target /x/cuda 'nvidia-cublas>=13,<14'");
        assert!(nvrtc_fix().contains("nvidia-cuda-nvrtc==13.0.88"), "{}", nvrtc_fix());
        assert!(nvrtc_fix().contains("scripts/setup-nvrtc.sh"));
    }
}
