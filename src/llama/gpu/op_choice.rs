//! Which implementation each op of the model runs: the plain kernel of ops.cu
//! (`Reference`) or a tuned kernlab family (`Tuned`), chosen from the tuned database the
//! way [`super::linear`] chooses GEMMs (nearest shape, else the template defaults), and
//! fitted to the model's shapes. [`super::ops`] compiles and launches what is chosen.

pub use super::op_fit::OpChoice;
use super::op_fit::{Chosen, OpImpl};
use super::ops::TUNED_OPS;
use super::shape::ModelShape;
use super::tuned_op::ModelFacts;
use crate::gpu::cache::ModuleCache;
use crate::gpu::device::Gpu;
use crate::kernels::tunables::Tunables;
use crate::kernels::DType;
use crate::llama::config::LlamaConfig;
use anyhow::Result;
use std::collections::BTreeMap;

impl OpChoice {
    /// What the tuned path uses for the non-GEMM ops: for each row of [`TUNED_OPS`], in
    /// order, the family's tuned winner nearest the model's shape for it, else the template
    /// defaults, fitted to the model; an op whose family cannot take the model's shape keeps
    /// its reference kernel. Every decision is one line of the returned notes, then each
    /// tuned row's `tuned_note`.
    pub fn tuned(
        gpu: &Gpu,
        cache: &ModuleCache,
        db_path: &std::path::Path,
        c: &LlamaConfig,
        shape: &ModelShape,
    ) -> (OpChoice, Vec<String>) {
        let facts = ModelFacts { config: c, shape, max_smem: gpu.props.max_smem_optin as i64 };
        let mut notes = vec![];
        let mut choice = OpChoice::reference();
        for op in TUNED_OPS {
            let chosen = (op.shape)(&facts)
                .and_then(|s| tuned_family_choice(gpu, cache, db_path, op.families, &s))
                .and_then(|chosen| (op.fit)(chosen, &facts));
            let imp = match chosen {
                Ok((imp, note)) => {
                    notes.push(note);
                    imp
                }
                Err(e) => {
                    notes.push(format!("{}: using the reference kernel ({e:#})", op.name));
                    OpImpl::Reference
                }
            };
            choice.set(op.kind, imp);
        }
        for op in TUNED_OPS {
            if let (Some(note), OpImpl::Tuned { .. }) = (op.tuned_note, choice.get(op.kind)) {
                notes.push(note.into());
            }
        }
        (choice, notes)
    }
}

/// The family variant and tunables for one op: the tuned winner nearest `shape` in the first
/// of `families` that has one (the varlen and plain attention families share a template),
/// else the first family's first variant with its template defaults.
fn tuned_family_choice(
    gpu: &Gpu,
    cache: &ModuleCache,
    db_path: &std::path::Path,
    families: &[&str],
    shape: &[(&str, i64)],
) -> Result<Chosen> {
    use crate::tune::db::{Query, TunedDb};
    let db = TunedDb::load(db_path)?;
    let q_shape: BTreeMap<String, i64> = shape.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let cc = gpu.props.cc();
    let mut first = None;
    for family in families {
        let fam = crate::kernels::family(family)?;
        let sweep = crate::tune::space::Sweep::load(&crate::paths::sweep_file(family), fam.shape_dims())?;
        let hashes: BTreeMap<String, String> =
            sweep.variants.iter().map(|v| (v.name.clone(), crate::gpu::cache::source_hash(&v.source))).collect();
        let q = Query {
            kernel: family,
            gpu: &gpu.props.name,
            cc: &cc,
            nvrtc: cache.nvrtc_version(),
            dtype: "bf16",
            format: None,
            shape: &q_shape,
            source_hashes: &hashes,
        };
        if let Some(f) = db.lookup(&q) {
            if let Some(v) = sweep.variant(&f.entry.variant) {
                let note = format!("{family}: tuned {} ({})", v.name, f.note);
                return Ok((with_defaults(family, &v.name, &v.source, f.entry.params.clone()), note));
            }
        }
        if first.is_none() {
            first = Some(sweep);
        }
    }
    let sweep = first.ok_or_else(|| anyhow::anyhow!("no family given"))?;
    let family = families[0];
    let v = sweep.variants.first().ok_or_else(|| anyhow::anyhow!("{family} sweep has no variant"))?;
    let note = format!("{family}: {} with its template defaults (not tuned on this GPU)", v.name);
    Ok((with_defaults(family, &v.name, &v.source, BTreeMap::new()), note))
}

/// `params` over the template's defaults (bf16, as the model runs), so launch geometry and
/// compile defines agree.
fn with_defaults(family: &str, variant: &str, source: &str, params: BTreeMap<String, i64>) -> OpImpl {
    let all = Tunables::from_template(variant, source, DType::BF16, &params).into_values();
    OpImpl::Tuned { family: family.to_string(), variant: variant.to_string(), params: all }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llama::gpu::op_fit::{default_attention_params, fit_attention, fit_rope};

    fn tuned(family: &str, params: &[(&str, i64)]) -> Chosen {
        let params = params.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        (OpImpl::Tuned { family: family.into(), variant: "v".into(), params }, format!("{family}: tuned v (...)"))
    }

    fn params(c: &Chosen) -> &BTreeMap<String, i64> {
        match &c.0 {
            OpImpl::Tuned { params, .. } => params,
            OpImpl::Reference => panic!("expected a tuned choice"),
        }
    }

    #[test]
    fn rope_config_fits_the_head_dim() {
        // Llama-3-8B: kept as it is.
        let c = fit_rope(tuned("rope", &[("VEC", 8), ("THREADS", 64), ("TOKENS_PER_BLOCK", 1)]), 128, 6144).unwrap();
        assert_eq!((params(&c)["VEC"], params(&c)["THREADS"]), (8, 64));
        // Half head of 17 pairs: only scalar access; one head needs 17 threads.
        let c = fit_rope(tuned("rope", &[("VEC", 8), ("THREADS", 64)]), 34, 34 * 5).unwrap();
        assert_eq!((params(&c)["VEC"], params(&c)["THREADS"]), (1, 64));
        assert!(c.1.contains("VEC = 1"), "{}", c.1);
        // 20 pairs: the widest vector that splits them is 4.
        let c = fit_rope(tuned("rope", &[("VEC", 8), ("THREADS", 32)]), 40, 40 * 6).unwrap();
        assert_eq!((params(&c)["VEC"], params(&c)["THREADS"]), (4, 32));
        // Too few threads for one head: the vector is widened back to 8.
        let c = fit_rope(tuned("rope", &[("VEC", 2), ("THREADS", 32)]), 256, 256 * 6).unwrap();
        assert_eq!((params(&c)["VEC"], params(&c)["THREADS"]), (8, 32));
        // 65 pairs, scalar: raised to three whole warps.
        let c = fit_rope(tuned("rope", &[("VEC", 8), ("THREADS", 64)]), 130, 130 * 6).unwrap();
        assert_eq!((params(&c)["VEC"], params(&c)["THREADS"]), (1, 96));
        assert_eq!(fit_rope((OpImpl::Reference, "n".into()), 128, 6144).unwrap().0, OpImpl::Reference);
    }

    #[test]
    fn attention_config_takes_the_model_head_dim() {
        let smem = |t: &Tunables| {
            let p = t.values();
            Ok(crate::kernels::attention_decode::decode_smem_bytes(
                p["BLOCK_N"],
                p["NUM_WARPS"],
                p["STAGES"],
                p["HEAD_DIM"],
                2,
            ))
        };
        let winner = [("HEAD_DIM", 128), ("BLOCK_N", 128), ("NUM_WARPS", 8), ("STAGES", 2), ("SPLITS", 16)];
        // Winner at the model's head dim: used as is.
        let c = fit_attention(tuned("attention_decode", &winner), 128, 227 * 1024, smem).unwrap();
        assert_eq!(params(&c)["SPLITS"], 16);
        assert!(c.1.contains("tuned"));
        // Winner at another head dim: the template defaults at the model's.
        let c = fit_attention(tuned("attention_decode", &winner), 64, 227 * 1024, smem).unwrap();
        let mut want = default_attention_params("attention_decode", "splitkv");
        want.insert("HEAD_DIM".into(), 64);
        assert_eq!(params(&c), &want);
        assert!(c.1.contains("template defaults"), "{}", c.1);
        // Too much shared memory for the device: an error (the op keeps its reference kernel).
        assert!(fit_attention(tuned("attention_decode", &winner), 128, 100 * 1024, smem).is_err());
        assert_eq!(default_attention_params("attention_prefill_varlen", "flash_mma")["BLOCK_M"], 128);
        // flash_wgmma keeps its own defaults (CWG, not BLOCK_M, sets its query rows).
        let w = default_attention_params("attention_prefill", "flash_wgmma");
        assert_eq!((w["CWG"], w["BLOCK_N"], w.get("BLOCK_M")), (2, 128, None));
    }
}
