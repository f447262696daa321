//! GGUF v2/v3 container parser (the file format of llama.cpp).
//!
//! Layout: magic "GGUF", u32 version, u64 tensor count, u64 metadata count, the metadata
//! key/values, the tensor infos (name, dims, type id, offset), padding to `general.alignment`
//! (default 32), then the tensor data. All integers are little-endian.
//!
//! The parser treats the file as hostile: every count and length is checked against the
//! bytes that remain before anything is allocated, dims and sizes use checked arithmetic,
//! and every tensor's byte range must lie inside the file. Errors name the file and, where
//! there is one, the tensor or key. It never panics on any input (see fuzz/).

use std::collections::HashMap;

use super::ggml_types::GgmlType;

mod file;
pub use file::{GgufFile, TensorView};

/// Limits that keep a corrupt header from asking for absurd work. Real files are far below.
pub const MAX_TENSORS: u64 = 1 << 20;
pub const MAX_KV: u64 = 1 << 20;
pub const MAX_DIMS: u32 = 4; // GGML_MAX_DIMS
pub const MAX_NAME_LEN: u64 = 4096;
pub const MAX_ELEMS: u64 = 1 << 40;
const MAX_ARRAY_DEPTH: u32 = 4;
const MAX_ALIGNMENT: u32 = 1 << 16;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {msg}")]
    Format { path: String, msg: String },
    #[error("{path}: tensor '{tensor}': {msg}")]
    Tensor { path: String, tensor: String, msg: String },
}

#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Array(MetaArray),
}

/// Arrays are stored typed so that a long array costs about what it costs in the file
/// (a `Vec<MetaValue>` would multiply a 1-byte-per-element array by 32).
#[derive(Debug, Clone, PartialEq)]
pub enum MetaArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    Str(Vec<String>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
    Array(Vec<MetaArray>),
}

impl MetaArray {
    pub fn len(&self) -> usize {
        use MetaArray::*;
        match self {
            U8(v) => v.len(),
            I8(v) => v.len(),
            U16(v) => v.len(),
            I16(v) => v.len(),
            U32(v) => v.len(),
            I32(v) => v.len(),
            F32(v) => v.len(),
            Bool(v) => v.len(),
            Str(v) => v.len(),
            U64(v) => v.len(),
            I64(v) => v.len(),
            F64(v) => v.len(),
            Array(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl MetaValue {
    /// Any non-negative integer value as u64.
    pub fn as_u64(&self) -> Option<u64> {
        use MetaValue::*;
        match *self {
            U8(x) => Some(x as u64),
            U16(x) => Some(x as u64),
            U32(x) => Some(x as u64),
            U64(x) => Some(x),
            I8(x) if x >= 0 => Some(x as u64),
            I16(x) if x >= 0 => Some(x as u64),
            I32(x) if x >= 0 => Some(x as u64),
            I64(x) if x >= 0 => Some(x as u64),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(x) => Some(x as f64),
            MetaValue::F64(x) => Some(x),
            _ => self.as_u64().map(|x| x as f64),
        }
    }

    fn type_name(&self) -> &'static str {
        use MetaValue::*;
        match self {
            U8(_) => "u8",
            I8(_) => "i8",
            U16(_) => "u16",
            I16(_) => "i16",
            U32(_) => "u32",
            I32(_) => "i32",
            F32(_) => "f32",
            Bool(_) => "bool",
            Str(_) => "string",
            U64(_) => "u64",
            I64(_) => "i64",
            F64(_) => "f64",
            Array(_) => "array",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// GGML order: `ne[0]` is the innermost (contiguous) dimension.
    pub ne: Vec<u64>,
    pub dtype: GgmlType,
    /// Offset from the start of the data section.
    pub offset: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elems(&self) -> u64 {
        self.ne.iter().product()
    }

    /// Row-major shape, outermost first (PyTorch order): GGUF `[576, 49152]` is `[49152, 576]`.
    pub fn shape(&self) -> Vec<usize> {
        self.ne.iter().rev().map(|&d| d as usize).collect()
    }
}

/// The parsed header: metadata and tensor directory, with data offsets validated against
/// the length of the file they came from.
#[derive(Debug, Clone)]
pub struct GgufHeader {
    pub version: u32,
    pub metadata: Vec<(String, MetaValue)>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u32,
    /// Absolute offset of the data section in the file.
    pub data_start: u64,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a str,
}

impl<'a> Reader<'a> {
    fn err(&self, msg: impl Into<String>) -> GgufError {
        GgufError::Format { path: self.path.to_string(), msg: msg.into() }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() as u64 {
            return Err(self.err(format!(
                "file truncated reading {} at byte {} (need {n} bytes, {} left)",
                what(),
                self.pos,
                self.remaining()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn u8(&mut self, what: &dyn Fn() -> String) -> Result<u8, GgufError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &dyn Fn() -> String) -> Result<u16, GgufError> {
        Ok(u16::from_le_bytes(self.take(2, what)?.try_into().unwrap()))
    }
    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }

    fn string(&mut self, max: u64, what: &dyn Fn() -> String) -> Result<String, GgufError> {
        let len = self.u64(what)?;
        if len > max {
            return Err(self.err(format!("{}: string length {len} exceeds the limit {max}", what())));
        }
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.err(format!("{} is not valid UTF-8", what())))
    }

    /// Guard for `count` elements of at least `min_size` bytes each: they must fit in what is
    /// left of the file, so a bogus count cannot make us reserve gigabytes.
    fn check_count(&self, count: u64, min_size: u64, what: &dyn Fn() -> String) -> Result<usize, GgufError> {
        match count.checked_mul(min_size) {
            Some(n) if n <= self.remaining() as u64 => Ok(count as usize),
            _ => Err(self.err(format!(
                "{}: count {count} cannot fit in the {} bytes left in the file",
                what(),
                self.remaining()
            ))),
        }
    }

    fn value(&mut self, ty: u32, depth: u32, what: &dyn Fn() -> String) -> Result<MetaValue, GgufError> {
        use MetaValue as V;
        Ok(match ty {
            0 => V::U8(self.u8(what)?),
            1 => V::I8(self.u8(what)? as i8),
            2 => V::U16(self.u16(what)?),
            3 => V::I16(self.u16(what)? as i16),
            4 => V::U32(self.u32(what)?),
            5 => V::I32(self.u32(what)? as i32),
            6 => V::F32(f32::from_bits(self.u32(what)?)),
            7 => match self.u8(what)? {
                0 => V::Bool(false),
                1 => V::Bool(true),
                b => return Err(self.err(format!("{}: bool byte is {b}, expected 0 or 1", what()))),
            },
            8 => V::Str(self.string(u64::MAX, what)?),
            9 => V::Array(self.array(depth, what)?),
            10 => V::U64(self.u64(what)?),
            11 => V::I64(self.u64(what)? as i64),
            12 => V::F64(f64::from_bits(self.u64(what)?)),
            t => return Err(self.err(format!("{}: unknown metadata value type {t}", what()))),
        })
    }

    fn array(&mut self, depth: u32, what: &dyn Fn() -> String) -> Result<MetaArray, GgufError> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(self.err(format!("{}: arrays nested deeper than {MAX_ARRAY_DEPTH}", what())));
        }
        let ty = self.u32(what)?;
        let count = self.u64(what)?;
        // Minimum encoded size of one element of each type.
        let min_size = match ty {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            8 | 10 | 11 | 12 => 8,
            9 => 12,
            t => return Err(self.err(format!("{}: unknown array element type {t}", what()))),
        };
        let n = self.check_count(count, min_size, what)?;
        macro_rules! read_vec {
            ($variant:ident, $e:expr) => {{
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push($e);
                }
                MetaArray::$variant(v)
            }};
        }
        Ok(match ty {
            0 => MetaArray::U8(self.take(n as u64, what)?.to_vec()),
            1 => MetaArray::I8(self.take(n as u64, what)?.iter().map(|&b| b as i8).collect()),
            2 => read_vec!(U16, self.u16(what)?),
            3 => read_vec!(I16, self.u16(what)? as i16),
            4 => read_vec!(U32, self.u32(what)?),
            5 => read_vec!(I32, self.u32(what)? as i32),
            6 => read_vec!(F32, f32::from_bits(self.u32(what)?)),
            7 => read_vec!(
                Bool,
                match self.u8(what)? {
                    0 => false,
                    1 => true,
                    b => return Err(self.err(format!("{}: bool byte is {b}", what()))),
                }
            ),
            8 => read_vec!(Str, self.string(u64::MAX, what)?),
            9 => read_vec!(Array, self.array(depth + 1, what)?),
            10 => read_vec!(U64, self.u64(what)?),
            11 => read_vec!(I64, self.u64(what)? as i64),
            12 => read_vec!(F64, f64::from_bits(self.u64(what)?)),
            _ => unreachable!("checked above"),
        })
    }
}

/// Parse a GGUF header from the whole file's bytes. `path` is only used in messages.
pub fn parse_header(buf: &[u8], path: &str) -> Result<GgufHeader, GgufError> {
    let mut r = Reader { buf, pos: 0, path };
    let magic = r.take(4, &|| "magic".into())?;
    if magic != b"GGUF" {
        return Err(r.err(format!("not a GGUF file (magic {magic:02x?}, expected \"GGUF\")")));
    }
    let version = r.u32(&|| "version".into())?;
    match version {
        2 | 3 => {}
        1 => return Err(r.err("GGUF version 1 is not supported (re-convert the model with a current llama.cpp)")),
        v if v != 0 && v.swap_bytes() <= 3 => return Err(r.err("big-endian GGUF files are not supported")),
        v => return Err(r.err(format!("unsupported GGUF version {v} (supported: 2, 3)"))),
    }
    let n_tensors = r.u64(&|| "tensor count".into())?;
    let n_kv = r.u64(&|| "metadata count".into())?;
    if n_tensors > MAX_TENSORS {
        return Err(r.err(format!("tensor count {n_tensors} exceeds the limit {MAX_TENSORS}")));
    }
    if n_kv > MAX_KV {
        return Err(r.err(format!("metadata count {n_kv} exceeds the limit {MAX_KV}")));
    }
    // A key/value is at least 8 (key length) + 4 (type) + 1 bytes.
    let n_kv = r.check_count(n_kv, 13, &|| "metadata".into())?;
    let mut metadata = Vec::with_capacity(n_kv);
    for i in 0..n_kv {
        let key = r.string(MAX_NAME_LEN, &|| format!("metadata key #{i}"))?;
        let what = || format!("metadata '{key}'");
        let ty = r.u32(&what)?;
        let v = r.value(ty, 0, &what)?;
        metadata.push((key, v));
    }
    let mut alignment = 32u32;
    if let Some((_, v)) = metadata.iter().find(|(k, _)| k == "general.alignment") {
        match v {
            MetaValue::U32(a) if a.is_power_of_two() && *a <= MAX_ALIGNMENT => alignment = *a,
            other => {
                return Err(
                    r.err(format!("general.alignment must be a u32 power of two <= {MAX_ALIGNMENT}, found {other:?}"))
                )
            }
        }
    }

    // A tensor info is at least 8 (name length) + 4 (n_dims) + 8 (one dim) + 4 + 8 bytes.
    let n_tensors = r.check_count(n_tensors, 32, &|| "tensor infos".into())?;
    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(n_tensors);
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let name = r.string(MAX_NAME_LEN, &|| format!("tensor #{i} name"))?;
        let terr = |msg: String| GgufError::Tensor { path: path.to_string(), tensor: name.clone(), msg };
        let what = || format!("tensor '{name}' info");
        let n_dims = r.u32(&what)?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(terr(format!("has {n_dims} dimensions (must be 1..={MAX_DIMS})")));
        }
        let mut ne = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            ne.push(r.u64(&what)?);
        }
        let type_id = r.u32(&what)?;
        let offset = r.u64(&what)?;
        let n_elems = ne
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= MAX_ELEMS)
            .ok_or_else(|| terr(format!("dims {ne:?} multiply to more than {MAX_ELEMS} elements")))?;
        if ne.contains(&0) {
            return Err(terr(format!("has a zero dimension {ne:?}")));
        }
        let dtype = GgmlType::from_id(type_id).ok_or_else(|| terr(format!("unknown GGML type id {type_id}")))?;
        let (block, _) = dtype.block_layout();
        if ne[0] % block as u64 != 0 {
            return Err(terr(format!(
                "row length ne[0]={} is not a multiple of the {dtype:?} block size {block}",
                ne[0]
            )));
        }
        let n_bytes = dtype
            .bytes_for(n_elems)
            .ok_or_else(|| terr(format!("byte size of {n_elems} {dtype:?} elements overflows")))?;
        if offset % alignment as u64 != 0 {
            return Err(terr(format!("data offset {offset} is not aligned to {alignment}")));
        }
        if let Some(prev) = seen.insert(name.clone(), i) {
            return Err(terr(format!("duplicate tensor name (also tensor #{prev})")));
        }
        tensors.push(TensorInfo { name, ne, dtype, offset, n_bytes });
    }

    let data_start = (r.pos as u64).div_ceil(alignment as u64) * alignment as u64;
    let file_len = buf.len() as u64;
    for t in &tensors {
        let end = data_start.checked_add(t.offset).and_then(|s| s.checked_add(t.n_bytes));
        match end {
            Some(end) if end <= file_len => {}
            _ => {
                return Err(GgufError::Tensor {
                    path: path.to_string(),
                    tensor: t.name.clone(),
                    msg: format!(
                        "data [{} + {}, +{} bytes) runs past the end of the file ({file_len} bytes): truncated or corrupt file",
                        data_start, t.offset, t.n_bytes
                    ),
                })
            }
        }
    }
    Ok(GgufHeader { version, metadata, tensors, alignment, data_start })
}
