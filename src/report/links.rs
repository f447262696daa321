//! Links from the report page to the files it names: relative to the page's folder, so
//! the page and its folder can be moved, copied or served together.

use super::escape::escape;
use std::path::{Path, PathBuf};

/// An absolute form of `p` for comparing paths: canonical when it exists.
fn absolute(p: &Path) -> PathBuf {
    let p = if p.as_os_str().is_empty() { Path::new(".") } else { p };
    std::fs::canonicalize(p).or_else(|_| std::path::absolute(p)).unwrap_or_else(|_| p.to_path_buf())
}

/// The link target of `path` from a page in `html_dir`: `gemm.csv` beside the page,
/// `../reports/gemm.csv` elsewhere; percent-encoded where URLs need it.
pub fn href(path: &Path, html_dir: &Path) -> String {
    let (target, base) = (absolute(path), absolute(html_dir));
    let rel = pathdiff::diff_paths(&target, &base)
        .or_else(|| path.file_name().map(PathBuf::from))
        .unwrap_or_else(|| path.to_path_buf());
    let mut out = String::new();
    for (i, part) in rel.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        for b in part.to_string_lossy().bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
    }
    out
}

/// The file name of `path` as text, for link labels.
pub fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// `<a href="…">name</a>` for a file.
pub fn file_link(path: &Path, html_dir: &Path) -> String {
    format!("<a href=\"{}\">{}</a>", escape(&href(path, html_dir)), escape(&file_name(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_relative_to_the_page() {
        let tmp = tempfile::tempdir().unwrap();
        let (reports, site) = (tmp.path().join("reports"), tmp.path().join("site"));
        std::fs::create_dir_all(&reports).unwrap();
        std::fs::create_dir_all(&site).unwrap();
        let csv = reports.join("gemm run.csv");
        std::fs::write(&csv, "x").unwrap();
        assert_eq!(href(&csv, &reports), "gemm%20run.csv");
        assert_eq!(href(&csv, &site), "../reports/gemm%20run.csv");
        assert!(!href(&csv, &site).starts_with('/'));
    }
}
