//! Guards the kernel source text the tuned database is keyed by.
//!
//! A tuned entry is valid only for the variant source it was measured with (its
//! `source_hash`: sha256 of the template with its `#include "..."` lines expanded). This test
//! computes, through the same code the tuner and the binary use, every hash and every text
//! that reaches NVRTC or a hash, and compares them with `tests/fixtures/source_hashes.txt`:
//!
//! - `sweep`: each variant of sweeps/*.toml and sweeps/big/*.toml, loaded by `Sweep::load`;
//! - `file`: every .cu under kernels/ and tests/fixtures/, expanded by `nvrtc::load_source`;
//! - `embedded`: the reference templates built into the binary, expanded by
//!   `expand_embedded_headers` as `support::reference_kernels` does;
//! - `raw`: templates built into the binary whose text goes to NVRTC (or a hash) unexpanded;
//! - `defaults`: the tunable defaults read from the unexpanded embedded templates.
//!
//! A refactor of the templates (e.g. moving a shared block into a header) must leave the
//! list unchanged. A deliberate kernel change updates it: run with `KERNLAB_BLESS=1`.

mod common;

use common::files_below;
use kernlab::gpu::cache::source_hash;
use kernlab::gpu::nvrtc::load_source;
use kernlab::kernels::support::expand_embedded_headers;
use kernlab::kernels::tunables::template_defaults;
use kernlab::kernels::DType;
use kernlab::tune::space::Sweep;
use std::path::{Path, PathBuf};

const LIST: &str = "tests/fixtures/source_hashes.txt";

/// Reference templates compiled through `support::reference_kernels` (embedded headers).
const EMBEDDED_REFERENCES: &[&str] = &[
    "kernels/attention/reference.cu",
    "kernels/rmsnorm/reference.cu",
    "kernels/rope/reference.cu",
    "kernels/softmax/reference.cu",
    "kernels/swiglu/reference.cu",
];

/// Templates embedded with `include_str!` whose text is compiled or hashed as it stands.
const RAW_EMBEDDED: &[&str] = &[
    "kernels/gemm_int4/act_order.cu",
    "kernels/gemm_int4/quantize.cu",
    "kernels/gemm_int4/reference.cu",
    "kernels/gemm_int4/repack.cu",
    "kernels/gemm_int8/quantize.cu",
    "kernels/llama/ops.cu",
    "kernels/roofline/ceilings.cu",
    "kernels/user/helpers.cu",
    "kernels/util/util.cu",
];

/// Templates embedded with `include_str!` whose tunable defaults are read from the
/// unexpanded text (`Tunables::from_template`, `template_defaults`).
const DEFAULTS_EMBEDDED: &[&str] = &[
    "kernels/attention/decode_splitkv.cu",
    "kernels/attention/prefill.cu",
    "kernels/attention/prefill_wgmma.cu",
    "kernels/rmsnorm/rmsnorm_rows.cu",
    "kernels/rope/rope_llama3.cu",
    "kernels/swiglu/swiglu.cu",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

fn sweep_lines(out: &mut Vec<String>) {
    let mut sweeps = files_below(&root().join("sweeps"), &["toml"]);
    sweeps.sort();
    for path in sweeps {
        let text = std::fs::read_to_string(&path).unwrap();
        let v: toml::Value = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let family =
            v.get("family").and_then(|f| f.as_str()).unwrap_or_else(|| panic!("{}: no family", path.display()));
        let fam = kernlab::tune::family(family).unwrap();
        let sweep = Sweep::load(&path, fam.shape_dims()).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        for var in &sweep.variants {
            out.push(format!("sweep {} {} {}", rel(&path), var.name, source_hash(&var.source)));
        }
    }
}

fn file_lines(out: &mut Vec<String>) {
    let mut files = files_below(&root().join("kernels"), &["cu"]);
    files.extend(files_below(&root().join("tests/fixtures"), &["cu"]));
    for path in files {
        let src = load_source(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        out.push(format!("file {} {}", rel(&path), source_hash(&src)));
    }
}

fn read(f: &str) -> String {
    std::fs::read_to_string(root().join(f)).unwrap_or_else(|e| panic!("reading {f}: {e}"))
}

fn embedded_lines(out: &mut Vec<String>) {
    for f in EMBEDDED_REFERENCES {
        let src = expand_embedded_headers(f, &read(f)).unwrap_or_else(|e| panic!("{f}: {e:#}"));
        assert_eq!(src, load_source(&root().join(f)).unwrap(), "{f}: embedded and on-disk expansions differ");
        out.push(format!("embedded {f} {}", source_hash(&src)));
    }
    for f in RAW_EMBEDDED {
        out.push(format!("raw {f} {}", source_hash(&read(f))));
    }
    for f in DEFAULTS_EMBEDDED {
        let text = read(f);
        for dt in [DType::BF16, DType::F16, DType::F32] {
            let d = template_defaults(&text, dt);
            let kv: Vec<String> = d.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push(format!("defaults {f} {} {}", dt.name(), kv.join(",")));
        }
    }
}

#[test]
fn kernel_sources_match_the_committed_hashes() {
    let mut lines = Vec::new();
    sweep_lines(&mut lines);
    file_lines(&mut lines);
    embedded_lines(&mut lines);
    let got = lines.join("\n") + "\n";
    let list = root().join(LIST);
    if std::env::var_os("KERNLAB_BLESS").is_some() {
        std::fs::write(&list, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&list).unwrap_or_default();
    if got != want {
        let want_lines: Vec<&str> = want.lines().collect();
        let got_lines: Vec<&str> = got.lines().collect();
        let gone: Vec<&&str> = want_lines.iter().filter(|l| !got_lines.contains(l)).collect();
        let new: Vec<&&str> = got_lines.iter().filter(|l| !want_lines.contains(l)).collect();
        panic!(
            "kernel source text changed against {LIST}: tuned-database entries keyed by the old \
             hashes no longer match.\n  was:\n    {}\n  now:\n    {}\n\
             If the change is deliberate, regenerate the list: \
             KERNLAB_BLESS=1 cargo test --release --test source_hashes",
            gone.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("\n    "),
            new.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("\n    "),
        );
    }
}
