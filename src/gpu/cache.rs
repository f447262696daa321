//! Disk cache of compiled modules, keyed by (source hash, defines, arch, NVRTC version).
//!
//! A repeated sweep of the same space compiles nothing: each module is a `<key>.cubin`
//! beside a `<key>.json` with its resource report. Entries are written to a temporary name
//! and renamed, so a crash mid-write never leaves a truncated cubin under a valid key. The
//! `.json` also records the cubin's SHA-256, checked on every load: a cubin damaged on disk
//! (a bad sector, a copy cut short, an edit) is noticed, recompiled and overwritten instead of
//! being loaded onto the GPU.

use super::nvrtc::{self, CompileRequest, CompiledModule};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
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

/// What the `.json` beside each cubin holds: the module's report and the cubin's hash.
#[derive(Serialize, Deserialize)]
struct Entry {
    #[serde(flatten)]
    module: CompiledModule,
    /// Hex SHA-256 of the `.cubin`; entries written before it existed have none and are
    /// recompiled once.
    #[serde(default)]
    cubin_sha256: String,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a cache entry was not used.
#[derive(Debug, PartialEq)]
enum Miss {
    /// Nothing (or only half an entry) under this key.
    Absent,
    /// The entry exists but cannot be trusted; the text says why.
    Corrupt(String),
}

/// Reads and verifies the entry `key` in `dir`.
fn read_entry(dir: &Path, key: &str) -> std::result::Result<CompiledModule, Miss> {
    let (Ok(cubin), Ok(meta)) =
        (std::fs::read(dir.join(format!("{key}.cubin"))), std::fs::read(dir.join(format!("{key}.json"))))
    else {
        return Err(Miss::Absent);
    };
    let entry: Entry =
        serde_json::from_slice(&meta).map_err(|e| Miss::Corrupt(format!("its .json does not parse ({e})")))?;
    if entry.cubin_sha256.is_empty() {
        return Err(Miss::Corrupt("its .json records no cubin hash (written by an older kernlab)".into()));
    }
    if sha256_hex(&cubin) != entry.cubin_sha256 {
        return Err(Miss::Corrupt("the cubin does not match the hash recorded beside it".into()));
    }
    let mut m = entry.module;
    m.cubin = cubin;
    m.cached = true;
    Ok(m)
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

    /// The cached module for `req`, if any. A damaged entry counts as absent, with a note on
    /// stderr (`get_or_compile` then recompiles and overwrites it).
    pub fn get(&self, req: &CompileRequest) -> Option<CompiledModule> {
        let key = cache_key(req, &self.nvrtc_version);
        match read_entry(&self.dir, &key) {
            Ok(m) => Some(m),
            Err(Miss::Absent) => None,
            Err(Miss::Corrupt(why)) => {
                let path = self.dir.join(format!("{key}.cubin"));
                eprintln!(
                    "note: module cache entry {} for {} is corrupt ({why}); recompiling",
                    path.display(),
                    req.name
                );
                None
            }
        }
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
        write_entry(&self.dir, &cache_key(req, &self.nvrtc_version), m)
    }

    /// Path of the cached cubin for `req` (whether or not it exists yet).
    pub fn cubin_path(&self, req: &CompileRequest) -> PathBuf {
        self.dir.join(format!("{}.cubin", cache_key(req, &self.nvrtc_version)))
    }
}

/// Writes an entry under `key`: the cubin first, then the `.json` with its hash, each through
/// a temporary name and a rename, so a reader never sees a half-written file under the key.
fn write_entry(dir: &Path, key: &str, m: &CompiledModule) -> Result<()> {
    let tmp = format!(".{}.{}", std::process::id(), key);
    let write = |ext: &str, bytes: &[u8]| -> Result<()> {
        let t = dir.join(format!("{tmp}.{ext}"));
        std::fs::write(&t, bytes).with_context(|| format!("writing {}", t.display()))?;
        std::fs::rename(&t, dir.join(format!("{key}.{ext}")))?;
        Ok(())
    };
    let entry = Entry { module: m.clone(), cubin_sha256: sha256_hex(&m.cubin) };
    write("cubin", &m.cubin)?;
    write("json", &serde_json::to_vec_pretty(&entry)?)?;
    Ok(())
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

    fn module(cubin: &[u8]) -> CompiledModule {
        CompiledModule {
            cubin: cubin.to_vec(),
            arch: "sm_90a".into(),
            nvrtc_version: "13.0".into(),
            resources: BTreeMap::new(),
            log: String::new(),
            compile_ms: 1.0,
            cached: false,
        }
    }

    #[test]
    fn an_intact_entry_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        write_entry(dir.path(), "k", &module(b"\x7fELF cubin bytes")).unwrap();
        let m = read_entry(dir.path(), "k").unwrap();
        assert_eq!((m.cubin.as_slice(), m.cached), (&b"\x7fELF cubin bytes"[..], true));
        assert_eq!(read_entry(dir.path(), "other").unwrap_err(), Miss::Absent);
    }

    #[test]
    fn a_damaged_cubin_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        write_entry(dir.path(), "k", &module(b"\x7fELF cubin bytes")).unwrap();
        std::fs::write(dir.path().join("k.cubin"), b"\x7fELF cubin bytez").unwrap();
        assert!(matches!(read_entry(dir.path(), "k"), Err(Miss::Corrupt(w)) if w.contains("does not match")));
        // Cut short, too.
        std::fs::write(dir.path().join("k.cubin"), b"\x7fELF").unwrap();
        assert!(matches!(read_entry(dir.path(), "k"), Err(Miss::Corrupt(_))));
    }

    #[test]
    fn an_entry_without_a_hash_or_with_bad_json_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k.cubin"), b"cubin").unwrap();
        std::fs::write(dir.path().join("k.json"), serde_json::to_vec(&module(b"")).unwrap()).unwrap();
        assert!(matches!(read_entry(dir.path(), "k"), Err(Miss::Corrupt(w)) if w.contains("no cubin hash")));
        std::fs::write(dir.path().join("k.json"), b"{ truncated").unwrap();
        assert!(matches!(read_entry(dir.path(), "k"), Err(Miss::Corrupt(_))));
    }

    /// Through NVRTC: a corrupted cubin is recompiled and the entry overwritten.
    #[test]
    fn a_corrupt_cached_cubin_is_recompiled_and_overwritten() {
        if let Err(e) = crate::gpu::libs::nvrtc() {
            assert!(std::env::var("KERNLAB_REQUIRE_NVRTC").map_or(true, |v| v != "1"), "NVRTC is missing: {e:#}");
            eprintln!("skipping: {e:#}");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let cache = ModuleCache::open(dir.path()).unwrap();
        let r = req("extern \"C\" __global__ void k(float* p) { p[threadIdx.x] = 1.0f; }\n", &[], "sm_80");
        let fresh = cache.get_or_compile(&r).unwrap();
        assert!(!fresh.cached);
        assert!(cache.get_or_compile(&r).unwrap().cached);
        let path = cache.cubin_path(&r);
        let mut bad = std::fs::read(&path).unwrap();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        std::fs::write(&path, &bad).unwrap();
        let again = cache.get_or_compile(&r).unwrap();
        assert!(!again.cached, "the corrupt cubin was used");
        assert_eq!(again.cubin, fresh.cubin);
        assert_eq!(std::fs::read(&path).unwrap(), fresh.cubin, "the entry was not overwritten");
        assert!(cache.get_or_compile(&r).unwrap().cached);
    }
}
