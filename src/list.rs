//! `kernlab list`: what can be tuned — the built-in families (variants, default shapes and
//! dtypes, size of the space before constraints) and the kernels described in sweep files
//! under sweeps/ and examples/.

use crate::kernels;
use crate::tune::space::Sweep;
use crate::tune::user;
use std::path::{Path, PathBuf};

/// One line of the listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    pub file: PathBuf,
    pub variants: Vec<String>,
    pub dtypes: Vec<String>,
    pub shapes: Vec<String>,
    /// Points of all variants before the constraints.
    pub space: u128,
    /// Why the file could not be read, instead of the figures.
    pub error: Option<String>,
}

fn row(name: &str, file: &Path, sweep: anyhow::Result<Sweep>) -> Row {
    match sweep {
        Ok(s) => Row {
            name: name.to_string(),
            file: file.to_path_buf(),
            variants: s.variants.iter().map(|v| v.name.clone()).collect(),
            dtypes: s.dtypes.clone(),
            shapes: s.shapes.clone(),
            space: s.variants.iter().map(|v| v.size()).fold(0u128, |a, b| a.saturating_add(b)),
            error: None,
        },
        Err(e) => Row {
            name: name.to_string(),
            file: file.to_path_buf(),
            variants: vec![],
            dtypes: vec![],
            shapes: vec![],
            space: 0,
            error: Some(format!("{e:#}")),
        },
    }
}

/// The built-in families, each from its `sweeps/<family>.toml`.
pub fn families() -> Vec<Row> {
    kernels::families()
        .into_iter()
        .map(|f| {
            let path = crate::paths::sweep_file(f.name());
            row(f.name(), &path, Sweep::load(&path, f.shape_dims()))
        })
        .collect()
}

/// The user kernels found in sweeps/ and examples/ (a broken file is listed with its error).
pub fn user_kernels() -> Vec<Row> {
    user::discover()
        .into_iter()
        .map(|(path, name)| {
            let sweep = user::UserFamily::load(&path).map(|f| f.sweep);
            row(&name, &path, sweep)
        })
        .collect()
}

fn relative(p: &Path) -> String {
    let root = crate::paths::project_root();
    p.strip_prefix(&root).unwrap_or(p).display().to_string()
}

/// The listing as text: one table for the families, one for the user kernels.
pub fn format(families: &[Row], users: &[Row]) -> String {
    let mut out = String::new();
    let table = |out: &mut String, title: &str, rows: &[Row]| {
        out.push_str(&format!("{title}\n"));
        out.push_str(&format!(
            "  {:<24} {:>9}  {:<12} {:<36} {}\n",
            "name", "space", "dtypes", "variants", "default shapes"
        ));
        for r in rows {
            if let Some(e) = &r.error {
                out.push_str(&format!("  {:<24} cannot read {}: {e}\n", r.name, relative(&r.file)));
                continue;
            }
            let shapes = if r.shapes.len() > 4 {
                format!("{} … ({} shapes)", r.shapes[..4].join(", "), r.shapes.len())
            } else {
                r.shapes.join(", ")
            };
            out.push_str(&format!(
                "  {:<24} {:>9}  {:<12} {:<36} {}\n",
                r.name,
                r.space,
                r.dtypes.join(","),
                r.variants.join(", "),
                shapes
            ));
        }
    };
    table(&mut out, "built-in families (sweeps/<family>.toml; space = points before constraints):", families);
    out.push('\n');
    if users.is_empty() {
        out.push_str(
            "no user kernels in sweeps/ or examples/ (a sweep file with a [kernel] table; see docs/user-kernels.md)\n",
        );
    } else {
        table(&mut out, "user kernels (sweep files with a [kernel] table):", users);
        for r in users {
            out.push_str(&format!("  {:<24} kernlab sweep {}\n", r.name, relative(&r.file)));
        }
    }
    out
}

/// Entry point of `kernlab list`.
pub fn run() -> anyhow::Result<std::process::ExitCode> {
    print!("{}", format(&families(), &user_kernels()));
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_and_example_is_listed_with_its_space() {
        let fams = families();
        assert_eq!(fams.len(), kernels::families().len());
        assert!(fams.iter().all(|r| r.error.is_none() && r.space > 0 && !r.variants.is_empty()), "{fams:?}");
        let users = user_kernels();
        let names: Vec<&str> = users.iter().map(|r| r.name.as_str()).collect();
        for want in ["bias_gelu", "row_sum", "transpose"] {
            assert!(names.contains(&want), "{names:?}");
        }
        let t = users.iter().find(|r| r.name == "transpose").unwrap();
        // TILE (3) × ROWS (4) × PAD (2), from examples/transpose/transpose.toml.
        assert_eq!((t.space, t.variants.clone()), (24, vec!["tiled".to_string()]));
        let text = format(&fams, &users);
        assert!(text.contains("gemm") && text.contains("kernlab sweep examples/transpose/transpose.toml"), "{text}");
    }

    #[test]
    fn a_broken_user_file_is_listed_with_its_error() {
        let r = row("x", Path::new("x.toml"), Err(anyhow::anyhow!("x.toml:3: bad")));
        let text = format(&[], &[r]);
        assert!(text.contains("cannot read x.toml: x.toml:3: bad"), "{text}");
    }
}
