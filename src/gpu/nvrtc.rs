//! Run-time compilation of kernel templates with NVRTC, to a cubin for one GPU architecture.
//!
//! A template is compiled with its tunables as `-D` defines. NVRTC runs ptxas itself when
//! the target is a real architecture (`sm_90a`), so the compiled module comes with the
//! resource report (registers, spills, shared memory) that tells why a candidate is slow.

use super::libs;
use anyhow::{bail, Context, Result};
use cudarc::nvrtc::{result as nvrtc_result, sys as nvrtc_sys};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::time::Instant;

/// A template plus the values of its tunables, for one architecture.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CompileRequest {
    /// Path shown in errors (the template file).
    pub name: String,
    pub source: String,
    /// Macro definitions, sorted by name so the cache key is stable.
    pub defines: BTreeMap<String, String>,
    /// `sm_90a`, `sm_86`, ...
    pub arch: String,
}

/// Resource use of one entry point, from ptxas's report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KernelResources {
    pub registers: u32,
    pub static_smem_bytes: u32,
    pub stack_bytes: u32,
    pub spill_store_bytes: u32,
    pub spill_load_bytes: u32,
}

/// A compiled module: the cubin and what ptxas said about each entry point.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompiledModule {
    #[serde(skip)]
    pub cubin: Vec<u8>,
    pub arch: String,
    pub nvrtc_version: String,
    pub resources: BTreeMap<String, KernelResources>,
    pub log: String,
    pub compile_ms: f64,
    /// True when the module came from the disk cache.
    #[serde(skip)]
    pub cached: bool,
}

/// A compile failure, carrying the NVRTC log and the defines that produced it.
#[derive(Debug, thiserror::Error)]
#[error("NVRTC failed to compile {name} for {arch} with {defines}:\n{log}")]
pub struct CompileError {
    pub name: String,
    pub arch: String,
    pub defines: String,
    pub log: String,
}

impl CompileRequest {
    pub fn defines_string(&self) -> String {
        if self.defines.is_empty() {
            return "no defines".into();
        }
        self.defines.iter().map(|(k, v)| format!("-D{k}={v}")).collect::<Vec<_>>().join(" ")
    }
}

/// Largest expanded source `load_source` builds. The biggest template with its headers is
/// well under 100 KiB; a fan-out include tree (each file including the next many times)
/// grows exponentially with depth, so the depth limit alone does not bound it.
pub const MAX_EXPANDED_BYTES: usize = 8 << 20;
/// Most `#include "..."` lines one expansion follows, so a fan-out of empty files (which
/// adds no bytes) still stops quickly.
pub const MAX_INCLUDES: usize = 10_000;

/// Headers kernlab gives every kernel it reads from disk, the user's sweep-file kernels
/// above all, as `#include <kernlab/NAME>`: built into the binary, so a kernel copied out of
/// `examples/` compiles anywhere. element_type.cuh: the element type `T` the sweep's dtype
/// selects (`KL_FP16` / `KL_FP32` defined, else bf16), `kl_to_f` and `kl_from_f`; include
/// `<cuda_fp16.h>` and `<cuda_bf16.h>` before it.
pub const BUILTIN_HEADERS: &[(&str, &str)] =
    &[("kernlab/element_type.cuh", include_str!("../../kernels/common/element_type.cuh"))];

/// Reads a template, expanding `#include "file"` lines (paths relative to the including
/// file) and `#include <kernlab/…>` lines ([`BUILTIN_HEADERS`]) so the source NVRTC compiles,
/// the cache key and the tuned database's source hash all cover shared headers. Other system
/// includes (`<cuda_bf16.h>`) are left to NVRTC.
pub fn load_source(path: &std::path::Path) -> Result<String> {
    struct Expansion {
        out: String,
        includes: usize,
    }
    fn expand(path: &std::path::Path, depth: usize, x: &mut Expansion) -> Result<()> {
        if depth > 8 {
            bail!("{}: includes nest deeper than 8 levels (a cycle?)", path.display());
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        for (i, line) in text.lines().enumerate() {
            let t = line.trim_start();
            if let Some(rest) = t.strip_prefix("#include <kernlab/") {
                let name = format!("kernlab/{}", rest.split('>').next().unwrap_or(""));
                let Some((_, text)) = BUILTIN_HEADERS.iter().find(|(n, _)| *n == name) else {
                    let known: Vec<&str> = BUILTIN_HEADERS.iter().map(|(n, _)| *n).collect();
                    bail!(
                        "{}:{}: no built-in header <{name}>; kernlab has {}",
                        path.display(),
                        i + 1,
                        known.join(", ")
                    );
                };
                x.out.push_str(text);
            } else if let Some(rest) = t.strip_prefix("#include \"") {
                x.includes += 1;
                if x.includes > MAX_INCLUDES {
                    bail!(
                        "{}:{}: more than {MAX_INCLUDES} #include lines expanded in all: \
                         does a header include another many times? Include each header once",
                        path.display(),
                        i + 1
                    );
                }
                let name = rest.split('"').next().unwrap_or("");
                expand(&dir.join(name), depth + 1, x).with_context(|| format!("included from {}", path.display()))?;
            } else {
                if x.out.len() + line.len() + 1 > MAX_EXPANDED_BYTES {
                    bail!(
                        "{}:{}: the source with its includes expanded is larger than {} MiB: \
                         does a header include another many times? Include each header once",
                        path.display(),
                        i + 1,
                        MAX_EXPANDED_BYTES >> 20
                    );
                }
                x.out.push_str(line);
                x.out.push('\n');
            }
        }
        Ok(())
    }
    let mut x = Expansion { out: String::new(), includes: 0 };
    expand(path, 0, &mut x)?;
    Ok(x.out)
}

/// NVRTC's version as "major.minor".
pub fn version() -> Result<String> {
    libs::nvrtc()?;
    let (mut major, mut minor) = (0i32, 0i32);
    // SAFETY: nvrtcVersion writes two ints through valid pointers.
    let r = unsafe { nvrtc_sys::nvrtcVersion(&mut major, &mut minor) };
    if r != nvrtc_sys::nvrtcResult::NVRTC_SUCCESS {
        bail!("nvrtcVersion failed: {r:?}");
    }
    Ok(format!("{major}.{minor}"))
}

/// Architectures this NVRTC can target, e.g. ["sm_75", ..., "sm_90", ...].
pub fn supported_archs() -> Result<Vec<String>> {
    libs::nvrtc()?;
    let mut n = 0i32;
    // SAFETY: out-pointer to an int, then a buffer of exactly `n` ints.
    unsafe {
        if nvrtc_sys::nvrtcGetNumSupportedArchs(&mut n) != nvrtc_sys::nvrtcResult::NVRTC_SUCCESS {
            bail!("nvrtcGetNumSupportedArchs failed");
        }
        let mut v = vec![0i32; n.max(0) as usize];
        if nvrtc_sys::nvrtcGetSupportedArchs(v.as_mut_ptr()) != nvrtc_sys::nvrtcResult::NVRTC_SUCCESS {
            bail!("nvrtcGetSupportedArchs failed");
        }
        Ok(v.into_iter().map(|a| format!("sm_{a}")).collect())
    }
}

/// Checks an architecture name before handing it to NVRTC, so a typo gets a clear message.
pub fn validate_arch(arch: &str) -> Result<()> {
    let ok = arch.strip_prefix("sm_").map(|r| {
        let digits = r.trim_end_matches(['a', 'f']);
        !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
    });
    if ok != Some(true) {
        bail!("bad --arch {arch:?}: expected a real architecture like sm_80, sm_86, sm_90 or sm_90a");
    }
    Ok(())
}

fn c_str_lossy(v: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = v.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Compiles one request (no caching; see `gpu::cache` for that).
pub fn compile(req: &CompileRequest) -> Result<CompiledModule> {
    validate_arch(&req.arch)?;
    let install = libs::nvrtc()?;
    let nvrtc_version = version()?;
    let started = Instant::now();
    let src = CString::new(req.source.as_str()).context("kernel source contains a NUL byte")?;
    let name = CString::new(req.name.as_str()).unwrap_or_else(|_| CString::new("kernel.cu").unwrap());
    let prog = nvrtc_result::create_program(&src, Some(&name)).context("nvrtcCreateProgram")?;
    let mut opts = vec![
        format!("--gpu-architecture={}", req.arch),
        format!("-I{}", install.include_dir.display()),
        "--std=c++17".to_string(),
        "-lineinfo".to_string(),
        "--ptxas-options=-v".to_string(),
    ];
    for (k, v) in &req.defines {
        opts.push(format!("-D{k}={v}"));
    }
    // SAFETY: `prog` was just created and is destroyed exactly once below.
    let compiled = unsafe { nvrtc_result::compile_program(prog, &opts) };
    // SAFETY: as above.
    let log = unsafe { nvrtc_result::get_program_log(prog) }.map(|l| c_str_lossy(&l)).unwrap_or_default();
    if compiled.is_err() {
        // SAFETY: as above.
        unsafe { nvrtc_result::destroy_program(prog) }.ok();
        return Err(CompileError {
            name: req.name.clone(),
            arch: req.arch.clone(),
            defines: req.defines_string(),
            log: log.trim().to_string(),
        }
        .into());
    }
    let mut size = 0usize;
    // SAFETY: the program compiled for a real architecture, so a cubin exists; the buffer
    // is exactly the size NVRTC reports.
    let cubin = unsafe {
        let r = nvrtc_sys::nvrtcGetCUBINSize(prog, &mut size);
        if r != nvrtc_sys::nvrtcResult::NVRTC_SUCCESS || size == 0 {
            nvrtc_result::destroy_program(prog).ok();
            bail!("NVRTC produced no cubin for {} ({}): is {} a real architecture?", req.name, req.arch, req.arch);
        }
        let mut buf = vec![0u8; size];
        let r = nvrtc_sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr() as *mut std::ffi::c_char);
        nvrtc_result::destroy_program(prog).ok();
        if r != nvrtc_sys::nvrtcResult::NVRTC_SUCCESS {
            bail!("nvrtcGetCUBIN failed: {r:?}");
        }
        buf
    };
    Ok(CompiledModule {
        cubin,
        arch: req.arch.clone(),
        nvrtc_version,
        resources: parse_ptxas_report(&log),
        log,
        compile_ms: started.elapsed().as_secs_f64() * 1e3,
        cached: false,
    })
}

/// Parses ptxas's `-v` report into per-entry-point resources.
///
/// The report looks like:
/// ```text
/// ptxas info    : Compiling entry function 'gemm_mma' for 'sm_90a'
/// ptxas info    : Function properties for gemm_mma
///     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
/// ptxas info    : Used 168 registers, used 1 barriers, 16 bytes smem, 400 bytes cmem[0]
/// ```
pub fn parse_ptxas_report(log: &str) -> BTreeMap<String, KernelResources> {
    let mut out: BTreeMap<String, KernelResources> = BTreeMap::new();
    let mut current: Option<String> = None;
    let num_before = |line: &str, unit: &str| -> Option<u32> {
        let idx = line.find(unit)?;
        line[..idx].split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).last()?.parse().ok()
    };
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or("").to_string();
            out.entry(name.clone()).or_default();
            current = Some(name);
        } else if let Some(rest) = line.split("Function properties for ").nth(1) {
            let name = rest.trim().to_string();
            if out.contains_key(&name) {
                current = Some(name);
            }
        } else if let Some(name) = &current {
            let r = out.get_mut(name).unwrap();
            if line.contains("stack frame") {
                r.stack_bytes = num_before(line, " bytes stack frame").unwrap_or(0);
                r.spill_store_bytes = num_before(line, " bytes spill stores").unwrap_or(0);
                r.spill_load_bytes = num_before(line, " bytes spill loads").unwrap_or(0);
            } else if line.contains("Used ") && line.contains(" registers") {
                r.registers = num_before(line, " registers").unwrap_or(0);
                r.static_smem_bytes = num_before(line, " bytes smem").unwrap_or(0);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ptxas_report() {
        let log = "ptxas info    : 0 bytes gmem\n\
ptxas info    : Compiling entry function 'gemm_mma' for 'sm_90a'\n\
ptxas info    : Function properties for gemm_mma\n\
    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n\
ptxas info    : Used 168 registers, used 1 barriers, 16 bytes smem, 400 bytes cmem[0]\n\
ptxas info    : Compiling entry function 'reduce' for 'sm_90a'\n\
ptxas info    : Function properties for reduce\n\
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
ptxas info    : Used 12 registers, used 0 barriers, 380 bytes cmem[0]\n";
        let r = parse_ptxas_report(log);
        assert_eq!(r.len(), 2);
        let g = &r["gemm_mma"];
        assert_eq!(
            (g.registers, g.static_smem_bytes, g.stack_bytes, g.spill_store_bytes, g.spill_load_bytes),
            (168, 16, 8, 4, 12)
        );
        assert_eq!(r["reduce"].registers, 12);
        assert_eq!(r["reduce"].static_smem_bytes, 0);
    }

    /// Writes `f0.cuh` .. `f{depth}.cuh`, each including the next `fanout` times.
    fn fan_out_tree(dir: &std::path::Path, depth: usize, fanout: usize, body: &str) -> std::path::PathBuf {
        for d in 0..=depth {
            let mut text = String::from(body);
            if d < depth {
                text += &format!("#include \"f{}.cuh\"\n", d + 1).repeat(fanout);
            }
            std::fs::write(dir.join(format!("f{d}.cuh")), text).unwrap();
        }
        dir.join("f0.cuh")
    }

    #[test]
    fn fan_out_includes_stop_with_a_size_error() {
        let dir = tempfile::tempdir().unwrap();
        // 10^8 copies of the leaf: unbounded without a limit on the expanded size.
        let top = fan_out_tree(dir.path(), 8, 10, &format!("// {}\n", "x".repeat(2000)));
        let err = format!("{:#}", load_source(&top).unwrap_err());
        assert!(err.contains("larger than 8 MiB") && err.contains("f0.cuh"), "{err}");
    }

    #[test]
    fn fan_out_of_empty_headers_stops_at_the_include_count() {
        let dir = tempfile::tempdir().unwrap();
        let top = fan_out_tree(dir.path(), 8, 10, "");
        let err = format!("{:#}", load_source(&top).unwrap_err());
        assert!(err.contains("#include lines expanded"), "{err}");
    }

    #[test]
    fn a_small_include_tree_still_expands() {
        let dir = tempfile::tempdir().unwrap();
        let top = fan_out_tree(dir.path(), 2, 3, "int a;\n");
        // 1 + 3 + 9 copies of the body.
        assert_eq!(load_source(&top).unwrap().matches("int a;").count(), 13);
    }

    #[test]
    fn kernlab_headers_are_built_in_and_unknown_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("k.cu");
        std::fs::write(&k, "#include <cuda_bf16.h>\n#include <kernlab/element_type.cuh>\nT x;\n").unwrap();
        let src = load_source(&k).unwrap();
        assert!(src.contains("#include <cuda_bf16.h>") && src.contains("kl_from_f"), "{src}");
        assert!(!src.contains("<kernlab/"), "{src}");
        std::fs::write(&k, "#include <kernlab/nope.cuh>\n").unwrap();
        let err = format!("{:#}", load_source(&k).unwrap_err());
        assert!(err.contains("<kernlab/nope.cuh>") && err.contains("kernlab/element_type.cuh"), "{err}");
    }

    #[test]
    fn rejects_bad_arch_names() {
        assert!(validate_arch("sm_90a").is_ok());
        assert!(validate_arch("sm_86").is_ok());
        assert!(validate_arch("compute_90").is_err());
        assert!(validate_arch("sm_").is_err());
        assert!(validate_arch("hopper").is_err());
    }
}
