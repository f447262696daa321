//! Reading a sweep CSV back, and telling whole rows from torn or unverifiable ones.
//!
//! A row is trusted only when it is whole: it ends with a newline, has one field per
//! column, and (in files that have the column) its `row_check` is the CRC32 of its other
//! fields. Anything else (a row cut short by a kill, a row glued to a partial line, a
//! bit flip) is skipped by readers and measured again by `--resume`. Files written before
//! `row_check` existed are read as before, except that a last line without its newline is
//! taken as torn.

use super::{CandidateRecord, RowEnv, Status, Timing, ENV_COLUMNS, FIXED_COLUMNS, GPU_COLUMNS, ROW_CHECK};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// The `row_check` of a row: CRC32 (IEEE, the one `zlib.crc32` computes) of its other
/// fields joined by the unit separator 0x1F, as 8 lowercase hex digits. In Python:
/// `f"{zlib.crc32(chr(31).join(row[:-1]).encode()):08x}" == row[-1]`.
pub fn row_check<S: AsRef<[u8]>>(fields: &[S]) -> String {
    let mut h = crc32fast::Hasher::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            h.update(&[0x1f]);
        }
        h.update(f.as_ref());
    }
    format!("{:08x}", h.finalize())
}

/// What a read of a sweep CSV found.
#[derive(Debug, Clone, Default)]
pub struct SweepCsv {
    pub headers: Vec<String>,
    /// The trusted rows, in file order.
    pub records: Vec<CandidateRecord>,
    /// First line of each row that was not trusted (torn, cut short, failing its check).
    pub untrusted_lines: Vec<u64>,
    /// Bytes up to the end of the last trusted row (or of the header when there is none):
    /// what `--resume` keeps before it appends.
    pub complete_len: u64,
    /// Whether the rows carry a `row_check` (files from before it existed do not).
    pub checked: bool,
}

/// Reads a sweep CSV: its trusted rows (torn and unverifiable rows are skipped).
pub fn read_records(path: &Path) -> Result<Vec<CandidateRecord>> {
    Ok(read_sweep_csv(path)?.records)
}

pub fn read_records_from(data: &[u8]) -> Result<Vec<CandidateRecord>> {
    Ok(parse_sweep_csv(data)?.records)
}

/// Reads a sweep CSV, or one compressed with gzip (`.csv.gz`: how docs/results keeps the
/// big full-grid spaces, whose plain CSVs run to megabytes).
pub fn read_sweep_csv(path: &Path) -> Result<SweepCsv> {
    let mut data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(data.as_slice()), &mut plain)
            .with_context(|| format!("decompressing {}", path.display()))?;
        data = plain;
    }
    parse_sweep_csv(&data).with_context(|| format!("parsing {}", path.display()))
}

/// Parses a whole sweep CSV. Errors only for a file that is not a sweep CSV (a fixed column
/// missing) or a trusted row whose values do not parse; untrusted rows are listed instead.
pub fn parse_sweep_csv(data: &[u8]) -> Result<SweepCsv> {
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(data);
    let mut row = csv::ByteRecord::new();
    if !rdr.read_byte_record(&mut row)? {
        bail!("the file is empty; is this a kernlab sweep CSV?");
    }
    let header_end = rdr.position().byte();
    let headers: Vec<String> = row.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect();
    let cols = Columns::new(&headers)?;
    let mut out = SweepCsv {
        checked: headers.last().map(String::as_str) == Some(ROW_CHECK),
        complete_len: if ends_a_line(data, header_end) { header_end } else { 0 },
        headers,
        ..SweepCsv::default()
    };
    while rdr.read_byte_record(&mut row)? {
        let line = row.position().map(|p| p.line()).unwrap_or(0);
        let end = rdr.position().byte();
        match trusted_fields(&row, ends_a_line(data, end), out.headers.len(), out.checked) {
            Some(fields) => {
                out.records.push(cols.record(&fields, line)?);
                out.complete_len = end;
            }
            None => out.untrusted_lines.push(line),
        }
    }
    Ok(out)
}

/// Whether the record that ends at byte `end` was terminated by a newline (the writer
/// writes the newline last, so a row without one was cut short).
fn ends_a_line(data: &[u8], end: u64) -> bool {
    end > 0 && data.get(end as usize - 1) == Some(&b'\n')
}

/// The row's fields when the row is whole, else `None`.
fn trusted_fields(row: &csv::ByteRecord, terminated: bool, n_columns: usize, checked: bool) -> Option<Vec<&str>> {
    if !terminated || row.len() != n_columns {
        return None;
    }
    let fields: Vec<&str> = row.iter().map(std::str::from_utf8).collect::<Result<_, _>>().ok()?;
    if checked {
        let (check, rest) = fields.split_last()?;
        if *check != row_check(rest) {
            return None;
        }
    }
    Some(fields)
}

/// Column positions of a sweep CSV's header.
struct Columns {
    fixed: BTreeMap<&'static str, usize>,
    /// The environment columns the file has (older files have none).
    env: BTreeMap<&'static str, usize>,
    dims: Vec<String>,
    params: Vec<(usize, String)>,
}

impl Columns {
    fn new(headers: &[String]) -> Result<Columns> {
        let mut fixed = BTreeMap::new();
        for c in FIXED_COLUMNS {
            let at = headers
                .iter()
                .position(|h| h == c)
                .ok_or_else(|| anyhow!("missing column {c:?}; is this a kernlab sweep CSV?"))?;
            fixed.insert(*c, at);
        }
        let params = headers
            .iter()
            .enumerate()
            .filter_map(|(j, h)| h.strip_prefix("param_").map(|p| (j, p.to_string())))
            .collect();
        let optional = ENV_COLUMNS.iter().chain(GPU_COLUMNS);
        let env = optional.filter_map(|c| Some((*c, headers.iter().position(|h| h == c)?))).collect();
        let dims = headers.iter().filter_map(|h| h.strip_prefix("dim_").map(String::from)).collect();
        Ok(Columns { fixed, env, dims, params })
    }

    /// The record of one trusted row (`line` is its first line in the file, for errors).
    fn record(&self, fields: &[&str], line: u64) -> Result<CandidateRecord> {
        let at = |name: &str| self.fixed.get(name).or_else(|| self.env.get(name)).copied();
        let get = |name: &str| at(name).and_then(|j| fields.get(j).copied()).unwrap_or("");
        let num = |name: &str| parse_opt::<f64>(get(name), name, line);
        let mut params = BTreeMap::new();
        for (j, p) in &self.params {
            let v = fields.get(*j).copied().unwrap_or("");
            if !v.is_empty() {
                let v: i64 = v.parse().map_err(|_| anyhow!("line {line}: param_{p}: not an integer: {v:?}"))?;
                params.insert(p.clone(), v);
            }
        }
        let timing = match num("time_us_median")? {
            Some(m) => Some(Timing {
                median_us: m,
                p20_us: num("time_us_p20")?.unwrap_or(m),
                p80_us: num("time_us_p80")?.unwrap_or(m),
                min_us: num("time_us_min")?.unwrap_or(m),
                reps: parse_opt(get("reps"), "reps", line)?.unwrap_or(0),
            }),
            None => None,
        };
        let status = match get("status") {
            "" => None,
            s => Some(Status::parse(s).with_context(|| format!("line {line}"))?),
        };
        let int = |name: &str| parse_opt::<u32>(get(name), name, line);
        Ok(CandidateRecord {
            family: get("family").to_string(),
            variant: get("variant").to_string(),
            dtype: get("dtype").to_string(),
            shape: get("shape").to_string(),
            params,
            status,
            error: get("error").to_string(),
            max_rel_err: num("max_rel_err")?,
            timing,
            tflops: num("tflops")?,
            gbps: num("gbps")?,
            intensity: num("intensity_flop_per_byte")?,
            pct_of_bound: num("pct_of_bound")?,
            peer_us: num("peer_time_us")?,
            speedup_vs_peer: num("speedup_vs_peer")?,
            registers: int("registers")?,
            smem_bytes: int("smem_bytes")?,
            local_bytes: int("local_bytes")?,
            compile_ms: num("compile_ms")?,
            gpu: get("gpu").to_string(),
            verify_ms: num("verify_ms")?,
            time_ms: num("time_ms")?,
            dim_names: self.dims.clone(),
            env: RowEnv {
                utc: get("utc").to_string(),
                sm_mhz: int("sm_mhz")?,
                mem_mhz: int("mem_mhz")?,
                power_w: num("power_w")?,
                temp_c: int("temp_c")?,
                driver: get("driver").to_string(),
                nvrtc: get("nvrtc").to_string(),
                kernlab: get("kernlab").to_string(),
                source_hash: get("source_hash").to_string(),
                gpu_ordinal: int("gpu_ordinal")?,
                gpu_uuid: get("gpu_uuid").to_string(),
            },
        })
    }
}

fn parse_opt<T: std::str::FromStr>(s: &str, col: &str, line: u64) -> Result<Option<T>> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse::<T>().map(Some).map_err(|_| anyhow!("line {line}: column {col}: cannot parse {s:?}"))
}

/// One CSV line (with its newline) of `fields`, plus their `row_check` when `checked`.
pub(super) fn encode_row(fields: &[String], checked: bool) -> Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
    if checked {
        let mut with_check = fields.to_vec();
        with_check.push(row_check(fields));
        w.write_record(&with_check)?;
    } else {
        w.write_record(fields)?;
    }
    Ok(w.into_inner()?)
}

/// The header line of a file with these columns (`row_check` last when `checked`).
pub(super) fn encode_header(columns: &[String], checked: bool) -> Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
    let mut h = columns.to_vec();
    if checked {
        h.push(ROW_CHECK.to_string());
    }
    w.write_record(&h)?;
    Ok(w.into_inner()?)
}

/// Serialises records to CSV bytes, checked rows included (used by exporters and tests).
pub fn to_csv_bytes(records: &[CandidateRecord]) -> Result<Vec<u8>> {
    let mut names: Vec<String> = records.iter().flat_map(|r| r.params.keys().cloned()).collect();
    names.sort();
    names.dedup();
    let dims = records.first().map(|r| r.dim_names.clone()).unwrap_or_default();
    let mut columns = super::header(&dims, &names);
    columns.pop(); // row_check: encode_row appends it
    let mut out = encode_header(&columns, true)?;
    for r in records {
        out.extend(encode_row(&r.to_row(&columns), true)?);
    }
    Ok(out)
}
