//! Where kernlab finds its project files (sweeps/, kernels/) and writes reports.

use std::path::{Path, PathBuf};

/// The project root: the current folder if it holds `sweeps/`, else the nearest ancestor of
/// the current folder or of the executable (target/release/kernlab → the checkout) that does.
pub fn project_root() -> PathBuf {
    let has = |p: &Path| p.join("sweeps").is_dir() && p.join("kernels").is_dir();
    if let Ok(cwd) = std::env::current_dir() {
        for a in cwd.ancestors() {
            if has(a) {
                return a.to_path_buf();
            }
        }
    }
    if let Ok(exe) = std::env::current_exe() {
        for a in exe.ancestors() {
            if has(a) {
                return a.to_path_buf();
            }
        }
    }
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

/// CSVs in reports/ that are not sweep results: the PyTorch peer table a sweep reads
/// (scripts/torch_peers.py), `kernlab e2e`'s benchmark rows and `kernlab quality`'s tables. Report and roofline pass over
/// them without a warning.
pub fn is_auxiliary_csv(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.starts_with("torch_peers") || name.starts_with("e2e") || name.starts_with("quality")
}

pub fn reports_dir() -> PathBuf {
    std::env::var_os("KERNLAB_REPORTS").map(PathBuf::from).unwrap_or_else(|| project_root().join("reports"))
}

/// The sweep file of a family (`sweeps/<family>.toml`).
pub fn sweep_file(family: &str) -> PathBuf {
    project_root().join("sweeps").join(format!("{family}.toml"))
}

pub fn default_db() -> PathBuf {
    reports_dir().join("tuned.json")
}

/// The newest `reports/<family>-*.csv`, for `--resume` without `--out`.
pub fn latest_sweep_csv(family: &str) -> Option<PathBuf> {
    let dir = reports_dir();
    let prefix = format!("{family}-");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            name.starts_with(&prefix)
                && name.ends_with(".csv")
                && name[prefix.len()..].starts_with(|c: char| c.is_ascii_digit())
        })
        .collect();
    found.sort();
    found.pop()
}

/// A fresh CSV name for a new sweep: `reports/<family>-<UTC timestamp>.csv`.
pub fn new_sweep_csv(family: &str) -> PathBuf {
    reports_dir().join(format!("{family}-{}.csv", chrono::Utc::now().format("%Y%m%d-%H%M%S")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_and_e2e_csvs_are_auxiliary() {
        assert!(is_auxiliary_csv(Path::new("reports/torch_peers.csv")));
        assert!(is_auxiliary_csv(Path::new("/x/e2e-20261127-101010.csv")));
        assert!(is_auxiliary_csv(Path::new("/x/quality-smollm2-20261202-101010.csv")));
        assert!(!is_auxiliary_csv(Path::new("reports/gemm-20261127.csv")));
    }
}
