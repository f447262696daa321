//! An opened GGUF file: the header parsed once over a memory map (or owned bytes), name
//! indexes for tensors and metadata keys, typed metadata accessors whose errors name the
//! key, and views of each tensor's bytes (dequantized to f32 or as Q4 blocks).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::{parse_header, GgufError, GgufHeader, MetaArray, MetaValue, TensorInfo};
use crate::llama::ggml_types::{self, GgmlType};

enum Storage {
    Mmap(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mmap(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// A GGUF file: parsed header plus its memory-mapped data.
pub struct GgufFile {
    path: PathBuf,
    storage: Storage,
    header: GgufHeader,
    meta_index: HashMap<String, usize>,
    tensor_index: HashMap<String, usize>,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.header.version)
            .field("tensors", &self.header.tensors.len())
            .field("metadata", &self.header.metadata.len())
            .finish()
    }
}

/// A tensor's bytes in the file, with what is needed to interpret them.
#[derive(Clone, Copy)]
pub struct TensorView<'a> {
    pub info: &'a TensorInfo,
    pub bytes: &'a [u8],
    path: &'a Path,
}

impl fmt::Debug for TensorView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TensorView").field("info", self.info).field("path", &self.path).finish()
    }
}

impl<'a> TensorView<'a> {
    fn err(&self, msg: String) -> GgufError {
        GgufError::Tensor { path: self.path.display().to_string(), tensor: self.info.name.clone(), msg }
    }

    /// Dequantize to f32 (row-major, `info.shape()`).
    pub fn to_f32(&self) -> Result<Vec<f32>, GgufError> {
        let t = self.info.dtype;
        if !t.can_dequantize() {
            return Err(self.err(format!(
                "has type {t:?}, which this loader cannot dequantize (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)"
            )));
        }
        let mut out = vec![0f32; self.info.n_elems() as usize];
        ggml_types::dequantize(t, self.bytes, &mut out).map_err(|t| self.err(format!("cannot dequantize {t:?}")))?;
        Ok(out)
    }

    /// Raw Q4_0 blocks (for conversion to a GPU int4 layout); error if the type differs.
    pub fn q4_0_blocks(&self) -> Result<impl Iterator<Item = ggml_types::BlockQ4_0> + 'a, GgufError> {
        if self.info.dtype != GgmlType::Q4_0 {
            return Err(self.err(format!("is {:?}, not Q4_0", self.info.dtype)));
        }
        Ok(ggml_types::q4_0_blocks(self.bytes))
    }

    pub fn q4_1_blocks(&self) -> Result<impl Iterator<Item = ggml_types::BlockQ4_1> + 'a, GgufError> {
        if self.info.dtype != GgmlType::Q4_1 {
            return Err(self.err(format!("is {:?}, not Q4_1", self.info.dtype)));
        }
        Ok(ggml_types::q4_1_blocks(self.bytes))
    }
}

impl GgufFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref();
        let io = |source| GgufError::Io { path: path.display().to_string(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only and private to this process; like every mmap-based
        // loader we assume nobody truncates the model file while it is open.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Self::from_storage(path.to_path_buf(), Storage::Mmap(map))
    }

    /// Parse an in-memory file (tests, fuzzing). `name` stands in for the path in messages.
    pub fn from_bytes(bytes: Vec<u8>, name: &str) -> Result<Self, GgufError> {
        Self::from_storage(PathBuf::from(name), Storage::Owned(bytes))
    }

    fn from_storage(path: PathBuf, storage: Storage) -> Result<Self, GgufError> {
        let header = parse_header(storage.bytes(), &path.display().to_string())?;
        let meta_index = header.metadata.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect();
        let tensor_index = header.tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        Ok(GgufFile { path, storage, header, meta_index, tensor_index })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> &GgufHeader {
        &self.header
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.header.tensors[i])
    }

    /// The tensor's bytes; an error naming the file and tensor if it is absent.
    pub fn tensor_view(&self, name: &str) -> Result<TensorView<'_>, GgufError> {
        let info = self.tensor(name).ok_or_else(|| GgufError::Tensor {
            path: self.path.display().to_string(),
            tensor: name.to_string(),
            msg: "missing from the file".into(),
        })?;
        // In range: parse_header checked data_start + offset + n_bytes <= file length.
        let start = (self.header.data_start + info.offset) as usize;
        let bytes = &self.storage.bytes()[start..start + info.n_bytes as usize];
        Ok(TensorView { info, bytes, path: &self.path })
    }

    pub fn meta(&self, key: &str) -> Option<&MetaValue> {
        self.meta_index.get(key).map(|&i| &self.header.metadata[i].1)
    }

    fn meta_err(&self, key: &str, msg: String) -> GgufError {
        GgufError::Format { path: self.path.display().to_string(), msg: format!("metadata '{key}': {msg}") }
    }

    fn meta_req(&self, key: &str) -> Result<&MetaValue, GgufError> {
        self.meta(key).ok_or_else(|| self.meta_err(key, "missing".into()))
    }

    pub fn meta_usize(&self, key: &str) -> Result<usize, GgufError> {
        let v = self.meta_req(key)?;
        v.as_u64()
            .and_then(|x| usize::try_from(x).ok())
            .ok_or_else(|| self.meta_err(key, format!("expected a non-negative integer, found {}", v.type_name())))
    }

    pub fn meta_f32(&self, key: &str) -> Result<f32, GgufError> {
        let v = self.meta_req(key)?;
        v.as_f64()
            .map(|x| x as f32)
            .ok_or_else(|| self.meta_err(key, format!("expected a number, found {}", v.type_name())))
    }

    pub fn meta_bool(&self, key: &str) -> Result<bool, GgufError> {
        match self.meta_req(key)? {
            MetaValue::Bool(b) => Ok(*b),
            v => Err(self.meta_err(key, format!("expected bool, found {}", v.type_name()))),
        }
    }

    pub fn meta_str(&self, key: &str) -> Result<String, GgufError> {
        match self.meta_req(key)? {
            MetaValue::Str(s) => Ok(s.clone()),
            v => Err(self.meta_err(key, format!("expected string, found {}", v.type_name()))),
        }
    }

    pub fn meta_array(&self, key: &str) -> Result<&MetaArray, GgufError> {
        match self.meta_req(key)? {
            MetaValue::Array(a) => Ok(a),
            v => Err(self.meta_err(key, format!("expected array, found {}", v.type_name()))),
        }
    }

    pub fn meta_array_len(&self, key: &str) -> Result<usize, GgufError> {
        Ok(self.meta_array(key)?.len())
    }

    pub fn meta_strings(&self, key: &str) -> Result<&[String], GgufError> {
        match self.meta_array(key)? {
            MetaArray::Str(v) => Ok(v),
            _ => Err(self.meta_err(key, "expected an array of strings".into())),
        }
    }
}
