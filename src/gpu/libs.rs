//! Finding the CUDA libraries and headers without the user setting paths.
//!
//! cudarc opens libraries by bare name (`libnvrtc.so.13`, ...), which only works when they
//! are on the loader's search path. kernlab instead searches the usual places (the
//! `KERNLAB_CUDA_DIR` override, `CUDA_HOME`/`CUDA_PATH`, `/usr/local/cuda`, the folder the
//! test setup installs pip wheels into, pip's `nvidia/cu13` folders) and opens the library
//! by full path with `RTLD_GLOBAL` first. The dynamic loader matches later opens of the same
//! soname to the already-loaded object, so cudarc then finds it.

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where a CUDA component was found, and how.
#[derive(Debug, Clone)]
pub struct Found {
    pub lib: PathBuf,
    /// Which rule found it (for `kernlab devices` and error messages).
    pub how: String,
}

/// Candidate CUDA installation roots, most specific first, with a note of where each came from.
pub fn cuda_roots() -> Vec<(PathBuf, String)> {
    let mut roots = Vec::new();
    for var in ["KERNLAB_CUDA_DIR", "CUDA_HOME", "CUDA_PATH"] {
        if let Some(v) = std::env::var_os(var) {
            let p = PathBuf::from(v);
            roots.push((p.clone(), format!("${var}")));
            // A pip --target folder holds nvidia/cu13 below it.
            roots.push((p.join("nvidia/cu13"), format!("${var}/nvidia/cu13")));
        }
    }
    roots.push((PathBuf::from("/usr/local/cuda"), "/usr/local/cuda".into()));
    if let Some(dir) = default_wheel_dir() {
        roots.push((dir.join("nvidia/cu13"), "kernlab's wheel folder".into()));
    }
    for sp in python_site_dirs() {
        roots.push((sp.join("nvidia/cu13"), format!("pip ({})", sp.display())));
    }
    roots
}

/// The folder `scripts/setup-nvrtc.sh` installs the NVRTC wheels into.
pub fn default_wheel_dir() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("kernlab/cuda"))
}

/// Python's site-packages folders, asked of python3 once (pip installs CUDA wheels there).
fn python_site_dirs() -> Vec<PathBuf> {
    static DIRS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    DIRS.get_or_init(|| {
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import site,sys; print('\\n'.join(site.getsitepackages()+[site.getusersitepackages()]+sys.path))",
            ])
            .stderr(std::process::Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(PathBuf::from)
                .filter(|p| p.join("nvidia").is_dir())
                .collect(),
            _ => Vec::new(),
        }
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

/// Finds NVRTC and the headers and loads NVRTC (once per process).
pub fn nvrtc() -> Result<&'static NvrtcInstall> {
    static INSTALL: OnceLock<std::result::Result<NvrtcInstall, String>> = OnceLock::new();
    let r = INSTALL.get_or_init(|| {
        let found = find_lib(&["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"]).ok_or_else(|| {
            let searched: Vec<String> = cuda_roots().iter().map(|(p, _)| p.display().to_string()).collect();
            format!(
                "NVRTC (libnvrtc.so.13) was not found. Searched: {}. Install the CUDA toolkit, \
                 or run `scripts/setup-nvrtc.sh` (pip wheels nvidia-cuda-nvrtc and nvidia-cuda-runtime \
                 into ~/.cache/kernlab/cuda), or set KERNLAB_CUDA_DIR to a folder with lib/ and include/",
                searched.join(", ")
            )
        })?;
        let include_dir = find_include_near(&found.lib).ok_or_else(|| {
            format!(
                "NVRTC was found at {} but no CUDA headers (cuda_bf16.h) beside it; install the \
                 nvidia-cuda-runtime wheel next to it or set KERNLAB_CUDA_DIR",
                found.lib.display()
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
        let lt = find_lib(&["libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"]);
        let blas = find_lib(&["libcublas.so.13", "libcublas.so.12", "libcublas.so"]).ok_or_else(|| {
            "cuBLAS (libcublas.so.13) was not found in the CUDA folders; install the CUDA toolkit \
             or the nvidia-cublas wheel, or set KERNLAB_CUDA_DIR"
                .to_string()
        })?;
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
                 an NVIDIA GPU with its driver installed. Without a GPU you can still run \
                 `kernlab sweep <family> --dry-run --arch sm_90` (enumerate and compile with NVRTC) \
                 and `cargo test`."
            )),
        }
    })
    .as_ref()
    .map(|_| ())
    .map_err(|e| anyhow::anyhow!("{e}"))
}
