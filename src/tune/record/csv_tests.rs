//! The sweep CSV's promises: one writer, whole rows or none, torn rows measured again.

use super::tests::sample;
use super::*;
use std::io::Write;
use std::path::Path;

fn dims() -> Vec<String> {
    vec!["M".to_string(), "N".to_string(), "K".to_string()]
}

/// What a file from before the environment columns keeps of a record.
fn legacy(mut r: CandidateRecord) -> CandidateRecord {
    r.verify_ms = None;
    r.time_ms = None;
    r.env = RowEnv::default();
    r.dim_names.clear();
    r
}

fn names() -> Vec<String> {
    vec!["STAGES".to_string(), "BM".to_string()]
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    std::fs::OpenOptions::new().append(true).open(path).unwrap().write_all(bytes).unwrap();
}

/// Cuts the last `n` bytes off the file, as a kill in the middle of a write leaves it.
fn cut_tail(path: &Path, n: u64) {
    let len = std::fs::metadata(path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len - n).unwrap();
}

/// Opens a writer on `path` (continuing the file when `resume`), appends `rows` and closes it.
fn write_rows(path: &Path, resume: bool, rows: &[CandidateRecord]) {
    let mut w = RecordWriter::open(path, &dims(), &names(), resume).unwrap();
    for r in rows {
        w.append(r).unwrap();
    }
}

fn other() -> CandidateRecord {
    let mut b = sample();
    b.params.insert("BM".into(), 256);
    b.timing = Timing::from_samples(&[20.0]);
    b
}

#[test]
fn round_trip_with_append_reopen_and_awkward_cells() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.csv");
    let a = sample();
    let mut b = sample();
    b.status = Some(Status::CompileError);
    b.error = "line1\nline2, with comma \"quoted\"".into();
    b.timing = None;
    b.tflops = None;
    write_rows(&path, false, &[a.clone()]);
    // Reopening appends without a second header.
    let mut w = RecordWriter::open(&path, &dims(), &names(), true).unwrap();
    assert_eq!(w.take_previous().len(), 1);
    w.append(&b).unwrap();
    drop(w);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.matches("family,").count(), 1, "{text}");
    let back = read_records(&path).unwrap();
    assert_eq!(back.len(), 2);
    assert_eq!(back[0], a);
    assert_eq!(back[0].timing.unwrap().median_us, 12.0);
    assert_eq!(back[1].status, Some(Status::CompileError));
    assert_eq!(back[1].error, "line1 | line2, with comma \"quoted\"");
    assert!(back[1].timing.is_none());
}

#[test]
fn a_file_with_rows_is_continued_only_with_resume() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.csv");
    RecordWriter::open(&path, &dims(), &names(), false).unwrap().append(&sample()).unwrap();
    let err = RecordWriter::open(&path, &dims(), &names(), false).err().unwrap();
    assert!(format!("{err:#}").contains("--resume"), "{err:#}");
    assert_eq!(read_records(&path).unwrap().len(), 1);
}

#[test]
fn refuses_to_mix_sweeps_in_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.csv");
    RecordWriter::open(&path, &dims(), &["BM".to_string()], false).unwrap().append(&sample()).unwrap();
    let err = RecordWriter::open(&path, &dims(), &["ROWS".to_string()], true).err().unwrap();
    assert!(format!("{err:#}").contains("different sweep"));
}

#[test]
fn a_row_cut_inside_its_last_field_is_not_trusted() {
    for cut in 1..=3 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.csv");
        write_rows(&path, false, &[sample(), other()]);
        // The newline and 0..2 characters of the last field go missing.
        cut_tail(&path, cut);
        let back = read_records(&path).unwrap();
        assert_eq!(back, vec![sample()], "cut {cut}: only the whole row may be read back");
        // --resume measures the torn candidate again: it is not among the previous rows.
        let mut w = RecordWriter::open(&path, &dims(), &names(), true).unwrap();
        let previous = w.take_previous();
        assert_eq!(previous, vec![sample()], "cut {cut}");
    }
}

#[test]
fn the_row_after_a_resume_is_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.csv");
    write_rows(&path, false, &[sample()]);
    // A kill in the middle of the second row's write.
    append_bytes(&path, b"gemm,mma_multistage,bf16,16x40");
    write_rows(&path, true, &[other()]);
    assert_eq!(read_records(&path).unwrap(), vec![sample(), other()]);
    let found = read_sweep_csv(&path).unwrap();
    assert!(found.untrusted_lines.is_empty(), "the torn bytes were cut off: {:?}", found.untrusted_lines);
}

#[test]
fn a_row_failing_its_check_is_skipped_but_later_rows_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.csv");
    write_rows(&path, false, &[sample(), other()]);
    // A changed digit in the first row's median time: 12.000 -> 13.000.
    let text = std::fs::read_to_string(&path).unwrap().replacen(",12.000,", ",13.000,", 1);
    std::fs::write(&path, text).unwrap();
    let found = read_sweep_csv(&path).unwrap();
    assert_eq!(found.records, vec![other()]);
    assert_eq!(found.untrusted_lines, vec![2]);
}

#[test]
fn a_second_writer_is_refused_and_the_header_is_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.csv");
    let mut first = RecordWriter::open(&path, &dims(), &names(), false).unwrap();
    for resume in [false, true] {
        let err = RecordWriter::open(&path, &dims(), &names(), resume).err().expect("a second writer must be refused");
        assert!(format!("{err:#}").contains("another kernlab sweep"), "{err:#}");
    }
    first.append(&sample()).unwrap();
    assert!(RecordWriter::open(&path, &dims(), &names(), true).is_err());
    drop(first);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.matches("family,").count(), 1, "{text}");
    // Once the first writer is gone, the file can be resumed.
    let mut w = RecordWriter::open(&path, &dims(), &names(), true).unwrap();
    assert_eq!(w.take_previous(), vec![sample()]);
}

#[test]
fn a_writer_that_wrote_nothing_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.csv");
    drop(RecordWriter::open(&path, &dims(), &names(), false).unwrap());
    assert!(!path.exists());
    // A header cut short (a kill before the first row was whole) is started afresh.
    let mut columns = header(&dims(), &["BM".to_string(), "STAGES".to_string()]);
    columns.pop();
    let header = csv_file::encode_header(&columns, true).unwrap();
    std::fs::write(&path, &header[..40]).unwrap();
    write_rows(&path, false, &[sample()]);
    assert_eq!(read_records(&path).unwrap(), vec![sample()]);
}

/// A file as kernlab wrote it before rows carried a `row_check`.
fn legacy_csv(rows: &[CandidateRecord]) -> Vec<u8> {
    let columns = legacy_header(&["BM".to_string(), "STAGES".to_string()], false);
    let mut out = csv_file::encode_header(&columns, false).unwrap();
    for r in rows {
        out.extend(csv_file::encode_row(&r.to_row(&columns), false).unwrap());
    }
    out
}

#[test]
fn legacy_files_are_read_and_continued_in_their_own_layout() {
    let data = legacy_csv(&[sample(), other()]);
    assert!(!String::from_utf8_lossy(&data).contains(ROW_CHECK));
    let found = parse_sweep_csv(&data).unwrap();
    assert!(!found.checked);
    assert_eq!(found.records, vec![legacy(sample()), legacy(other())]);
    // Its last line without the newline is taken as torn.
    assert_eq!(read_records_from(&data[..data.len() - 1]).unwrap(), vec![legacy(sample())]);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.csv");
    std::fs::write(&path, &data[..data.len() - 2]).unwrap();
    let mut w = RecordWriter::open(&path, &dims(), &names(), true).unwrap();
    assert_eq!(w.take_previous(), vec![legacy(sample())]);
    w.append(&other()).unwrap();
    drop(w);
    let found = read_sweep_csv(&path).unwrap();
    assert!(!found.checked, "one file keeps one set of columns");
    assert_eq!(found.records, vec![legacy(sample()), legacy(other())]);
    assert!(found.untrusted_lines.is_empty());
}

#[test]
fn row_check_matches_the_documented_formula() {
    // zlib.crc32(b"a\x1fb") in Python.
    assert_eq!(row_check(&["a", "b"]), format!("{:08x}", crc32fast::hash(b"a\x1fb")));
    let bytes = to_csv_bytes(&[sample()]).unwrap();
    let found = parse_sweep_csv(&bytes).unwrap();
    assert!(found.checked && found.untrusted_lines.is_empty());
    assert_eq!(found.complete_len, bytes.len() as u64);
}

#[test]
fn a_gzipped_csv_reads_as_the_plain_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.csv");
    write_rows(&path, false, &[sample(), other()]);
    let gz = dir.path().join("s.csv.gz");
    let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::default());
    enc.write_all(&std::fs::read(&path).unwrap()).unwrap();
    enc.finish().unwrap();
    assert_eq!(read_records(&gz).unwrap(), read_records(&path).unwrap());
    // Not gzip inside: an error naming the file, not garbage rows.
    let fake = dir.path().join("f.csv.gz");
    std::fs::copy(&path, &fake).unwrap();
    let e = format!("{:#}", read_records(&fake).unwrap_err());
    assert!(e.contains("f.csv.gz"), "{e}");
}

#[test]
fn files_from_before_the_gpu_columns_are_read_and_continued_in_their_own_layout() {
    let mut sorted = names();
    sorted.sort();
    let mut columns = pre_gpu_header(&dims(), &sorted);
    columns.pop(); // row_check: encode_row appends it
    let mut data = csv_file::encode_header(&columns, true).unwrap();
    data.extend(csv_file::encode_row(&sample().to_row(&columns), true).unwrap());
    let without_gpu = |mut r: CandidateRecord| {
        (r.env.gpu_ordinal, r.env.gpu_uuid) = (None, String::new());
        r
    };
    assert_eq!(read_records_from(&data).unwrap(), vec![without_gpu(sample())]);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("before-gpus.csv");
    std::fs::write(&path, &data).unwrap();
    let mut w = RecordWriter::open(&path, &dims(), &names(), true).unwrap();
    assert_eq!(w.take_previous(), vec![without_gpu(sample())]);
    w.append(&other()).unwrap();
    drop(w);
    let found = read_sweep_csv(&path).unwrap();
    assert_eq!(found.headers.last().map(String::as_str), Some(ROW_CHECK));
    assert!(!found.headers.iter().any(|h| h == "gpu_uuid"), "one file keeps one set of columns");
    assert_eq!(found.records, vec![without_gpu(sample()), without_gpu(other())]);
    // A new file names the GPU of every row.
    let fresh = dir.path().join("new.csv");
    write_rows(&fresh, false, &[sample()]);
    assert_eq!(read_records(&fresh).unwrap(), vec![sample()]);
}
