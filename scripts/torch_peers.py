#!/usr/bin/env python3
"""PyTorch peers for kernlab's memory-bound and attention tables, measured on the GPU machine.

    python3 scripts/torch_peers.py reports/torch_peers.csv [--dtype bf16] [--quick]

Measures, on the same shapes as sweeps/{softmax,rmsnorm,rope,swiglu}.toml:
  copy       torch copy_ of 1 GiB (read + write): the bandwidth every memory-bound row is judged by
  softmax    torch.softmax(x, -1)
  rmsnorm    r = x + h; F.rms_norm(r, (dim,), w, 1e-5)   (the add is a separate kernel; the
             bytes are kernlab's fused minimum, so GB/s compare like for like)
  rmsnorm_plain  F.rms_norm(x, (dim,), w, 1e-5) alone
  rope       Hugging Face's apply_rotary_pos_emb (q*cos + rotate_half(q)*sin) with Llama-3
             scaled frequencies and per-sequence offsets; cos/sin built outside the timing
  swiglu     g, u = gu.chunk(2, -1); F.silu(g) * u
  int4_tinygemm  torch._weight_int4pack_mm (tinygemm, the int4 kernel of gpt-fast and
             torchao; g128, inner_k_tiles 8, bf16) on gemm_int4's decode shapes M x N x K
             (the row sits beside cuBLAS in gemm_int4's sweep table); bytes are the packed
             weight (N*K/2), its scales and zeros (2 bf16 per group and row), X and Y
  attention  SDPA with its flash, cuDNN and memory-efficient backends: causal prefill
             (B=1, S=4096 and 8192) and decode (one query against a KV cache: B=1 L=8192,
             B=8 L=4096), 32 query heads, 8 KV heads, head dim 128 (rows for the attention
             tables; a backend that refuses a case is skipped with a note on stderr)

Shapes use kernlab's notation (rows x cols; rows x dim; B x S x Hq x Hkv x D; tokens x ffn;
attention: B x S x Hq x Hkv x D for prefill and B x L x Hq x Hkv x D for decode).

Timing: CUDA events around each repetition after warm-up, L2 flushed before every repetition
(a memset of twice the L2 size, outside the events), about 100 ms of repetitions per case;
median and the 20th/80th percentiles (linear interpolation, as kernlab's Timing). GB/s use
each op's minimum bytes (inputs read once, outputs written once); TFLOP/s its useful FLOPs.

CSV columns: op, shape, dtype, backend, time_us_median, time_us_p20, time_us_p80, gbps, tflops
Needs only torch.
"""

import argparse
import csv
import math
import sys

import torch
import torch.nn.functional as F

SOFTMAX_SHAPES = ["32768x4096", "4096x1024", "32x131072", "16x128256"]
RMSNORM_SHAPES = ["16384x4096", "2048x4096", "8x4096", "1x4096"]
ROPE_SHAPES = ["1x4096x32x8x128", "4x2048x32x8x128", "1x1x32x8x128", "8x1x32x8x128", "64x1x32x8x128"]
SWIGLU_SHAPES = ["8192x14336", "2048x14336", "32x14336", "1x14336"]
PREFILL_SHAPES = ["1x4096x32x8x128", "1x8192x32x8x128"]
DECODE_SHAPES = ["1x8192x32x8x128", "8x4096x32x8x128"]
INT4_NK = ["6144x4096", "4096x4096", "28672x4096", "4096x14336", "128256x4096"]
INT4_SHAPES = [f"{m}x{nk}" for m in (1, 8, 16) for nk in INT4_NK]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def dims(shape):
    return [int(v) for v in shape.split("x")]


class Timer:
    """CUDA-event timing with an L2 flush before each repetition."""

    def __init__(self, target_ms=100.0, min_reps=10, max_reps=300):
        props = torch.cuda.get_device_properties(0)
        l2 = getattr(props, "L2_cache_size", 50 << 20) or (50 << 20)
        self.flush = torch.empty(max(2 * l2, 64 << 20), dtype=torch.uint8, device="cuda")
        self.target_ms, self.min_reps, self.max_reps = target_ms, min_reps, max_reps

    def __call__(self, fn):
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(5):
            fn()
        b.record()
        torch.cuda.synchronize()
        est_ms = max(a.elapsed_time(b) / 5.0, 1e-3)
        flush_ms = self.flush.numel() / 2.0e9
        reps = int(min(self.max_reps, max(self.min_reps, self.target_ms / (est_ms + flush_ms))))
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        for i in range(reps):
            self.flush.zero_()
            starts[i].record()
            fn()
            ends[i].record()
        torch.cuda.synchronize()
        us = sorted(s.elapsed_time(e) * 1e3 for s, e in zip(starts, ends))

        def q(p):
            idx = p * (len(us) - 1)
            lo, hi = math.floor(idx), math.ceil(idx)
            return us[lo] + (us[hi] - us[lo]) * (idx - lo)

        return q(0.5), q(0.2), q(0.8)


class Writer:
    COLUMNS = ["op", "shape", "dtype", "backend", "time_us_median", "time_us_p20", "time_us_p80", "gbps", "tflops"]

    def __init__(self, path):
        self.f = open(path, "w", newline="")
        self.w = csv.writer(self.f)
        self.w.writerow(self.COLUMNS)

    def row(self, op, shape, dtype, backend, t, nbytes, flops):
        med, p20, p80 = t
        gbps = nbytes / (med * 1e-6) / 1e9
        tflops = flops / (med * 1e-6) / 1e12
        self.w.writerow([op, shape, dtype, backend, f"{med:.3f}", f"{p20:.3f}", f"{p80:.3f}", f"{gbps:.1f}", f"{tflops:.4f}"])
        self.f.flush()  # a crash later loses nothing measured
        print(f"{op:<14} {shape:<18} {dtype:<5} {backend:<16} {med:>10.2f} us {gbps:>8.1f} GB/s {tflops:>8.3f} TFLOP/s", flush=True)


def llama3_inv_freq(head_dim, theta=500000.0, factor=8.0, low=1.0, high=4.0, orig=8192.0):
    """Llama-3 scaled inverse frequencies (the same rule as kernlab's rope family)."""
    out = []
    for i in range(head_dim // 2):
        base = theta ** (-(2 * i) / head_dim)
        wavelen = 2 * math.pi / base
        if wavelen < orig / high:
            f = base
        elif wavelen > orig / low:
            f = base / factor
        else:
            smooth = (orig / wavelen - low) / (high - low)
            f = (1 - smooth) * base / factor + smooth * base
        out.append(f)
    return torch.tensor(out, dtype=torch.float32, device="cuda")


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def bench_copy(timer, out, dt, name):
    n = (1 << 30) // torch.tensor([], dtype=dt).element_size()
    src = torch.randn(n, device="cuda").to(dt)
    dst = torch.empty_like(src)
    e = src.element_size()
    out.row("copy", str(n), name, "torch copy_", timer(lambda: dst.copy_(src)), 2 * n * e, 0.0)


def bench_softmax(timer, out, dt, name):
    for shape in SOFTMAX_SHAPES:
        rows, cols = dims(shape)
        x = (torch.rand(rows, cols, device="cuda") * 16 - 8).to(dt)
        e = x.element_size()
        n = rows * cols
        out.row("softmax", shape, name, "torch", timer(lambda: torch.softmax(x, dim=-1)), 2 * n * e, 5.0 * n)
        del x


def bench_rmsnorm(timer, out, dt, name):
    eps = 1e-5
    for shape in RMSNORM_SHAPES:
        rows, dim = dims(shape)
        x = torch.randn(rows, dim, device="cuda").to(dt)
        h = torch.randn(rows, dim, device="cuda").to(dt)
        w = torch.randn(dim, device="cuda").to(dt)
        e = x.element_size()

        def fused_peer():
            r = x + h
            return r, F.rms_norm(r, (dim,), w, eps)

        out.row("rmsnorm", shape, name, "torch add+rms_norm", timer(fused_peer), (4 * rows * dim + dim) * e, 5.0 * rows * dim)
        out.row(
            "rmsnorm_plain", shape, name, "torch rms_norm", timer(lambda: F.rms_norm(x, (dim,), w, eps)),
            (2 * rows * dim + dim) * e, 4.0 * rows * dim,
        )
        del x, h


def bench_rope(timer, out, dt, name):
    gen = torch.Generator().manual_seed(0)
    for shape in ROPE_SHAPES:
        b, s, hq, hkv, d = dims(shape)
        tokens = b * s
        q = torch.randn(tokens, hq, d, device="cuda").to(dt)
        k = torch.randn(tokens, hkv, d, device="cuda").to(dt)
        offsets = torch.randint(0, 60000, (b,), generator=gen).to("cuda")
        pos = (offsets[:, None] + torch.arange(s, device="cuda")[None, :]).reshape(tokens).float()
        ang = pos[:, None] * llama3_inv_freq(d)[None, :]  # fp32, as HF
        emb = torch.cat((ang, ang), dim=-1)
        cos, sin = emb.cos().to(dt)[:, None, :], emb.sin().to(dt)[:, None, :]  # HF casts to the activation type

        def apply():
            return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin

        el = tokens * (hq + hkv) * d
        e = q.element_size()
        out.row("rope", shape, name, "torch (HF apply_rotary_pos_emb)", timer(apply), 2 * el * e + 4 * b + 4 * (d // 2), 3.0 * el)
        del q, k


def bench_swiglu(timer, out, dt, name):
    for shape in SWIGLU_SHAPES:
        t, f = dims(shape)
        gu = (torch.rand(t, 2 * f, device="cuda") * 12 - 6).to(dt)
        e = gu.element_size()

        def act():
            g, u = gu.chunk(2, dim=-1)
            return F.silu(g) * u

        out.row("swiglu", shape, name, "torch silu*mul", timer(act), 3 * t * f * e, 4.0 * t * f)
        del gu


def tinygemm_pack(n, k, inner_k_tiles):
    """Random int4 codes in tinygemm's packed layout. torch >= 2.5 takes uint8 [N, K/2]
    (two codes a byte, the even column high); older releases took int32 [N, K/8]."""
    q = torch.randint(0, 16, (n, k), dtype=torch.int32, device="cuda")
    try:
        u8 = ((q[:, ::2] << 4) | q[:, 1::2]).to(torch.uint8)
        return torch._convert_weight_to_int4pack(u8, inner_k_tiles)
    except (RuntimeError, TypeError):
        return torch._convert_weight_to_int4pack(q, inner_k_tiles)


def bench_int4_tinygemm(timer, out, dt, name):
    if dt != torch.bfloat16 or not hasattr(torch, "_weight_int4pack_mm"):
        return
    group, tiles = 128, 8
    for shape in INT4_SHAPES:
        m, n, k = dims(shape)
        try:
            w = tinygemm_pack(n, k, tiles)
            sz = (torch.rand(k // group, n, 2, device="cuda") * 0.02).to(dt)  # scales and zeros
            x = torch.randn(m, k, device="cuda").to(dt)
            fn = lambda: torch._weight_int4pack_mm(x, w, group, sz)  # noqa: E731
            fn()
            torch.cuda.synchronize()
        except Exception as ex:  # an API this torch does not have, or a shape it refuses
            print(f"int4_tinygemm {shape}: skipped ({str(ex).splitlines()[0][:120]})", file=sys.stderr)
            continue
        nbytes = n * k // 2 + (k // group) * n * 2 * 2 + (m * k + m * n) * 2
        out.row("int4_tinygemm", shape, name, "torch tinygemm", timer(fn), nbytes, 2.0 * m * n * k)
        del w, sz, x


def sdpa_backends():
    from torch.nn.attention import SDPBackend

    return [
        ("sdpa flash", SDPBackend.FLASH_ATTENTION),
        ("sdpa cudnn", SDPBackend.CUDNN_ATTENTION),
        ("sdpa efficient", SDPBackend.EFFICIENT_ATTENTION),
    ]


def run_sdpa(q, k, v, causal, backend):
    """SDPA on one backend; grouped-query via enable_gqa, or K/V expanded (outside timing) when
    the backend refuses it. Returns (callable, label suffix)."""
    from torch.nn.attention import sdpa_kernel

    def with_gqa():
        with sdpa_kernel([backend]):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)

    try:
        with_gqa()
        torch.cuda.synchronize()
        return with_gqa, ""
    except Exception:
        pass
    rep = q.shape[1] // k.shape[1]
    ke, ve = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)

    def expanded():
        with sdpa_kernel([backend]):
            return F.scaled_dot_product_attention(q, ke, ve, is_causal=causal)

    expanded()
    torch.cuda.synchronize()
    return expanded, " (kv expanded)"


def bench_attention(timer, out, dt, name):
    if dt == torch.float32:
        return
    for shape in PREFILL_SHAPES:
        b, s, hq, hkv, d = dims(shape)
        q = torch.randn(b, hq, s, d, device="cuda").to(dt)
        k = torch.randn(b, hkv, s, d, device="cuda").to(dt)
        v = torch.randn(b, hkv, s, d, device="cuda").to(dt)
        e = q.element_size()
        flops = 4.0 * b * hq * s * s * d / 2  # causal: half of the score matrix
        nbytes = (2 * hq + 2 * hkv) * b * s * d * e
        for label, backend in sdpa_backends():
            try:
                fn, note = run_sdpa(q, k, v, True, backend)
                out.row("attn_prefill", shape, name, label + note, timer(fn), nbytes, flops)
            except Exception as ex:  # a backend that cannot take this case
                print(f"attn_prefill {shape} {label}: skipped ({str(ex).splitlines()[0][:120]})", file=sys.stderr)
        del q, k, v
    for shape in DECODE_SHAPES:
        b, l, hq, hkv, d = dims(shape)
        q = torch.randn(b, hq, 1, d, device="cuda").to(dt)
        k = torch.randn(b, hkv, l, d, device="cuda").to(dt)
        v = torch.randn(b, hkv, l, d, device="cuda").to(dt)
        e = q.element_size()
        flops = 4.0 * b * hq * l * d
        nbytes = (2 * hkv * l + 2 * hq) * b * d * e  # the KV cache read once, q read, o written
        for label, backend in sdpa_backends():
            try:
                fn, note = run_sdpa(q, k, v, False, backend)
                out.row("attn_decode", shape, name, label + note, timer(fn), nbytes, flops)
            except Exception as ex:
                print(f"attn_decode {shape} {label}: skipped ({str(ex).splitlines()[0][:120]})", file=sys.stderr)
        del q, k, v


BENCHES = {
    "copy": bench_copy,
    "softmax": bench_softmax,
    "rmsnorm": bench_rmsnorm,
    "rope": bench_rope,
    "swiglu": bench_swiglu,
    "int4": bench_int4_tinygemm,
    "attention": bench_attention,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", help="output CSV path")
    ap.add_argument("--dtype", action="append", choices=sorted(DTYPES), help="repeatable; default bf16")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")
    ap.add_argument("--only", action="append", choices=sorted(BENCHES), help="repeatable; default every op")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("error: no CUDA device visible to torch")
    torch.backends.cuda.matmul.allow_tf32 = False
    timer = Timer(target_ms=20.0 if a.quick else 100.0, min_reps=5 if a.quick else 10)
    out = Writer(a.csv)
    print(f"# {torch.cuda.get_device_name(0)} · torch {torch.__version__} · CUDA {torch.version.cuda}", flush=True)
    for name in a.dtype or ["bf16"]:
        dt = DTYPES[name]
        for op in a.only or BENCHES:
            BENCHES[op](timer, out, dt, name)
            torch.cuda.empty_cache()
    out.f.close()


if __name__ == "__main__":
    main()
