//! The one writer of a sweep CSV.
//!
//! A writer holds an exclusive lock on the CSV file itself for its whole life, so a second
//! sweep pointed at the same file is refused at once instead of interleaving rows (or
//! writing a second header). Under that lock it reads what is already there, cuts off
//! anything after the last whole row (so the next row never lands on a partial line),
//! and then appends one row at a time, each synced to disk before `append` returns.

use super::csv_file::{encode_header, encode_row, parse_sweep_csv};
use super::{header, legacy_header, pre_gpu_header, CandidateRecord};
use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Appends records to a sweep CSV, syncing after every row.
pub struct RecordWriter {
    path: PathBuf,
    file: File,
    /// The columns rows are written in (without `row_check`): this kernlab's layout for a
    /// new file, the file's own when continuing an older one.
    columns: Vec<String>,
    /// Rows carry a `row_check` (false only when continuing a file from before it existed).
    checked: bool,
    /// The file is empty: the header goes out with the first row.
    header_pending: bool,
    /// Bytes in the file: a failed write is cut back to this.
    len: u64,
    /// The file held nothing of value when opened: remove it again if nothing is written.
    fresh: bool,
    previous: Vec<CandidateRecord>,
}

impl RecordWriter {
    /// Opens `path` as the only writer. A new (or empty) file gets the header with its first
    /// row. A file that already holds rows is continued only with `resume` and only if its
    /// columns match, so rows of different sweeps are never mixed in one file; its trusted
    /// rows are then available from [`RecordWriter::take_previous`].
    pub fn open(path: &Path, dim_names: &[String], param_names: &[String], resume: bool) -> Result<RecordWriter> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
        }
        let mut names = param_names.to_vec();
        names.sort();
        names.dedup();
        let mut columns = header(dim_names, &names);
        columns.pop(); // row_check, added to each row by encode_row
        let mut file = open_locked(path)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data).with_context(|| format!("reading {}", path.display()))?;
        let mut w = RecordWriter {
            path: path.to_path_buf(),
            file,
            columns,
            checked: true,
            header_pending: true,
            len: 0,
            fresh: false,
            previous: Vec::new(),
        };
        if is_torn_header(&data, &w.columns) {
            // Nothing but (part of) our own header: a sweep that was stopped before its
            // first row was whole. Start the file afresh.
            w.cut_to(0, data.len() as u64)?;
            w.fresh = true;
            return Ok(w);
        }
        if !resume {
            bail!(
                "{} already holds results; pass --resume to continue that sweep (measured candidates are skipped) \
                 or --out <file> to start a new one",
                path.display()
            );
        }
        let found = parse_sweep_csv(&data).with_context(|| format!("reading {}", path.display()))?;
        let mut current = w.columns.clone();
        current.push(super::ROW_CHECK.to_string());
        let mut before_gpus = pre_gpu_header(dim_names, &names);
        if found.headers == current {
            w.checked = true;
        } else if found.headers == before_gpus {
            // Written before rows named their GPU: continue without those two columns.
            before_gpus.pop();
            w.columns = before_gpus;
        } else if let Some(checked) = [true, false].into_iter().find(|c| found.headers == legacy_header(&names, *c)) {
            // Keep the file's own layout: one file, one set of columns.
            w.checked = checked;
            w.columns = legacy_header(&names, false);
        } else {
            bail!(
                "{} was written by a different sweep (its columns differ); \
                 pass another --out file or delete it to start afresh",
                path.display()
            );
        }
        w.header_pending = found.complete_len == 0; // the header itself was cut short
        w.cut_to(found.complete_len, data.len() as u64)?;
        if !found.untrusted_lines.is_empty() {
            let lines: Vec<String> = found.untrusted_lines.iter().take(5).map(|l| l.to_string()).collect();
            eprintln!(
                "  {}: {} row(s) cut short or failing their row_check (line {}{}); they will be measured again",
                path.display(),
                found.untrusted_lines.len(),
                lines.join(", "),
                if found.untrusted_lines.len() > 5 { ", ..." } else { "" }
            );
        }
        w.previous = found.records;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The trusted rows that were in the file when it was opened (empty after the first call).
    pub fn take_previous(&mut self) -> Vec<CandidateRecord> {
        std::mem::take(&mut self.previous)
    }

    /// Writes one row and syncs it to disk before returning.
    pub fn append(&mut self, rec: &CandidateRecord) -> Result<()> {
        let mut bytes = if self.header_pending { encode_header(&self.columns, self.checked)? } else { vec![] };
        bytes.extend(encode_row(&rec.to_row(&self.columns), self.checked)?);
        let written = self.file.write_all(&bytes).and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Never leave a partial row for the next one to be glued to.
            let _ = self.file.set_len(self.len);
            return Err(e).with_context(|| format!("writing {}", self.path.display()));
        }
        self.header_pending = false;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Truncates the file to `keep` bytes (from `had`): what follows the last whole row
    /// (already reported as an untrusted row) goes, so the next row starts on a new line.
    fn cut_to(&mut self, keep: u64, had: u64) -> Result<()> {
        if keep < had {
            self.file
                .set_len(keep)
                .and_then(|()| self.file.sync_data())
                .with_context(|| format!("cutting the torn end off {}", self.path.display()))?;
        }
        self.len = keep;
        Ok(())
    }
}

impl Drop for RecordWriter {
    /// A file the sweep created but wrote nothing to is removed (while still locked), so an
    /// empty file is never taken for "the latest sweep" by `--resume`.
    fn drop(&mut self) {
        if self.fresh && self.len == 0 {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether `data` is empty or a prefix of the header line this sweep would write.
fn is_torn_header(data: &[u8], columns: &[String]) -> bool {
    // The whole header alone counts too: no row was ever written.
    let full = encode_header(columns, true).unwrap_or_default();
    full.starts_with(data)
}

/// Opens `path` for reading and appending under its exclusive lock, or says who holds it.
fn open_locked(path: &Path) -> Result<File> {
    // A writer that created the file removes it again when it wrote nothing; a second
    // writer that opened the path just before may then hold the lock of a file no longer
    // there. It checks that its file is still the one at `path`, and if not opens again.
    for _ in 0..3 {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("opening {} for appending", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => bail!(
                "{} is being written by another kernlab sweep (it holds the file's lock); \
                 wait for it to finish, or pass another --out file",
                path.display()
            ),
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
        if still_at(&file, path) {
            return Ok(file);
        }
    }
    bail!("{} keeps being replaced while it is opened; is another sweep starting on it?", path.display())
}

#[cfg(unix)]
fn still_at(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn still_at(_file: &File, path: &Path) -> bool {
    path.exists()
}
