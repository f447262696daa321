//! What the NVRTC test files share: compiling many requests in parallel (NVRTC is
//! thread-safe) and failing once, with every compile error, missing entry point and spill
//! listed, instead of stopping at the first.
#![allow(dead_code)]

use kernlab::gpu::libs;
use kernlab::gpu::nvrtc::{self, CompileRequest};
use rayon::prelude::*;

/// Whether NVRTC is there to compile with. Where it is missing the caller's test says so and
/// passes, unless KERNLAB_REQUIRE_NVRTC=1 (set it in CI), which makes a missing NVRTC fail.
pub fn nvrtc_available() -> bool {
    match libs::nvrtc() {
        Ok(_) => true,
        Err(e) => {
            if std::env::var("KERNLAB_REQUIRE_NVRTC").is_ok_and(|v| v == "1") {
                panic!("KERNLAB_REQUIRE_NVRTC=1 but NVRTC is missing: {e:#}");
            }
            eprintln!("skipping the NVRTC compile checks: {e:#}");
            false
        }
    }
}

/// One compilation and what its module must show.
pub struct Job {
    pub label: String,
    pub req: CompileRequest,
    /// Entry points the module must hold (empty: at least one, whatever it is called).
    pub entries: Vec<&'static str>,
    /// Whether spill stores or loads fail the job.
    pub no_spills: bool,
}

impl Job {
    /// A job that must compile to at least one entry point and must not spill.
    pub fn new(label: impl Into<String>, req: CompileRequest) -> Job {
        Job { label: label.into(), req, entries: Vec::new(), no_spills: true }
    }

    pub fn with_entries(mut self, entries: Vec<&'static str>) -> Job {
        self.entries = entries;
        self
    }

    /// For compilations that only prove a configuration builds (spills are judged elsewhere).
    pub fn spills_allowed(mut self) -> Job {
        self.no_spills = false;
        self
    }

    fn failure(&self) -> Option<String> {
        let what = format!("{} for {}", self.label, self.req.arch);
        let m = match nvrtc::compile(&self.req) {
            Ok(m) => m,
            Err(e) => return Some(format!("{what}: {e:#}")),
        };
        if m.resources.is_empty() {
            return Some(format!("{what}: no entry points in the ptxas report"));
        }
        if let Some(e) = self.entries.iter().find(|e| !m.resources.contains_key(**e)) {
            return Some(format!("{what}: no entry point {e}"));
        }
        let spills: Vec<String> = m
            .resources
            .iter()
            .filter(|(_, r)| r.spill_store_bytes + r.spill_load_bytes > 0)
            .map(|(k, r)| format!("{k}: {} B spill stores, {} B spill loads", r.spill_store_bytes, r.spill_load_bytes))
            .collect();
        (self.no_spills && !spills.is_empty()).then(|| format!("{what} spills: {}", spills.join("; ")))
    }
}

/// Compiles every job in parallel and fails listing each failure.
pub fn assert_all_compile(jobs: Vec<Job>) {
    let failures: Vec<String> = jobs.par_iter().filter_map(Job::failure).collect();
    assert!(
        failures.is_empty(),
        "{} of {} compilations failed:\n{}",
        failures.len(),
        jobs.len(),
        failures.join("\n\n")
    );
}
