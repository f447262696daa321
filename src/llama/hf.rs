//! Loading a Hugging Face model directory: config.json, one or many *.safetensors (with
//! model.safetensors.index.json when sharded) and tokenizer.json.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use half::{bf16, f16};
use safetensors::{tensor::Metadata, Dtype, SafeTensors};

use super::config::LlamaConfig;
use super::gguf_model::{BosPolicy, LoadedModel};
use super::names::WeightName;
use super::tokenizer;
use super::weights::{TensorSource, Weights};

enum ShardBytes {
    Mmap(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for ShardBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            ShardBytes::Mmap(m) => m,
            ShardBytes::Owned(v) => v,
        }
    }
}

struct Shard {
    path: PathBuf,
    map: ShardBytes,
    /// Bytes before the data section (8-byte length + JSON header).
    data_start: usize,
    metadata: Metadata,
}

/// All safetensors shards of a directory, indexed by tensor name.
pub struct SafetensorsSource {
    dir: PathBuf,
    shards: Vec<Shard>,
    /// tensor name → shard index
    index: HashMap<String, usize>,
}

impl SafetensorsSource {
    /// Open `dir`: shards listed in model.safetensors.index.json if present, else every
    /// *.safetensors file in the directory.
    pub fn open(dir: &Path) -> Result<Self> {
        let index_path = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if index_path.exists() {
            let text =
                std::fs::read_to_string(&index_path).with_context(|| format!("reading {}", index_path.display()))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("parsing {}", index_path.display()))?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| anyhow!("{}: no \"weight_map\" object", index_path.display()))?;
            let mut files: Vec<String> = map
                .values()
                .map(|f| {
                    f.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| anyhow!("{}: non-string file name", index_path.display()))
                })
                .collect::<Result<_>>()?;
            files.sort();
            files.dedup();
            files
                .into_iter()
                .map(|f| {
                    // Shard names come from the index file; refuse paths that leave the directory.
                    if f.contains('/') || f.contains('\\') || f == ".." {
                        bail!("{}: shard name {f:?} is not a plain file name", index_path.display());
                    }
                    Ok(dir.join(f))
                })
                .collect::<Result<_>>()?
        } else {
            let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
                .with_context(|| format!("listing {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
                .collect();
            v.sort();
            v
        };
        if files.is_empty() {
            bail!("{}: no *.safetensors files", dir.display());
        }
        let shards = files.iter().map(|p| open_shard(p)).collect::<Result<Vec<_>>>()?;
        Self::from_shards(dir, shards)
    }

    /// In-memory shards (tests, fuzzing): (name used in messages, file bytes).
    pub fn from_bytes(dir: &Path, files: Vec<(String, Vec<u8>)>) -> Result<Self> {
        let shards = files
            .into_iter()
            .map(|(name, bytes)| shard_from(dir.join(name), ShardBytes::Owned(bytes)))
            .collect::<Result<Vec<_>>>()?;
        Self::from_shards(dir, shards)
    }

    fn from_shards(dir: &Path, shards: Vec<Shard>) -> Result<Self> {
        let mut index = HashMap::new();
        for (i, shard) in shards.iter().enumerate() {
            for name in shard.metadata.tensors().keys() {
                if index.insert(name.clone(), i).is_some() {
                    bail!("{}: tensor '{name}' appears in more than one shard", shard.path.display());
                }
            }
        }
        Ok(SafetensorsSource { dir: dir.to_path_buf(), shards, index })
    }

    fn find(&self, name: &WeightName) -> Option<(&Shard, &safetensors::tensor::TensorInfo)> {
        self.find_named(&name.hf())
    }

    fn find_named(&self, hf: &str) -> Option<(&Shard, &safetensors::tensor::TensorInfo)> {
        let shard = &self.shards[*self.index.get(hf)?];
        Some((shard, shard.metadata.info(hf)?))
    }

    /// A tensor by its file name, as stored: dtype, shape and little-endian bytes (None when
    /// absent). Quantized checkpoints read their int32 and f16 arrays through it.
    pub fn raw(&self, hf: &str) -> Result<Option<RawTensor<'_>>> {
        let Some((shard, info)) = self.find_named(hf) else { return Ok(None) };
        let (s, e) = info.data_offsets;
        let bytes = shard
            .map
            .get(shard.data_start + s..shard.data_start + e)
            .ok_or_else(|| anyhow!("{}: tensor '{hf}' data lies outside the file", shard.path.display()))?;
        Ok(Some(RawTensor { dtype: info.dtype, shape: &info.shape, bytes }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A stored tensor, borrowed from its shard.
pub struct RawTensor<'a> {
    pub dtype: Dtype,
    pub shape: &'a [usize],
    pub bytes: &'a [u8],
}

fn open_shard(path: &Path) -> Result<Shard> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: read-only private map; the file must not be truncated while loaded.
    let map = unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("mapping {}", path.display()))?;
    shard_from(path.to_path_buf(), ShardBytes::Mmap(map))
}

fn shard_from(path: PathBuf, map: ShardBytes) -> Result<Shard> {
    // read_metadata validates the header and that the offsets lie within the buffer.
    let (header_len, metadata) =
        SafeTensors::read_metadata(&map).map_err(|e| anyhow!("{}: invalid safetensors file: {e}", path.display()))?;
    Ok(Shard { path, data_start: 8 + header_len, map, metadata })
}

impl TensorSource for SafetensorsSource {
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    fn file_name(&self, name: &WeightName) -> String {
        name.hf()
    }

    fn shape(&self, name: &WeightName) -> Result<Option<Vec<usize>>> {
        Ok(self.find(name).map(|(_, info)| info.shape.clone()))
    }

    fn load_f32(&self, name: &WeightName) -> Result<Vec<f32>> {
        let (shard, _) =
            self.find(name).ok_or_else(|| anyhow!("{}: tensor '{}' is missing", self.dir.display(), name.hf()))?;
        let t = self.raw(&name.hf())?.expect("found above");
        let bytes = t.bytes;
        Ok(match t.dtype {
            Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
            Dtype::F16 => bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::BF16 => bytes.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            other => bail!(
                "{}: tensor '{}' has dtype {other:?} (supported: F32, F16, BF16)",
                shard.path.display(),
                name.hf()
            ),
        })
    }
}

impl LoadedModel {
    /// Load a Hugging Face directory (config.json wins over any preset).
    pub fn from_hf_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let config = LlamaConfig::from_hf_json(&dir.join("config.json"))?;
        let weights = Weights::load(&config, &SafetensorsSource::open(dir)?)?;
        let tokenizer = tokenizer::from_hf_file(&dir.join("tokenizer.json"))?;
        let chat_template = super::chat::ChatTemplate::from_hf_dir(dir)?;
        Ok(LoadedModel { config, weights, tokenizer, bos: BosPolicy::PostProcessor, chat_template })
    }
}
