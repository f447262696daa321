//! Seeded fuzzing of the sweep CSV's reader and its resume path on stable Rust (runs in CI).
//!
//! Random records with awkward cells (commas, quotes, newlines, non-ASCII, NaN) are written,
//! then the file is damaged the ways a crash or a disk does it: cut at any byte, a partial
//! row left and another appended after it, a byte changed, a torn header, random bytes.
//! Checked every time, under `catch_unwind`:
//! - the reader never panics and never returns a row that was not written (no wrong values);
//! - every row that is whole on disk is read back (no lost rows);
//! - `--resume` (RecordWriter::open) keeps exactly the whole rows, cuts the torn tail, and the
//!   row it appends next reads back intact.

use kernlab::tune::fuzzing;
use kernlab::tune::record::{
    parse_sweep_csv, read_sweep_csv, to_csv_bytes, CandidateRecord, RecordWriter, Status, Timing,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

const PARAMS: &[&str] = &["BM", "BN", "STAGES"];

fn text(rng: &mut StdRng) -> String {
    const PIECES: &[&str] = &["a", "mma", ",", "\"", "\n", "\r\n", " ", "é", "∑", "x,y", "\"\"", "0", "-", ""];
    (0..rng.random_range(0..6)).map(|_| PIECES[rng.random_range(0..PIECES.len())]).collect()
}

fn num(rng: &mut StdRng) -> Option<f64> {
    match rng.random_range(0..6) {
        0 => None,
        1 => Some(f64::NAN),
        2 => Some(rng.random_range(-1e9..1e9)),
        _ => Some(rng.random_range(0..100_000) as f64 / 1000.0),
    }
}

/// A record whose every cell survives the CSV's formatting exactly (3 decimals for times,
/// 6 for rates), so a row read back must equal the row written.
fn record(rng: &mut StdRng) -> CandidateRecord {
    let mut params = BTreeMap::new();
    for p in PARAMS {
        if rng.random_bool(0.8) {
            let v = [0, 1, -1, 64, 4096, i64::MAX, i64::MIN][rng.random_range(0..7)];
            params.insert(p.to_string(), v);
        }
    }
    let statuses = [Status::Ok, Status::Wrong, Status::CompileError, Status::Fault, Status::Timeout, Status::Peer];
    let timed = rng.random_bool(0.7);
    let ms = |rng: &mut StdRng| rng.random_range(0..10_000_000) as f64 / 1000.0;
    CandidateRecord {
        family: "gemm".into(),
        variant: text(rng),
        dtype: ["bf16", "fp16", ""][rng.random_range(0..3)].into(),
        shape: format!("{}x{}", rng.random_range(1..5000), rng.random_range(1..5000)),
        params,
        status: rng.random_bool(0.95).then(|| statuses[rng.random_range(0..statuses.len())]),
        error: text(rng).replace(['\n', '\r'], " | "),
        max_rel_err: None,
        timing: timed.then(|| Timing {
            median_us: ms(rng),
            p20_us: ms(rng),
            p80_us: ms(rng),
            min_us: ms(rng),
            reps: rng.random(),
        }),
        tflops: num(rng).map(|x| (x * 1e6).round() / 1e6),
        gbps: None,
        intensity: None,
        pct_of_bound: None,
        peer_us: None,
        speedup_vs_peer: None,
        registers: rng.random_bool(0.5).then(|| rng.random()),
        smem_bytes: None,
        local_bytes: None,
        compile_ms: None,
        gpu: text(rng),
        verify_ms: num(rng).map(|x| (x * 100.0).round() / 100.0),
        time_ms: None,
        dim_names: vec![],
        env: kernlab::tune::record::RowEnv {
            utc: text(rng),
            sm_mhz: rng.random_bool(0.5).then(|| rng.random()),
            driver: text(rng),
            ..Default::default()
        },
    }
}

/// Records are compared as text: NaN cells are legal and not equal to themselves.
fn same(a: &[CandidateRecord], b: &[CandidateRecord]) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

/// The file the writer makes of `rows`, and the byte offsets where its header and each
/// row end. Every row has every parameter (see [`rows`]), so the file of the first i rows
/// is a prefix of the whole file.
fn row_ends(rows: &[CandidateRecord]) -> (Vec<u8>, Vec<usize>) {
    let full = to_csv_bytes(rows).unwrap();
    let header_len = full.iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut ends = vec![header_len];
    ends.extend((1..=rows.len()).map(|i| to_csv_bytes(&rows[..i]).unwrap().len()));
    (full, ends)
}

/// Every record carries all parameters, so the header (and so the bytes) of any prefix of
/// the rows is a prefix of the whole file.
fn rows(rng: &mut StdRng, n: usize) -> Vec<CandidateRecord> {
    (0..n)
        .map(|_| {
            let mut r = record(rng);
            for p in PARAMS {
                r.params.entry(p.to_string()).or_insert(8);
            }
            r
        })
        .collect()
}

#[test]
fn torn_and_damaged_csvs_never_lose_or_invent_rows() {
    let mut rng = StdRng::seed_from_u64(0xc5f);
    let (mut cases, mut panics, mut failures) = (0u64, 0u64, Vec::<String>::new());
    for _ in 0..60_000 {
        let n = rng.random_range(0..8);
        let written = rows(&mut rng, n);
        let (full, ends) = row_ends(&written);
        let kind = rng.random_range(0..4);
        let mut cut = rng.random_range(0..=full.len());
        let data: Vec<u8> = match kind {
            // Cut anywhere: exactly the rows that end at or before the cut are whole.
            0 | 1 => full[..cut].to_vec(),
            // A byte changed in a row (the header is not covered by row_check). A changed
            // newline or quote may take later rows with it; none may be misread.
            2 if full.len() > ends[0] => {
                cut = full.len();
                let mut d = full.clone();
                let at = rng.random_range(ends[0]..d.len());
                d[at] = d[at].wrapping_add(rng.random_range(1..=255));
                d
            }
            // Random bytes after a cut.
            _ => {
                let mut d = full[..cut].to_vec();
                d.extend((0..rng.random_range(0..40)).map(|_| rng.random::<u8>()));
                d
            }
        };
        cases += 1;
        let r = catch_unwind(AssertUnwindSafe(|| -> Result<(), String> {
            fuzzing::sweep_csv(&data);
            let Ok(found) = parse_sweep_csv(&data) else {
                return if cut >= ends[0] { Err("a file with a whole header is readable".into()) } else { Ok(()) };
            };
            let whole = ends[1..].iter().take_while(|&&e| e <= cut).count();
            match kind {
                // Cut, or cut and garbage after: exactly the whole rows (random bytes forming a
                // row with a matching CRC32 is a 2^-32 chance, never seen with this seed).
                0 | 1 | 3 if !same(&found.records, &written[..whole]) => {
                    Err(format!("cut at {cut}: read {} rows, {whole} were whole", found.records.len()))
                }
                _ if found.records.iter().any(|r| !written.iter().any(|w| same(&[w.clone()], &[r.clone()]))) => {
                    Err("read a row that was never written".into())
                }
                _ => Ok(()),
            }
        }));
        match r {
            Ok(Ok(())) => {}
            Ok(Err(why)) => failures.push(format!("{why}\n  data: {:?}", String::from_utf8_lossy(&data))),
            Err(_) => {
                panics += 1;
                failures.push(format!("PANIC\n  data: {:?}", String::from_utf8_lossy(&data)));
            }
        }
        if failures.len() >= 5 {
            break;
        }
    }
    println!("damaged CSVs: {cases} cases, {panics} panics, {} failures", failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn resume_after_any_cut_keeps_whole_rows_and_appends_intact() {
    let mut rng = StdRng::seed_from_u64(0x7e5);
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = PARAMS.iter().map(|s| s.to_string()).collect();
    let (mut cases, mut lost) = (0u64, 0usize);
    for case in 0..400 {
        let path = dir.path().join(format!("s{case}.csv"));
        let n = rng.random_range(1..6);
        let written = rows(&mut rng, n);
        let (full, ends) = row_ends(&written);
        let cut = rng.random_range(0..=full.len());
        std::fs::write(&path, &full[..cut]).unwrap();
        let whole = ends[1..].iter().take_while(|&&e| e <= cut).count();
        let extra = rows(&mut rng, 1).pop().unwrap();
        let mut w = RecordWriter::open(&path, &[], &names, true).unwrap_or_else(|e| panic!("cut {cut}: {e:#}"));
        let previous = w.take_previous();
        assert!(same(&previous, &written[..whole]), "cut {cut}: resumed {} rows, {whole} were whole", previous.len());
        lost += whole - previous.len();
        w.append(&extra).unwrap();
        drop(w);
        let back = read_sweep_csv(&path).unwrap();
        let mut want = written[..whole].to_vec();
        want.push(extra);
        assert!(same(&back.records, &want), "cut {cut}: after the resume the file reads {:?}", back.records.len());
        assert!(back.untrusted_lines.is_empty(), "cut {cut}: torn bytes left behind");
        cases += 1;
    }
    println!("resumes: {cases} cut files resumed, {lost} rows lost");
}

/// The committed cargo-fuzz corpora of the sweep targets replay here on stable.
#[test]
fn fuzz_corpora_replay() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let targets: [(&str, fn(&[u8])); 3] =
        [("sweep_file", fuzzing::sweep_file), ("expression", fuzzing::expression), ("sweep_csv", fuzzing::sweep_csv)];
    for (name, body) in targets {
        let dir = root.join(name);
        let files: Vec<_> =
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten().collect();
        assert!(!files.is_empty(), "{} is empty", dir.display());
        for f in files {
            let data = std::fs::read(f.path()).unwrap();
            if catch_unwind(|| body(&data)).is_err() {
                panic!("{name}: {} panics", f.path().display());
            }
        }
    }
    // The CSV seeds were made by a Python script with zlib.crc32, as the README documents
    // row_check: the whole one reads back with all three rows trusted.
    let best = std::fs::read_dir(root.join("sweep_csv"))
        .unwrap()
        .flatten()
        .filter_map(|f| parse_sweep_csv(&std::fs::read(f.path()).unwrap()).ok())
        .map(|c| (c.records.len(), c.untrusted_lines.len(), c.checked))
        .max()
        .unwrap();
    assert_eq!(best, (3, 0, true), "the README's row_check formula and the reader disagree");
}
