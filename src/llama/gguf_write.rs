//! A minimal GGUF v3 writer, so tests can build small (and deliberately broken) files and
//! the fuzz corpus can be regenerated. It writes what it is given, valid or not.

use super::ggml_types::GgmlType;
use super::gguf::{MetaArray, MetaValue};

#[derive(Default)]
pub struct GgufWriter {
    pub version: u32,
    pub alignment: u64,
    pub metadata: Vec<(String, MetaValue)>,
    /// (name, ne in GGML order, type id, bytes, explicit offset override)
    pub tensors: Vec<WriterTensor>,
}

pub struct WriterTensor {
    pub name: String,
    pub ne: Vec<u64>,
    pub type_id: u32,
    pub data: Vec<u8>,
    /// Written instead of the computed offset when set (for bad-file tests).
    pub offset_override: Option<u64>,
}

impl GgufWriter {
    pub fn new() -> Self {
        GgufWriter { version: 3, alignment: 32, ..Default::default() }
    }

    pub fn kv(&mut self, key: &str, v: MetaValue) -> &mut Self {
        self.metadata.push((key.to_string(), v));
        self
    }

    /// Add a tensor; `shape` is row-major (outermost first), as elsewhere in this crate.
    pub fn tensor(&mut self, name: &str, shape: &[usize], dtype: GgmlType, data: Vec<u8>) -> &mut Self {
        self.tensors.push(WriterTensor {
            name: name.to_string(),
            ne: shape.iter().rev().map(|&d| d as u64).collect(),
            type_id: dtype.id(),
            data,
            offset_override: None,
        });
        self
    }

    pub fn tensor_f32(&mut self, name: &str, shape: &[usize], x: &[f32]) -> &mut Self {
        self.tensor(name, shape, GgmlType::F32, x.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        b.extend_from_slice(&self.version.to_le_bytes());
        b.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        b.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut b, k);
            put_value(&mut b, v, true);
        }
        let align = self.alignment.max(1);
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for t in &self.tensors {
            put_str(&mut b, &t.name);
            b.extend_from_slice(&(t.ne.len() as u32).to_le_bytes());
            for d in &t.ne {
                b.extend_from_slice(&d.to_le_bytes());
            }
            b.extend_from_slice(&t.type_id.to_le_bytes());
            b.extend_from_slice(&t.offset_override.unwrap_or(offset).to_le_bytes());
            offsets.push(offset);
            offset = (offset + t.data.len() as u64).div_ceil(align) * align;
        }
        let data_start = (b.len() as u64).div_ceil(align) * align;
        b.resize(data_start as usize, 0);
        for (t, off) in self.tensors.iter().zip(offsets) {
            b.resize((data_start + off) as usize, 0);
            b.extend_from_slice(&t.data);
        }
        b
    }
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u64).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

fn type_id(v: &MetaValue) -> u32 {
    use MetaValue::*;
    match v {
        U8(_) => 0,
        I8(_) => 1,
        U16(_) => 2,
        I16(_) => 3,
        U32(_) => 4,
        I32(_) => 5,
        F32(_) => 6,
        Bool(_) => 7,
        Str(_) => 8,
        Array(_) => 9,
        U64(_) => 10,
        I64(_) => 11,
        F64(_) => 12,
    }
}

fn array_type_id(a: &MetaArray) -> u32 {
    use MetaArray::*;
    match a {
        U8(_) => 0,
        I8(_) => 1,
        U16(_) => 2,
        I16(_) => 3,
        U32(_) => 4,
        I32(_) => 5,
        F32(_) => 6,
        Bool(_) => 7,
        Str(_) => 8,
        Array(_) => 9,
        U64(_) => 10,
        I64(_) => 11,
        F64(_) => 12,
    }
}

fn put_value(b: &mut Vec<u8>, v: &MetaValue, with_type: bool) {
    use MetaValue::*;
    if with_type {
        b.extend_from_slice(&type_id(v).to_le_bytes());
    }
    match v {
        U8(x) => b.push(*x),
        I8(x) => b.push(*x as u8),
        U16(x) => b.extend_from_slice(&x.to_le_bytes()),
        I16(x) => b.extend_from_slice(&x.to_le_bytes()),
        U32(x) => b.extend_from_slice(&x.to_le_bytes()),
        I32(x) => b.extend_from_slice(&x.to_le_bytes()),
        F32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Bool(x) => b.push(*x as u8),
        Str(s) => put_str(b, s),
        U64(x) => b.extend_from_slice(&x.to_le_bytes()),
        I64(x) => b.extend_from_slice(&x.to_le_bytes()),
        F64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Array(a) => put_array(b, a),
    }
}

fn put_array(b: &mut Vec<u8>, a: &MetaArray) {
    use MetaArray::*;
    b.extend_from_slice(&array_type_id(a).to_le_bytes());
    b.extend_from_slice(&(a.len() as u64).to_le_bytes());
    match a {
        U8(v) => b.extend_from_slice(v),
        I8(v) => b.extend(v.iter().map(|&x| x as u8)),
        U16(v) => v.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes())),
        I16(v) => v.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes())),
        U32(v) => v.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes())),
        I32(v) => v.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes())),
        F32(v) => v.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes())),
        Bool(v) => b.extend(v.iter().map(|&x| x as u8)),
        Str(v) => v.iter().for_each(|s| put_str(b, s)),
        U64(v) => v.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes())),
        I64(v) => v.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes())),
        F64(v) => v.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes())),
        Array(v) => v.iter().for_each(|x| put_array(b, x)),
    }
}
