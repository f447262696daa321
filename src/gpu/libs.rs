//! Finding the CUDA libraries and headers without the user setting paths.
//!
//! cudarc opens libraries by bare name (`libnvrtc.so.13`, ...), which only works when they
//! are on the loader's search path. kernlab instead searches the usual places (the
//! `KERNLAB_CUDA_DIR` override, `CUDA_HOME`/`CUDA_PATH`, `/usr/local/cuda`, the folders
//! kernlab installs pip wheels into, and the `site-packages` of every Python on `PATH`) in
//! both wheel layouts (CUDA 13: `nvidia/cu13/lib`; CUDA 12: `nvidia/cuda_nvrtc/lib`,
//! `nvidia/cublas/lib`, headers in `nvidia/cuda_runtime/include`), and opens the library by
//! full path with `RTLD_GLOBAL` first. The dynamic loader matches later opens of the same
//! soname to the already-loaded object, so cudarc then finds it.
//!
//! When a library is missing, the commands that need it may install NVIDIA's wheels
//! ([`wheels`](super::wheels)); otherwise the error names the command that does.

use super::wheels;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// What works on a machine without a GPU, for every message that says one is missing.
pub const WITHOUT_GPU: &str = "Without a GPU these still work: `kernlab list`, `kernlab sweep <family> --dry-run \
     --arch sm_90a` (enumerate and compile with NVRTC), `kernlab compile <file.cu>`, `kernlab report` and \
     `kernlab roofline --ceilings <saved ceilings-*.json>` over saved results, `kernlab replay <sweep.csv>`, \
     `kernlab quality` (on the CPU) and `kernlab export <kernel>`.";

/// Where a CUDA component was found, and how.
#[derive(Debug, Clone)]
pub struct Found {
    pub lib: PathBuf,
    /// Which rule found it (for `kernlab devices` and error messages).
    pub how: String,
}

/// The folders pip wheels put CUDA components in below a `site-packages` or `--target`
/// folder: CUDA 13 wheels share `nvidia/cu13`, CUDA 12 wheels have one folder each.
const WHEEL_SUBDIRS: [&str; 4] = ["nvidia/cu13", "nvidia/cuda_nvrtc", "nvidia/cuda_runtime", "nvidia/cublas"];

fn push_wheel_roots(roots: &mut Vec<(PathBuf, String)>, base: &Path, how: &str) {
    for sub in WHEEL_SUBDIRS {
        roots.push((base.join(sub), format!("{how} ({sub})")));
    }
}

/// Candidate CUDA installation roots, most specific first, with a note of where each came
/// from. `KERNLAB_CUDA_DIR` set to a folder alone (with `KERNLAB_CUDA_ONLY=1`) searches only
/// there: for a chosen toolkit, and for the test that hides every other one.
pub fn cuda_roots() -> Vec<(PathBuf, String)> {
    let mut roots = Vec::new();
    let only = std::env::var_os("KERNLAB_CUDA_ONLY").is_some_and(|v| v == "1");
    let vars: &[&str] = if only { &["KERNLAB_CUDA_DIR"] } else { &["KERNLAB_CUDA_DIR", "CUDA_HOME", "CUDA_PATH"] };
    for var in vars {
        if let Some(v) = std::env::var_os(var) {
            let p = PathBuf::from(v);
            roots.push((p.clone(), format!("${var}")));
            // A pip --target folder holds the wheels' folders below it.
            push_wheel_roots(&mut roots, &p, &format!("${var}"));
        }
    }
    if only {
        return roots;
    }
    roots.push((PathBuf::from("/usr/local/cuda"), "/usr/local/cuda".into()));
    for dir in [wheels::nvrtc_dir(), wheels::cublas_dir()].into_iter().flatten() {
        push_wheel_roots(&mut roots, &dir, &format!("kernlab's wheel folder {}", dir.display()));
    }
    for sp in python_site_dirs() {
        push_wheel_roots(&mut roots, &sp, &format!("pip ({})", sp.display()));
    }
    roots
}

/// The folder `scripts/setup-nvrtc.sh` installs the NVRTC wheels into.
pub fn default_wheel_dir() -> Option<PathBuf> {
    wheels::nvrtc_dir()
}

/// Python interpreters on PATH: python3, python, and versioned ones (python3.12, ...), each
/// of which may have its own site-packages with CUDA wheels.
fn pythons() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let versioned =
                name.strip_prefix("python3.").is_some_and(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()));
            if (name == "python3" || name == "python" || versioned) && e.path().is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

/// Python's site-packages folders that hold `nvidia/` (pip installs CUDA wheels there),
/// asked of every Python on PATH once.
fn python_site_dirs() -> Vec<PathBuf> {
    static DIRS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    DIRS.get_or_init(|| {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for py in pythons() {
            let out = std::process::Command::new(&py)
                .args([
                    "-c",
                    "import site,sys; print('\\n'.join(site.getsitepackages()+[site.getusersitepackages()]+sys.path))",
                ])
                .stderr(std::process::Stdio::null())
                .output();
            let Ok(o) = out else { continue };
            if !o.status.success() {
                continue;
            }
            for l in String::from_utf8_lossy(&o.stdout).lines().filter(|l| !l.trim().is_empty()) {
                let p = PathBuf::from(l);
                if p.join("nvidia").is_dir() && !dirs.contains(&p) {
                    dirs.push(p);
                }
            }
        }
        dirs
    })
    .clone()
}

fn lib_dirs(root: &Path) -> Vec<PathBuf> {
    vec![root.join("lib64"), root.join("lib"), root.join("targets/x86_64-linux/lib")]
}

fn ld_library_path_dirs() -> Vec<PathBuf> {
    std::env::var("LD_LIBRARY_PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// Finds the first existing file among `names` in the CUDA roots (then LD_LIBRARY_PATH).
pub fn find_lib(names: &[&str]) -> Option<Found> {
    for (root, how) in cuda_roots() {
        for dir in lib_dirs(&root) {
            for n in names {
                let p = dir.join(n);
                if p.is_file() {
                    return Some(Found { lib: p, how: how.clone() });
                }
            }
        }
    }
    for dir in ld_library_path_dirs() {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(Found { lib: p, how: "LD_LIBRARY_PATH".into() });
            }
        }
    }
    None
}

/// Opens a library by full path with RTLD_GLOBAL and keeps it loaded for the process.
pub fn preload(path: &Path) -> Result<()> {
    // SAFETY: loading a CUDA library runs its initialisers, which have no preconditions
    // beyond a sane process; the handle is leaked so the library is never unloaded while
    // cudarc holds symbols from it.
    let lib = unsafe {
        libloading::os::unix::Library::open(
            Some(path),
            libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
        )
    };
    match lib {
        Ok(l) => {
            std::mem::forget(l);
            Ok(())
        }
        Err(e) => bail!("could not load {}: {e}", path.display()),
    }
}

/// NVRTC's library and the CUDA headers it compiles against.
#[derive(Debug, Clone)]
pub struct NvrtcInstall {
    pub lib: PathBuf,
    pub include_dir: PathBuf,
    pub how: String,
}

fn find_include_near(lib: &Path) -> Option<PathBuf> {
    let dir = lib.parent()?;
    let mut cands = vec![dir.join("../include"), dir.join("../../include")];
    for (root, _) in cuda_roots() {
        cands.push(root.join("include"));
        cands.push(root.join("targets/x86_64-linux/include"));
    }
    cands.into_iter().find(|c| c.join("cuda_bf16.h").is_file()).map(|c| c.canonicalize().unwrap_or(c))
}

/// The searched folders that exist, for the not-found messages.
fn searched() -> String {
    let roots: Vec<String> = cuda_roots().iter().map(|(p, _)| p.display().to_string()).collect();
    format!("{} and LD_LIBRARY_PATH", roots.join(", "))
}

/// [`find_lib`], and when nothing is found, the wheels installed into `dir` (if this process
/// may install) and the search repeated.
fn find_or_install(
    names: &[&str],
    what: &str,
    dir: Option<PathBuf>,
    wheel_names: &[&str],
) -> std::result::Result<Option<Found>, String> {
    if let Some(f) = find_lib(names) {
        return Ok(Some(f));
    }
    let Some(dir) = dir else { return Ok(None) };
    match wheels::install(what, &dir, wheel_names) {
        Ok(true) => Ok(find_lib(names)),
        Ok(false) => Ok(None),
        Err(e) => Err(format!("{what} was not found, and installing it failed: {e:#}")),
    }
}

/// Finds NVRTC and the headers and loads NVRTC (once per process).
pub fn nvrtc() -> Result<&'static NvrtcInstall> {
    static INSTALL: OnceLock<std::result::Result<NvrtcInstall, String>> = OnceLock::new();
    let r = INSTALL.get_or_init(|| {
        let names = ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"];
        let found = find_or_install(&names, "NVRTC", wheels::nvrtc_dir(), &wheels::NVRTC_WHEELS)?.ok_or_else(|| {
            format!("NVRTC (libnvrtc.so.13 or .so.12) was not found. Searched: {}. {}", searched(), wheels::nvrtc_fix())
        })?;
        let include_dir = find_include_near(&found.lib).ok_or_else(|| {
            format!(
                "NVRTC was found at {} but no CUDA headers (cuda_bf16.h) beside it. {}",
                found.lib.display(),
                wheels::nvrtc_fix()
            )
        })?;
        // NVRTC opens its builtins library by soname at compile time; load it from the same
        // folder so it need not be on the loader path.
        if let Some(dir) = found.lib.parent() {
            if let Ok(rd) = std::fs::read_dir(dir) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    if name.starts_with("libnvrtc-builtins.so") {
                        let _ = preload(&e.path());
                    }
                }
            }
        }
        preload(&found.lib).map_err(|e| e.to_string())?;
        Ok(NvrtcInstall { lib: found.lib, include_dir, how: found.how })
    });
    r.as_ref().map_err(|e| anyhow::anyhow!("{e}"))
}

/// Finds and loads cuBLAS (and cuBLASLt, which it needs) once per process.
pub fn cublas() -> Result<&'static Found> {
    static FOUND: OnceLock<std::result::Result<Found, String>> = OnceLock::new();
    let r = FOUND.get_or_init(|| {
        let names = ["libcublas.so.13", "libcublas.so.12", "libcublas.so"];
        let blas =
            find_or_install(&names, "cuBLAS", wheels::cublas_dir(), &wheels::CUBLAS_WHEELS)?.ok_or_else(|| {
                format!(
                    "cuBLAS (libcublas.so.13 or .so.12; the peer of every GEMM sweep and the reference the \
                 GEMM candidates are verified against) was not found. Searched: {}. {}",
                    searched(),
                    wheels::cublas_fix()
                )
            })?;
        // cuBLASLt of the same release, beside it.
        let lt = blas
            .lib
            .parent()
            .map(|d| {
                d.join(blas.lib.file_name().unwrap_or_default().to_string_lossy().replace("libcublas", "libcublasLt"))
            })
            .filter(|p| p.is_file())
            .map(|lib| Found { lib, how: blas.how.clone() })
            .or_else(|| find_lib(&["libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"]));
        if let Some(lt) = lt {
            preload(&lt.lib).map_err(|e| e.to_string())?;
        }
        preload(&blas.lib).map_err(|e| e.to_string())?;
        Ok(blas)
    });
    r.as_ref().map_err(|e| anyhow::anyhow!("{e}"))
}

/// Checks that the NVIDIA driver library can be loaded, so cudarc will not panic on it.
pub fn driver() -> Result<()> {
    static OK: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    OK.get_or_init(|| {
        // SAFETY: as in `preload`; the driver library's initialisers have no preconditions.
        let lib = unsafe {
            libloading::os::unix::Library::open(
                Some("libcuda.so.1"),
                libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
            )
        };
        match lib {
            Ok(l) => {
                std::mem::forget(l);
                Ok(())
            }
            Err(e) => Err(format!(
                "no NVIDIA driver found: libcuda.so.1 could not be loaded ({e}). This command needs \
                 an NVIDIA GPU with its driver (R580 or newer, for CUDA 13). {WITHOUT_GPU}"
            )),
        }
    })
    .as_ref()
    .map(|_| ())
    .map_err(|e| anyhow::anyhow!("{e}"))
}
