//! `kernlab export <family-or-kernel>`: its arguments, the winners collected by
//! `tune::export`, and the header and JSON files written for the user's launcher.

use crate::tune::db::TunedDb;
use crate::tune::export::collect;
use crate::tune::export_header;
use crate::tune::user::sweep_cli;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  kernlab export gemm
  kernlab export transpose --out-dir include/
  kernlab export examples/bias_gelu/bias_gelu.toml --db tuned.json --gpu H200")]
pub struct ExportArgs {
    /// A built-in family, a user kernel's name, or its sweep file, e.g. gemm.
    #[arg(value_name = "KERNEL")]
    pub kernel: String,
    /// Tuned-config database, e.g. --db tuned.json. Default: reports/tuned.json.
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// Folder for <kernel>.h and <kernel>.json, e.g. --out-dir include/. Default: reports/export.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Export the winners of this GPU (a part of its name) when the database holds several,
    /// e.g. --gpu H200.
    #[arg(long, value_name = "NAME")]
    pub gpu: Option<String>,
}

/// Entry point of `kernlab export`.
pub fn run(a: ExportArgs) -> Result<std::process::ExitCode> {
    let (name, _) = sweep_cli::resolve(&a.kernel, None)?;
    let db_path = a.db.unwrap_or_else(crate::paths::default_db);
    let db = TunedDb::load(&db_path)?;
    let x = collect(&db, &name, a.gpu.as_deref()).with_context(|| format!("exporting from {}", db_path.display()))?;
    let dir = a.out_dir.unwrap_or_else(|| crate::paths::reports_dir().join("export"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let stem = export_header::ident(&name);
    let (h, j) = (dir.join(format!("{stem}.h")), dir.join(format!("{stem}.json")));
    std::fs::write(&h, export_header::header(&x)).with_context(|| format!("writing {}", h.display()))?;
    std::fs::write(&j, serde_json::to_string_pretty(&x)? + "\n").with_context(|| format!("writing {}", j.display()))?;
    println!("{}: {} winners on {} (cc {}, NVRTC {})", name, x.entries.len(), x.gpu, x.cc, x.nvrtc);
    if x.stale > 0 {
        println!("  left out {} winners measured with an older version of the templates", x.stale);
    }
    println!("  header {}\n  json   {}", h.display(), j.display());
    Ok(std::process::ExitCode::SUCCESS)
}
