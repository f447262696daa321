//! Disk cache of compiled modules, keyed by (source hash, defines, arch, NVRTC version).
//!
//! A repeated sweep of the same space compiles nothing: each module is a `<key>.cubin`
//! beside a `<key>.json` with its resource report. Entries are written to a temporary name
//! and renamed, so a crash mid-write never leaves a truncated cubin under a valid key.

use super::nvrtc::{self, CompileRequest, CompiledModule};
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Bumped when the compile options change, so stale cubins are not reused.
const OPTIONS_EPOCH: &str = "opts-v1: --std=c++17 -lineinfo --ptxas-options=-v";

/// Short hex hash of a template's source text (what the tuned database keys on).
pub fn source_hash(source: &str) -> String {
    let d = Sha256::digest(source.as_bytes());
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The cache key of a request under a given NVRTC version.
pub fn cache_key(req: &CompileRequest, nvrtc_version: &str) -> String {
    let mut h = Sha256::new();
    for part in [req.source.as_str(), &req.defines_string(), &req.arch, nvrtc_version, OPTIONS_EPOCH] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Default cache folder: `$KERNLAB_CACHE_DIR`, else `~/.cache/kernlab/modules`.
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("KERNLAB_CACHE_DIR") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("kernlab/modules")
}

#[derive(Debug, Clone)]
pub struct ModuleCache {
    dir: PathBuf,
    nvrtc_version: String,
}

impl ModuleCache {
    pub fn open(dir: &Path) -> Result<ModuleCache> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating module cache {}", dir.display()))?;
        Ok(ModuleCache { dir: dir.to_path_buf(), nvrtc_version: nvrtc::version()? })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn nvrtc_version(&self) -> &str {
        &self.nvrtc_version
    }

    /// The cached module for `req`, if any.
    pub fn get(&self, req: &CompileRequest) -> Option<CompiledModule> {
        let key = cache_key(req, &self.nvrtc_version);
        let cubin = std::fs::read(self.dir.join(format!("{key}.cubin"))).ok()?;
        let meta = std::fs::read(self.dir.join(format!("{key}.json"))).ok()?;
        let mut m: CompiledModule = serde_json::from_slice(&meta).ok()?;
        m.cubin = cubin;
        m.cached = true;
        Some(m)
    }

    /// Compiles `req` unless it is cached, and caches the result.
    pub fn get_or_compile(&self, req: &CompileRequest) -> Result<CompiledModule> {
        if let Some(m) = self.get(req) {
            return Ok(m);
        }
        let m = nvrtc::compile(req)?;
        self.put(req, &m)?;
        Ok(m)
    }

    fn put(&self, req: &CompileRequest, m: &CompiledModule) -> Result<()> {
        let key = cache_key(req, &self.nvrtc_version);
        let tmp = format!(".{}.{}", std::process::id(), key);
        let write = |ext: &str, bytes: &[u8]| -> Result<()> {
            let t = self.dir.join(format!("{tmp}.{ext}"));
            std::fs::write(&t, bytes).with_context(|| format!("writing {}", t.display()))?;
            std::fs::rename(&t, self.dir.join(format!("{key}.{ext}")))?;
            Ok(())
        };
        write("cubin", &m.cubin)?;
        write("json", &serde_json::to_vec_pretty(m)?)?;
        Ok(())
    }

    /// Path of the cached cubin for `req` (whether or not it exists yet).
    pub fn cubin_path(&self, req: &CompileRequest) -> PathBuf {
        self.dir.join(format!("{}.cubin", cache_key(req, &self.nvrtc_version)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn req(src: &str, defs: &[(&str, &str)], arch: &str) -> CompileRequest {
        CompileRequest {
            name: "t.cu".into(),
            source: src.into(),
            defines: defs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            arch: arch.into(),
        }
    }

    #[test]
    fn key_depends_on_every_part() {
        let base = req("a", &[("BM", "64")], "sm_90a");
        let k = cache_key(&base, "13.0");
        assert_eq!(k, cache_key(&req("a", &[("BM", "64")], "sm_90a"), "13.0"));
        assert_ne!(k, cache_key(&req("b", &[("BM", "64")], "sm_90a"), "13.0"));
        assert_ne!(k, cache_key(&req("a", &[("BM", "128")], "sm_90a"), "13.0"));
        assert_ne!(k, cache_key(&req("a", &[("BM", "64")], "sm_90"), "13.0"));
        assert_ne!(k, cache_key(&base, "13.1"));
        // Define order never matters: they are kept sorted.
        let ab = req("a", &[("A", "1"), ("B", "2")], "sm_90");
        let ba = req("a", &[("B", "2"), ("A", "1")], "sm_90");
        assert_eq!(cache_key(&ab, "13.0"), cache_key(&ba, "13.0"));
    }

    #[test]
    fn source_hash_is_short_and_stable() {
        assert_eq!(source_hash("x"), source_hash("x"));
        assert_ne!(source_hash("x"), source_hash("y"));
        assert_eq!(source_hash("x").len(), 16);
    }
}
