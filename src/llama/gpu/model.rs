//! The Llama-3 forward pass on the GPU with a preallocated KV cache.
//!
//! One call of [`GpuModel::forward`] runs a *step*: any set of tokens, each tagged with its
//! sequence (batch slot) and position. A batched prefill packs the prompts of all sequences,
//! whatever their lengths, into one step (M = total prompt tokens); a decode step has one
//! token per sequence (M = batch). Attention finds each token's keys through its tags, so
//! ragged batches need no padding. Logits are computed only for the rows asked for (the
//! last prompt token of each sequence, or every decode token).
//!
//! Per layer: x += Wo·attn(rope(q), rope(k), v) with q|k|v = Wqkv·rmsnorm(x), then
//! x += Wdown·(silu(g)·u) with g|u = Wgate_up·rmsnorm(x). The residual additions happen in
//! the epilogue of the Wo and Wdown GEMMs (cuBLAS beta = 1, or the kernels' R input).

use super::attention::{decode_workspace_bytes, AttnDims, AttnStep, StepLayout};
use super::linear::LinearBackend;
use super::ops::{OpKernels, OpKind};
use super::profile::Profiler;
use super::weights::GpuWeights;
use crate::gpu::device::{DevBuf, Gpu};
use crate::llama::config::LlamaConfig;
use anyhow::{anyhow, bail, Context, Result};
use cudarc::driver::{sys, CudaGraph};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

pub use super::shape::{kv_bytes_read, kv_cache_bytes, ModelShape};

/// Activation buffers for `tokens` rows.
struct Activations {
    /// Residual stream [T, dim].
    x: DevBuf,
    /// Normed input of a linear [T, dim].
    h: DevBuf,
    qkv: DevBuf,
    attn: DevBuf,
    gate_up: DevBuf,
    act: DevBuf,
    /// Last-row gather [B_out, dim], then its norm.
    last: DevBuf,
    last_h: DevBuf,
    /// bf16 [B_out, vocab].
    logits: DevBuf,
    /// int32 [5][T] + 1: ids, sequence, position, rows to output, then the attention
    /// layout's integers (decode lens or prefill cu_seqlens, at most T + 1).
    meta: DevBuf,
    argmax: DevBuf,
    /// For the attention families (1 byte when the ops use none): Q [T, q_dim] and K, V
    /// [T, kv_dim] packed out of the fused rows, and the decode split workspace.
    q_pack: DevBuf,
    k_pack: DevBuf,
    v_pack: DevBuf,
    ws_o: DevBuf,
    ws_ml: DevBuf,
}

pub struct GpuModel {
    pub w: Rc<GpuWeights>,
    pub ops: OpKernels,
    pub linear: LinearBackend,
    pub shape: ModelShape,
    k_cache: Vec<DevBuf>,
    v_cache: Vec<DevBuf>,
    a: Activations,
    ws: DevBuf,
    /// Rows of the last step's logits.
    pub out_rows: usize,
    pub profiler: Option<Profiler>,
    /// CUDA-graph decode (see [`GpuModel::enable_cuda_graphs`]); None: every launch issued.
    graphs: Option<DecodeGraphs>,
    /// Run fused kernels where the backend has them (the gate+up projection with SwiGLU in
    /// its epilogue); false runs every op apart, for comparison (`kernlab e2e --no-fuse`).
    pub fuse: bool,
}

/// Decode steps replayed as CUDA graphs: one graph per launch signature (token count, logit
/// rows, decode-attention split count), captured the second time a signature comes (the
/// first run, uncaptured, does any allocation and module loading), replayed after that. A
/// replay costs one launch instead of ~11 per layer, and no gaps between kernels.
struct DecodeGraphs {
    /// The same device on a stream of its own (the default stream cannot be captured).
    gpu: Rc<Gpu>,
    graphs: HashMap<(usize, usize, i64), CudaGraph>,
    seen: HashSet<(usize, usize, i64)>,
}

/// Device addresses and sizes one step's launches read (the tags were uploaded before).
struct StepArgs {
    layout: StepLayout,
    ids: u64,
    seq: u64,
    pos: u64,
    out: u64,
    ints: u64,
    t: usize,
    rows: usize,
}

/// The tokens of one step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Step {
    pub ids: Vec<u32>,
    pub seq: Vec<usize>,
    pub pos: Vec<usize>,
    /// Indices into the step's tokens whose logits are wanted, in output-row order.
    pub out: Vec<usize>,
}

impl Step {
    /// All prompts packed into one prefill step, sequence b in slot b, logits for each last token.
    pub fn prefill(prompts: &[Vec<u32>]) -> Step {
        let mut s = Step::default();
        for (b, p) in prompts.iter().enumerate() {
            for (i, &t) in p.iter().enumerate() {
                s.ids.push(t);
                s.seq.push(b);
                s.pos.push(i);
            }
            s.out.push(s.ids.len() - 1);
        }
        s
    }

    /// One token per sequence at the given positions.
    pub fn decode(tokens: &[u32], positions: &[usize]) -> Step {
        let n = tokens.len();
        Step { ids: tokens.to_vec(), seq: (0..n).collect(), pos: positions.to_vec(), out: (0..n).collect() }
    }

    /// Rejects a step this model cannot run, saying why.
    pub fn check(&self, c: &LlamaConfig, shape: &ModelShape) -> Result<()> {
        let t = self.ids.len();
        if t == 0 || self.out.is_empty() {
            bail!("a step needs at least one token and one output row");
        }
        if self.seq.len() != t || self.pos.len() != t {
            bail!("internal: step with {t} ids but {} sequence and {} position tags", self.seq.len(), self.pos.len());
        }
        if t > shape.max_step_tokens {
            bail!("a step of {t} tokens exceeds the model's capacity of {} tokens per step", shape.max_step_tokens);
        }
        if self.out.len() > shape.batch || self.out.iter().any(|&o| o >= t) {
            bail!("internal: bad output rows {:?} for a step of {t} tokens", self.out);
        }
        if let Some(&id) = self.ids.iter().find(|&&id| id as usize >= c.vocab_size) {
            bail!("token id {id} is outside the vocabulary (size {})", c.vocab_size);
        }
        if let Some(&s) = self.seq.iter().find(|&&s| s >= shape.batch) {
            bail!("internal: sequence slot {s} but the batch is {}", shape.batch);
        }
        if let Some(&p) = self.pos.iter().max() {
            if p >= shape.max_seq {
                bail!(
                    "position {p} does not fit the KV cache of {} positions per sequence (prompt + generated tokens must be at most {})",
                    shape.max_seq,
                    shape.max_seq
                );
            }
        }
        Ok(())
    }
}

impl GpuModel {
    pub fn new(
        gpu: &Gpu,
        w: Rc<GpuWeights>,
        ops: OpKernels,
        linear: LinearBackend,
        shape: ModelShape,
    ) -> Result<GpuModel> {
        let c = &w.config;
        if shape.max_seq > c.max_seq_len {
            bail!(
                "{} positions per sequence exceed the model's context length {} (shorten --prompt-len or --gen-len)",
                shape.max_seq,
                c.max_seq_len
            );
        }
        if shape.batch == 0 || shape.max_step_tokens == 0 {
            bail!("batch and tokens per step must be at least 1");
        }
        if !c.head_dim.is_multiple_of(32) || c.head_dim > 256 {
            bail!("head_dim {} is not supported by the attention kernel (a multiple of 32, at most 256)", c.head_dim);
        }
        let kv = kv_cache_bytes(c, shape.batch, shape.max_seq);
        let (free, _) = gpu.ctx.mem_get_info().unwrap_or((usize::MAX, 0));
        if kv > free {
            bail!(
                "the KV cache for batch {} × {} positions needs {:.2} GiB, only {:.2} GiB of GPU memory are free",
                shape.batch,
                shape.max_seq,
                kv as f64 / (1u64 << 30) as f64,
                free as f64 / (1u64 << 30) as f64
            );
        }
        let per_layer = kv / (2 * c.n_layers);
        let mut k_cache = Vec::with_capacity(c.n_layers);
        let mut v_cache = Vec::with_capacity(c.n_layers);
        for _ in 0..c.n_layers {
            k_cache.push(gpu.alloc(per_layer)?);
            v_cache.push(gpu.alloc(per_layer)?);
        }
        let t = shape.max_step_tokens;
        let b = |elems: usize| gpu.alloc(elems * 2);
        let qkv_dim = c.q_dim() + 2 * c.kv_dim();
        let fam = ops.uses_attention_families();
        let (ws_o, ws_ml) = if fam { decode_workspace_bytes(shape.batch, c.n_heads, c.head_dim) } else { (1, 1) };
        let packed = |elems: usize| if fam { b(elems) } else { gpu.alloc(1) };
        let a = Activations {
            x: b(t * c.dim)?,
            h: b(t * c.dim)?,
            qkv: b(t * qkv_dim)?,
            attn: b(t * c.q_dim())?,
            gate_up: b(t * 2 * c.ffn_dim)?,
            act: b(t * c.ffn_dim)?,
            last: b(shape.batch * c.dim)?,
            last_h: b(shape.batch * c.dim)?,
            logits: b(shape.batch * c.vocab_size)?,
            meta: gpu.alloc((5 * t + 1) * 4)?,
            argmax: gpu.alloc(shape.batch * 4)?,
            q_pack: packed(t * c.q_dim())?,
            k_pack: packed(t * c.kv_dim())?,
            v_pack: packed(t * c.kv_dim())?,
            ws_o: gpu.alloc(ws_o)?,
            ws_ml: gpu.alloc(ws_ml)?,
        };
        Ok(GpuModel {
            ws: gpu.alloc(16)?,
            w,
            ops,
            linear,
            shape,
            k_cache,
            v_cache,
            a,
            out_rows: 0,
            profiler: None,
            graphs: None,
            fuse: true,
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.w.config
    }

    fn dims(&self) -> AttnDims {
        let c = self.config();
        AttnDims {
            n_heads: c.n_heads as i32,
            n_kv_heads: c.n_kv_heads as i32,
            head_dim: c.head_dim as i32,
            max_seq: self.shape.max_seq as i32,
        }
    }

    fn prof_start(&mut self, gpu: &Gpu, kind: OpKind) -> Result<usize> {
        match &mut self.profiler {
            Some(p) => p.start(gpu, kind),
            None => Ok(0),
        }
    }

    fn prof_stop(&mut self, gpu: &Gpu, kind: OpKind, s: usize) -> Result<()> {
        match &mut self.profiler {
            Some(p) => p.stop(gpu, kind, s),
            None => Ok(()),
        }
    }

    /// One linear layer, growing the split-K workspace if its kernel needs more.
    #[allow(clippy::too_many_arguments)]
    fn linear(
        &mut self,
        gpu: &Gpu,
        kind: OpKind,
        x: u64,
        w: u64,
        y: u64,
        residual: bool,
        m: usize,
        n: usize,
        k: usize,
    ) -> Result<()> {
        let need = self.linear.workspace_bytes(gpu, m as i64, n as i64, k as i64)?;
        if need > self.ws.bytes {
            gpu.synchronize()?;
            self.ws = gpu.alloc(need)?;
            // A captured decode graph holds the old workspace's address, now freed: replaying
            // it would write there. Capture them again (a later, larger prefill can get here
            // after the decode graphs exist).
            if let Some(g) = self.graphs.as_mut() {
                g.graphs.clear();
                g.seen.clear();
            }
        }
        let s = self.prof_start(gpu, kind)?;
        self.linear.run(gpu, x, w, y, residual, self.ws.ptr, m as i64, n as i64, k as i64)?;
        self.prof_stop(gpu, kind, s)
    }

    /// Runs one step; afterwards the logits of `step.out` rows are in the logits buffer.
    pub fn forward(&mut self, gpu: &Gpu, step: &Step) -> Result<()> {
        let c = self.w.config.clone();
        step.check(&c, &self.shape)?;
        let t = step.ids.len();
        let cap = self.shape.max_step_tokens;
        // Tags go up in one copy: [ids | seq | pos | out | attention ints], each `cap` ints
        // (the last cap + 1).
        let (layout, attn_ints) = StepLayout::of(&step.seq, &step.pos);
        let mut meta = vec![0i32; 5 * cap + 1];
        for i in 0..t {
            meta[i] = step.ids[i] as i32;
            meta[cap + i] = step.seq[i] as i32;
            meta[2 * cap + i] = step.pos[i] as i32;
        }
        for (r, &o) in step.out.iter().enumerate() {
            meta[3 * cap + r] = o as i32;
        }
        meta[4 * cap..4 * cap + attn_ints.len()].copy_from_slice(&attn_ints);
        self.a.meta.upload(&meta)?;
        let (ids, seq, pos, out, ints) = (
            self.a.meta.ptr,
            self.a.meta.ptr + 4 * cap as u64,
            self.a.meta.ptr + 8 * cap as u64,
            self.a.meta.ptr + 12 * cap as u64,
            self.a.meta.ptr + 16 * cap as u64,
        );
        let args = StepArgs { layout, ids, seq, pos, out, ints, t, rows: step.out.len() };
        let key = self.ops.decode_launch_key(&args.layout, t, self.dims()).map(|splits| (t, args.rows, splits));
        match (key, self.profiler.is_none()) {
            (Some(key), true) if self.graphs.is_some() => self.decode_with_graph(gpu, key, &args),
            _ => self.launch_step(gpu, &args),
        }
    }

    /// Replays the decode step's graph, capturing it the second time its signature comes.
    fn decode_with_graph(&mut self, gpu: &Gpu, key: (usize, usize, i64), args: &StepArgs) -> Result<()> {
        let g = self.graphs.as_mut().expect("checked by the caller");
        let cg = g.gpu.clone();
        if !g.graphs.contains_key(&key) {
            if g.seen.insert(key) {
                return self.launch_step(gpu, args);
            }
            // The tags were uploaded synchronously and the previous step ended in a host
            // synchronization (argmax or logits), so the capture stream needs no event.
            cg.stream
                .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
                .map_err(|e| anyhow!("starting a CUDA graph capture failed: {e:?}"))?;
            let launched = self.launch_step(&cg, args);
            let graph = cg.stream.end_capture(sys::CUgraphInstantiate_flags(0));
            launched.context("while capturing a decode step into a CUDA graph")?;
            let graph = graph
                .map_err(|e| anyhow!("instantiating the decode step's CUDA graph failed: {e:?}"))?
                .context("the decode step's capture recorded nothing")?;
            self.graphs.as_mut().expect("checked by the caller").graphs.insert(key, graph);
        }
        let g = self.graphs.as_ref().expect("checked by the caller");
        g.graphs[&key].launch().map_err(|e| anyhow!("replaying the decode step's CUDA graph failed: {e:?}"))?;
        // The default stream's next work (argmax, the next step's uploads) must see it done.
        cg.synchronize()?;
        self.out_rows = args.rows;
        Ok(())
    }

    /// Replays decode steps as CUDA graphs from now on (the tuned paths; cuBLAS's own
    /// workspace handling is not capture-safe here, and the profiler needs its events).
    /// With `pdl` the graphs' PDL-aware kernels carry programmatic edges (see
    /// [`Gpu::with_pdl`]).
    pub fn enable_cuda_graphs(&mut self, gpu: &Gpu, pdl: bool) -> Result<()> {
        if matches!(self.linear, LinearBackend::Cublas(_)) {
            bail!("CUDA-graph decode runs the tuned paths only; the reference path issues its launches");
        }
        self.graphs = Some(DecodeGraphs {
            gpu: Rc::new(gpu.on_new_stream()?.with_pdl(pdl)),
            graphs: HashMap::new(),
            seen: HashSet::new(),
        });
        Ok(())
    }

    /// Every launch of one step, in order, on `gpu`'s stream.
    fn launch_step(&mut self, gpu: &Gpu, args: &StepArgs) -> Result<()> {
        let c = self.w.config.clone();
        let StepArgs { ids, seq, pos, out, ints, t, rows, .. } = *args;
        let layout = &args.layout;
        let qkv_dim = c.q_dim() + 2 * c.kv_dim();
        // The profile tells decode attention from prefill attention.
        let attn_kind = if layout.is_decode() { OpKind::Attention } else { OpKind::AttentionPrefill };
        let d = self.dims();
        let w = self.w.clone();
        let (x, h, qkv, attn, gu, act) =
            (self.a.x.ptr, self.a.h.ptr, self.a.qkv.ptr, self.a.attn.ptr, self.a.gate_up.ptr, self.a.act.ptr);

        let s = self.prof_start(gpu, OpKind::Embedding)?;
        self.ops.gather(gpu, w.tok_embeddings.ptr, ids, x, t, c.dim)?;
        self.prof_stop(gpu, OpKind::Embedding, s)?;
        for (l, lw) in w.layers.iter().enumerate() {
            let (kc, vc) = (self.k_cache[l].ptr, self.v_cache[l].ptr);
            let s = self.prof_start(gpu, OpKind::RmsNorm)?;
            self.ops.rmsnorm(gpu, x, &lw.attn_norm, h, t, c.dim, c.norm_eps)?;
            self.prof_stop(gpu, OpKind::RmsNorm, s)?;
            self.linear(gpu, OpKind::GemmQkv, h, lw.wqkv.ptr, qkv, false, t, qkv_dim, c.dim)?;
            let s = self.prof_start(gpu, OpKind::Rope)?;
            self.ops.rope(gpu, qkv, pos, &w.rope_inv_freqs, t, d)?;
            self.prof_stop(gpu, OpKind::Rope, s)?;
            let io = AttnStep {
                layout,
                qkv,
                k_cache: kc,
                v_cache: vc,
                out: attn,
                tok_seq: seq,
                tok_pos: pos,
                q_pack: self.a.q_pack.ptr,
                k_pack: self.a.k_pack.ptr,
                v_pack: self.a.v_pack.ptr,
                ints,
                ws_o: self.a.ws_o.ptr,
                ws_ml: self.a.ws_ml.ptr,
                t,
            };
            let s = self.prof_start(gpu, OpKind::KvAppend)?;
            self.ops.kv_append(gpu, &io, d)?;
            self.prof_stop(gpu, OpKind::KvAppend, s)?;
            let s = self.prof_start(gpu, attn_kind)?;
            self.ops.attention(gpu, &io, d)?;
            self.prof_stop(gpu, attn_kind, s)?;
            self.linear(gpu, OpKind::GemmO, attn, lw.wo.ptr, x, true, t, c.dim, c.q_dim())?;
            let s = self.prof_start(gpu, OpKind::RmsNorm)?;
            self.ops.rmsnorm(gpu, x, &lw.ffn_norm, h, t, c.dim, c.norm_eps)?;
            self.prof_stop(gpu, OpKind::RmsNorm, s)?;
            let (gu_n, ti) = (2 * c.ffn_dim as i64, t as i64);
            if self.fuse && self.linear.can_fuse_gate_up(gpu, lw.w_gate_up.ptr, ti, gu_n, c.dim as i64)? {
                let s = self.prof_start(gpu, OpKind::GemmGateUpSwiGlu)?;
                let ran = self.linear.gate_up_swiglu(gpu, h, lw.w_gate_up.ptr, act, ti, gu_n, c.dim as i64)?;
                anyhow::ensure!(ran, "internal: the fused gate+up+SwiGLU did not run where it could");
                self.prof_stop(gpu, OpKind::GemmGateUpSwiGlu, s)?;
            } else {
                self.linear(gpu, OpKind::GemmGateUp, h, lw.w_gate_up.ptr, gu, false, t, 2 * c.ffn_dim, c.dim)?;
                let s = self.prof_start(gpu, OpKind::SwiGlu)?;
                self.ops.swiglu(gpu, gu, act, t, c.ffn_dim)?;
                self.prof_stop(gpu, OpKind::SwiGlu, s)?;
            }
            self.linear(gpu, OpKind::GemmDown, act, lw.w_down.ptr, x, true, t, c.dim, c.ffn_dim)?;
        }
        let s = self.prof_start(gpu, OpKind::RmsNorm)?;
        self.ops.gather(gpu, x, out, self.a.last.ptr, rows, c.dim)?;
        self.ops.rmsnorm(gpu, self.a.last.ptr, &w.norm, self.a.last_h.ptr, rows, c.dim, c.norm_eps)?;
        self.prof_stop(gpu, OpKind::RmsNorm, s)?;
        let (lh, lg) = (self.a.last_h.ptr, self.a.logits.ptr);
        self.linear(gpu, OpKind::GemmLmHead, lh, w.lm_head().ptr, lg, false, rows, c.vocab_size, c.dim)?;
        self.out_rows = rows;
        Ok(())
    }

    /// Greedy choice for each output row of the last step (argmax on the device).
    pub fn argmax(&mut self, gpu: &Gpu) -> Result<Vec<u32>> {
        let rows = self.out_rows;
        let s = self.prof_start(gpu, OpKind::Argmax)?;
        self.ops.argmax(gpu, self.a.logits.ptr, self.a.argmax.ptr, rows, self.config().vocab_size)?;
        self.prof_stop(gpu, OpKind::Argmax, s)?;
        let v: Vec<i32> = self.a.argmax.download(rows)?;
        if let Some(p) = &mut self.profiler {
            p.collect()?;
        }
        Ok(v.into_iter().map(|x| x as u32).collect())
    }

    /// The last step's logits as f32, [rows][vocab] (for sampling and validation).
    pub fn logits(&mut self, gpu: &Gpu) -> Result<Vec<Vec<f32>>> {
        gpu.synchronize()?;
        if let Some(p) = &mut self.profiler {
            p.collect()?;
        }
        let v = self.config().vocab_size;
        let bits: Vec<u16> = self.a.logits.download(self.out_rows * v)?;
        Ok(bits.chunks_exact(v).map(|r| r.iter().map(|b| half::bf16::from_bits(*b).to_f32()).collect()).collect())
    }

    /// The logits buffer (bf16 [out_rows, vocab]) for on-device comparison.
    pub fn logits_buf(&self) -> &DevBuf {
        &self.a.logits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_cache_sizing() {
        let c = LlamaConfig::preset("llama3-8b").unwrap();
        // 32 layers × K and V × 8 kv heads × 128 × 2 bytes = 128 KiB per position.
        assert_eq!(kv_cache_bytes(&c, 1, 1), 128 * 1024);
        assert_eq!(kv_cache_bytes(&c, 8, 384), 8 * 384 * 128 * 1024);
        assert_eq!(kv_bytes_read(&c, &[100, 200]), 300 * 128 * 1024);
    }

    #[test]
    fn steps_pack_ragged_prompts_and_check_limits() {
        let c = LlamaConfig::preset("tiny").unwrap();
        let s = Step::prefill(&[vec![1, 2, 3], vec![4], vec![5, 6]]);
        assert_eq!(s.ids, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(s.seq, vec![0, 0, 0, 1, 2, 2]);
        assert_eq!(s.pos, vec![0, 1, 2, 0, 0, 1]);
        assert_eq!(s.out, vec![2, 3, 5]);
        let shape = ModelShape { batch: 3, max_seq: 3, max_step_tokens: 6 };
        s.check(&c, &shape).unwrap();
        let e = Step::prefill(&[vec![1, 2, 3, 4]]).check(&c, &shape).unwrap_err().to_string();
        assert!(e.contains("KV cache"), "{e}");
        let e = Step::decode(&[9999], &[0]).check(&c, &shape).unwrap_err().to_string();
        assert!(e.contains("outside the vocabulary"), "{e}");
        let e = Step::prefill(&[vec![1; 7]]).check(&c, &ModelShape { max_seq: 100, ..shape }).unwrap_err().to_string();
        assert!(e.contains("capacity"), "{e}");
        let d = Step::decode(&[7, 8], &[3, 1]);
        assert_eq!(d.seq, vec![0, 1]);
        assert_eq!(d.out, vec![0, 1]);
    }
}
