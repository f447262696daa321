#!/usr/bin/env python3
"""Hugging Face transformers reference for `kernlab e2e --hf-reference` (runs on the GPU machine).

Builds a LlamaForCausalLM with transformers at one of kernlab's preset shapes, random bf16
weights from a fixed seed (initialised on the GPU: llama3-8b never exists in fp32), saves it
as a Hugging Face directory (config.json + safetensors; no tokenizer offline, so prompts are
token ids), then writes a JSON with, for fixed token prompts of different lengths:
  * HF's greedy continuation (its own forward + argmax, no EOS stop),
  * the top-2 logits of every greedy step (to tell near-ties from real divergences),
  * the full last-position logits of the first --logit-steps steps,
and times HF's own `generate` (eager; static cache + torch.compile) at the given batch
sizes, 128-token prompts, 256 new tokens, in the same process.

    python3 scripts/hf_reference.py --preset llama3-8b --out-dir /tmp/hf8b --json /tmp/hf8b.json
    kernlab e2e --model /tmp/hf8b --hf-reference /tmp/hf8b.json --batch 1,8

Weights are uniform in ±sqrt(3/fan_in) (like kernlab's random weights), which keeps the
residual stream O(1) and the logits spread out; transformers' default init (std 0.02) gives
nearly flat logits whose greedy choice is decided by rounding noise.
"""
import argparse
import json
import math
import os
import sys
import time

import torch

PRESETS = {
    # dim, layers, heads, kv_heads, ffn, vocab, rope_theta, rope_scaling, max_pos, tie
    "llama3-8b": (4096, 32, 32, 8, 14336, 128256, 500000.0, None, 8192, False),
    "llama3.1-8b": (4096, 32, 32, 8, 14336, 128256, 500000.0, (8.0, 1.0, 4.0, 8192), 131072, False),
    "llama3.2-1b": (2048, 16, 32, 8, 8192, 128256, 500000.0, (32.0, 1.0, 4.0, 8192), 131072, True),
    "smollm2-135m": (576, 30, 9, 3, 1536, 49152, 100000.0, None, 8192, True),
    "tiny": (128, 4, 4, 2, 384, 1024, 500000.0, (8.0, 1.0, 4.0, 64), 256, False),
}


def rope_dicts(theta, scaling):
    llama3 = None
    if scaling:
        f, lo, hi, orig = scaling
        llama3 = {"rope_type": "llama3", "factor": f, "low_freq_factor": lo, "high_freq_factor": hi,
                  "original_max_position_embeddings": orig}
    return llama3


def build_config(preset):
    import transformers
    from transformers import LlamaConfig
    dim, layers, heads, kv, ffn, vocab, theta, scaling, max_pos, tie = PRESETS[preset]
    kw = dict(vocab_size=vocab, hidden_size=dim, intermediate_size=ffn, num_hidden_layers=layers,
              num_attention_heads=heads, num_key_value_heads=kv, head_dim=dim // heads,
              max_position_embeddings=max_pos, rms_norm_eps=1e-5, tie_word_embeddings=tie,
              bos_token_id=1 if vocab < 100000 else 128000, eos_token_id=2 if vocab < 100000 else 128001,
              torch_dtype="bfloat16")
    llama3 = rope_dicts(theta, scaling)
    major = int(transformers.__version__.split(".")[0])
    if major >= 5:
        # transformers 5 keeps RoPE settings in `rope_parameters` (theta included).
        rp = dict(llama3) if llama3 else {"rope_type": "default"}
        rp["rope_theta"] = theta
        cfg = LlamaConfig(**kw, rope_parameters=rp)
    else:
        cfg = LlamaConfig(**kw, rope_theta=theta, rope_scaling=llama3)
    return cfg, (theta, scaling, dim // heads)


def expected_inv_freq(theta, scaling, head_dim):
    """kernlab's formula (config.rs: rope_inv_freqs), to check what transformers built."""
    out = []
    for i in range(head_dim // 2):
        f = 1.0 / theta ** (2 * i / head_dim)
        if scaling:
            fac, lo, hi, orig = scaling
            wl = 2 * math.pi / f
            if wl < orig / hi:
                pass
            elif wl > orig / lo:
                f = f / fac
            else:
                s = (orig / wl - lo) / (hi - lo)
                f = (1 - s) * f / fac + s * f
        out.append(f)
    return torch.tensor(out, dtype=torch.float64)


@torch.no_grad()
def init_weights(model, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    for name, p in sorted(model.named_parameters()):
        if p.dim() == 2:
            a = math.sqrt(3.0 / p.shape[1])
            p.copy_((torch.rand(p.shape, generator=g, device="cuda", dtype=torch.float32) * 2 - 1) * a)
        else:
            p.fill_(1.0)  # RMSNorm weights


def fix_config_json(path, theta, scaling):
    """Also write the pre-v5 keys (rope_theta, rope_scaling) that every Llama reader knows."""
    with open(path) as f:
        c = json.load(f)
    c["rope_theta"] = theta
    llama3 = rope_dicts(theta, scaling)
    if llama3:
        c["rope_scaling"] = llama3
    else:
        c.pop("rope_scaling", None)
    with open(path, "w") as f:
        json.dump(c, f, indent=2)


@torch.no_grad()
def greedy_reference(model, prompts, steps, logit_steps):
    from transformers import DynamicCache
    res = {"greedy": [], "top2": [], "logits": []}
    for p in prompts:
        cache = DynamicCache()
        ids = torch.tensor([p], device="cuda")
        toks, top2, full = [], [], []
        for i in range(steps):
            out = model(input_ids=ids, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            last = out.logits[0, -1].float()
            v, ix = torch.topk(last, 2)
            nxt = int(torch.argmax(last))  # first max, like kernlab's argmax
            toks.append(nxt)
            top2.append([int(ix[0]), float(v[0]), int(ix[1]), float(v[1])])
            if i < logit_steps:
                full.append(last.cpu().tolist())
            ids = torch.tensor([[nxt]], device="cuda")
        res["greedy"].append(toks)
        res["top2"].append(top2)
        res["logits"].append(full)
    return res


def time_generate(model, batch, prompt_len, new_tokens, vocab, mode, seed):
    g = torch.Generator(device="cuda").manual_seed(seed + batch)
    ids = torch.randint(0, vocab, (batch, prompt_len), generator=g, device="cuda")
    mask = torch.ones_like(ids)
    kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0, attention_mask=mask)
    if mode == "compiled":
        kw["cache_implementation"] = "static"
    # Warm-up with the same shapes (compilation and CUDA-graph capture happen here).
    for _ in range(2 if mode == "compiled" else 1):
        model.generate(ids, **kw)
    torch.cuda.synchronize()
    t = time.perf_counter()
    out = model.generate(ids, **kw)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t
    n = out.shape[1] - prompt_len
    return {"mode": mode, "batch": batch, "prompt_len": prompt_len, "new_tokens": int(n), "seconds": dt,
            "tokens_per_s": batch * n / dt}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="llama3-8b", choices=sorted(PRESETS))
    ap.add_argument("--out-dir", required=True, help="where to save the Hugging Face model directory")
    ap.add_argument("--json", required=True, help="reference JSON to write")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prompt-lens", default="128,97,64,33", help="token lengths of the fixed prompts")
    ap.add_argument("--gen-tokens", type=int, default=40, help="greedy steps recorded per prompt")
    ap.add_argument("--logit-steps", type=int, default=2, help="steps whose full logits are stored")
    ap.add_argument("--time-batches", default="1,8", help="batch sizes to time HF generate at ('' = none)")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--modes", default="eager,compiled")
    ap.add_argument("--budget-s", type=float, default=1e9,
                    help="start no new timing after this many seconds (from the start of the script)")
    a = ap.parse_args()
    t0 = time.perf_counter()
    import transformers
    from transformers import LlamaForCausalLM

    torch.manual_seed(a.seed)
    cfg, (theta, scaling, head_dim) = build_config(a.preset)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg)
    torch.set_default_dtype(torch.float32)
    # No model.to(bfloat16): the parameters are bf16 already, and a cast would also round the
    # fp32 RoPE inv_freq buffer to bf16 (a 2e-3 relative error in every frequency), which
    # transformers does not do when it loads a bf16 checkpoint.
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    model = model.eval()
    re = model.model.rotary_emb
    if re.inv_freq.dtype != torch.float32:
        re.inv_freq = re.inv_freq.float()
    init_weights(model, a.seed)
    inv = model.model.rotary_emb.inv_freq.double().cpu()
    rope_err = float((inv - expected_inv_freq(theta, scaling, head_dim)).abs().max() / inv.abs().max())
    print(f"[hf] built {a.preset} ({sum(p.numel() for p in model.parameters()) / 1e9:.2f} B params) "
          f"in {time.perf_counter() - t0:.1f} s; rope inv_freq vs kernlab formula: rel err {rope_err:.1e}", flush=True)
    if rope_err > 1e-6:
        print("[hf] WARNING: transformers' RoPE frequencies differ from kernlab's: check the config keys", flush=True)

    os.makedirs(a.out_dir, exist_ok=True)
    model.save_pretrained(a.out_dir, safe_serialization=True)
    fix_config_json(os.path.join(a.out_dir, "config.json"), theta, scaling)
    print(f"[hf] saved {a.out_dir} at {time.perf_counter() - t0:.1f} s", flush=True)

    g = torch.Generator().manual_seed(a.seed + 1)
    lens = [int(x) for x in a.prompt_lens.split(",") if x]
    prompts = [torch.randint(0, cfg.vocab_size, (n,), generator=g).tolist() for n in lens]
    ref = greedy_reference(model, prompts, a.gen_tokens, a.logit_steps)
    doc = {"format": "kernlab-hf-reference-v1", "device": torch.cuda.get_device_name(), "torch": torch.__version__,
           "transformers": transformers.__version__, "preset": a.preset, "seed": a.seed, "rope_rel_err": rope_err,
           "prompts": prompts, **ref, "timings": []}

    def write():
        with open(a.json, "w") as f:
            json.dump(doc, f)

    write()
    print(f"[hf] greedy reference for {len(prompts)} prompts written at {time.perf_counter() - t0:.1f} s", flush=True)

    batches = [int(x) for x in a.time_batches.split(",") if x]
    for mode in [m for m in a.modes.split(",") if m]:
        for b in batches:
            if time.perf_counter() - t0 > a.budget_s:
                doc["timings"].append({"mode": mode, "batch": b, "prompt_len": a.prompt_len, "new_tokens": a.new_tokens,
                                       "seconds": 0.0, "tokens_per_s": 0.0, "error": "skipped: time budget"})
                continue
            try:
                r = time_generate(model, b, a.prompt_len, a.new_tokens, cfg.vocab_size, mode, a.seed)
            except Exception as e:  # record and go on: one failing mode must not lose the rest
                r = {"mode": mode, "batch": b, "prompt_len": a.prompt_len, "new_tokens": a.new_tokens,
                     "seconds": 0.0, "tokens_per_s": 0.0, "error": f"{type(e).__name__}: {e}"[:500]}
            doc["timings"].append(r)
            write()
            print(f"[hf] {mode} batch {b}: {r.get('tokens_per_s', 0):.1f} tok/s "
                  f"({r.get('seconds', 0):.2f} s){' ' + r['error'] if r.get('error') else ''} "
                  f"at {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
