//! Checks of a sweep's inputs before any compile or GPU work, with errors that say where
//! each bad value came from: the flag (`--shape 16x40x`) or the sweep file's line
//! (`sweeps/gemm.toml:9: shape "16x40x"`). Dry runs and real sweeps both start here, so a
//! mistake that a dry run lets through cannot first show up an hour into a sweep.

use super::space::Sweep;
use crate::kernels::{DType, Family, Shape};
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;

/// Where a value came from, for the error that names it.
enum Origin<'a> {
    /// A command-line flag, e.g. `--shape`.
    Flag(&'static str),
    /// A list in the sweep file, e.g. `shapes`; the value is found in `text` for its line.
    File { path: &'a Path, text: &'a str, what: &'static str },
}

impl Origin<'_> {
    /// `--shape 16x40x` or `sweeps/gemm.toml:9: shape "16x40x"`.
    fn label(&self, value: &str) -> String {
        match self {
            Origin::Flag(flag) => format!("{flag} {value}"),
            Origin::File { path, text, what } => format!("{}: {what} {value:?}", located(path, text, value)),
        }
    }
}

/// `path:line` of the first line holding `value` in quotes, or the bare path if none does.
/// (A text search, not a TOML span: good enough for the short lists of a sweep file.)
pub fn located(path: &Path, text: &str, value: &str) -> String {
    let quoted = format!("\"{value}\"");
    match text.lines().position(|l| l.contains(&quoted)) {
        Some(i) => format!("{}:{}", path.display(), i + 1),
        None => path.display().to_string(),
    }
}

/// Resolves and checks everything `kernlab sweep <family> [--file F] [--shape S] [--dtype D]`
/// names: the family against the file's own `family`, every variant against the family's
/// kernels, every dtype and shape (and each pair of them against the family's limits).
/// Returns the family and the loaded sweep.
pub fn check_sweep_inputs(
    family_arg: &str,
    sweep_path: &Path,
    shapes: &[String],
    dtypes: &[String],
) -> Result<(&'static dyn Family, Sweep)> {
    let fam = crate::tune::family(family_arg)?;
    let file_family = super::sweep_setup::family_of_sweep(sweep_path)?;
    if file_family.name() != fam.name() {
        bail!(
            "{} is a sweep of family {:?}, not {:?}: run `kernlab sweep {} --file {}`, or give a {} sweep file",
            sweep_path.display(),
            file_family.name(),
            fam.name(),
            file_family.name(),
            sweep_path.display(),
            fam.name()
        );
    }
    let sweep = Sweep::load(sweep_path, fam.shape_dims())?;
    let text = std::fs::read_to_string(sweep_path).with_context(|| format!("reading {}", sweep_path.display()))?;
    check_variants(fam, &sweep, &text)?;

    let file = |what| Origin::File { path: sweep_path, text: &text, what };
    let (dtype_texts, dtype_origin) =
        if dtypes.is_empty() { (&sweep.dtypes[..], file("dtype")) } else { (dtypes, Origin::Flag("--dtype")) };
    let (shape_texts, shape_origin) =
        if shapes.is_empty() { (&sweep.shapes[..], file("shape")) } else { (shapes, Origin::Flag("--shape")) };
    let mut parsed_dtypes = Vec::new();
    for d in dtype_texts {
        parsed_dtypes.push(DType::parse(d).map_err(|e| anyhow!("{}: {e:#}", dtype_origin.label(d)))?);
    }
    for s in shape_texts {
        let shape = Shape::parse(s, fam.shape_dims()).map_err(|e| anyhow!("{}: {e:#}", shape_origin.label(s)))?;
        for dt in &parsed_dtypes {
            fam.validate(&shape, *dt).map_err(|e| anyhow!("{} ({}): {e:#}", shape_origin.label(s), dt.name()))?;
        }
    }
    Ok((fam, sweep))
}

/// Every variant of the sweep must be one the family can launch; the error names the
/// file and the line of the variant's `name`.
pub fn check_variants(fam: &dyn Family, sweep: &Sweep, text: &str) -> Result<()> {
    for v in &sweep.variants {
        fam.entries(&v.name)
            .map_err(|e| anyhow!("{}: variant {:?}: {e:#}", located(&sweep.path, text, &v.name), v.name))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gemm_sweep() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sweeps/gemm.toml")
    }

    fn err(shapes: &[&str], dtypes: &[&str]) -> String {
        let s: Vec<String> = shapes.iter().map(|x| x.to_string()).collect();
        let d: Vec<String> = dtypes.iter().map(|x| x.to_string()).collect();
        format!("{:#}", check_sweep_inputs("gemm", &gemm_sweep(), &s, &d).err().expect("an error"))
    }

    #[test]
    fn flags_are_named_in_shape_and_dtype_errors() {
        assert!(err(&["16x40x"], &[]).starts_with("--shape 16x40x: "), "{}", err(&["16x40x"], &[]));
        assert!(err(&["1x4096x4097"], &[]).starts_with("--shape 1x4096x4097 (bf16): "));
        assert!(err(&[], &["int3"]).starts_with("--dtype int3: "), "{}", err(&[], &["int3"]));
    }

    #[test]
    fn sweep_file_lines_are_named_in_shape_and_dtype_errors() {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(gemm_sweep()).unwrap();
        let p = dir.path().join("gemm.toml");
        let line = |t: &str, needle: &str| t.lines().position(|l| l.contains(needle)).unwrap() + 1;
        // (Template paths like "kernels/gemm/x.cu" still resolve from the project root.)

        let bad_shape = text.replacen("shapes = [", "shapes = [\"16x40x\", ", 1);
        std::fs::write(&p, &bad_shape).unwrap();
        let e = format!("{:#}", check_sweep_inputs("gemm", &p, &[], &[]).err().expect("an error"));
        let want = format!("{}:{}: shape \"16x40x\": bad shape", p.display(), line(&bad_shape, "\"16x40x\""));
        assert!(e.starts_with(&want), "{e}\nwanted {want}");

        let bad_dtype = text.replacen("dtypes = [\"bf16\"]", "dtypes = [\"bf16\", \"int3\"]", 1);
        std::fs::write(&p, &bad_dtype).unwrap();
        let e = format!("{:#}", check_sweep_inputs("gemm", &p, &[], &[]).err().expect("an error"));
        let want = format!("{}:{}: dtype \"int3\"", p.display(), line(&bad_dtype, "\"int3\""));
        assert!(e.starts_with(&want), "{e}\nwanted {want}");
    }

    #[test]
    fn the_family_argument_must_match_the_file() {
        let softmax = Path::new(env!("CARGO_MANIFEST_DIR")).join("sweeps/softmax.toml");
        let e = format!("{:#}", check_sweep_inputs("gemm", &softmax, &[], &[]).err().expect("an error"));
        assert!(e.contains("family \"softmax\", not \"gemm\""), "{e}");
        assert!(check_sweep_inputs("softmax", &softmax, &[], &[]).is_ok());
    }

    #[test]
    fn every_shipped_sweep_passes() {
        for f in crate::kernels::families() {
            let path = crate::paths::sweep_file(f.name());
            check_sweep_inputs(f.name(), &path, &[], &[]).unwrap_or_else(|e| panic!("{}: {e:#}", f.name()));
        }
    }
}
