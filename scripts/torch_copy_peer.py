#!/usr/bin/env python3
"""PyTorch peers for `kernlab roofline --torch-peers FILE`.

Measures, on the GPU this process sees (CUDA events, median of many repetitions):
  - dst.copy_(src) of a large tensor (default 2 GiB each, as kernlab's copy_v16), counting
    read + write bytes, like kernlab's DRAM copy ceiling;
  - a @ b.T in bf16 at 8192^3 (cuBLAS through PyTorch), in TFLOP/s.
Writes JSON to the path given, prints one line per figure:

    python3 scripts/torch_copy_peer.py reports/torch-peers.json [--gib 2] [--gpu 0]

JSON keys: gpu, torch, copy_gbps, copy_bytes, copy_ms_median, copy_ms_p20, copy_ms_p80,
bf16_8192_tflops, bf16_ms_median, bf16_ms_p20, bf16_ms_p80, reps.
"""
import argparse
import json
import statistics
import sys


def timed(fn, reps, warmup=5, flush=None):
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for s, e in zip(starts, ends):
        if flush is not None:
            flush.zero_()  # evict L2 between reps, outside the events
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    ms = sorted(s.elapsed_time(e) for s, e in zip(starts, ends))
    q = statistics.quantiles(ms, n=10)
    return statistics.median(ms), q[1], q[7]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="JSON file to write")
    ap.add_argument("--gib", type=float, default=2.0, help="size of each copy tensor in GiB (default 2)")
    ap.add_argument("--gpu", type=int, default=0)
    ap.add_argument("--reps", type=int, default=50)
    a = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        sys.exit("error: torch sees no CUDA GPU")
    dev = torch.device("cuda", a.gpu)
    torch.cuda.set_device(dev)
    name = torch.cuda.get_device_name(dev)
    l2 = getattr(torch.cuda.get_device_properties(dev), "L2_cache_size", 64 << 20)
    flush = torch.empty(2 * max(l2, 32 << 20), dtype=torch.uint8, device=dev)

    n = int(a.gib * (1 << 30)) // 4
    src = torch.rand(n, dtype=torch.float32, device=dev)
    dst = torch.empty_like(src)
    med, p20, p80 = timed(lambda: dst.copy_(src), a.reps)
    nbytes = 2 * n * 4
    copy_gbps = nbytes / (med * 1e-3) / 1e9
    print(f"torch copy_ {name}: {copy_gbps:.1f} GB/s (read + write, {nbytes / 2**30:.2f} GiB moved, median {med:.3f} ms)")
    del src, dst

    N = 8192
    x = torch.randn(N, N, dtype=torch.bfloat16, device=dev)
    w = torch.randn(N, N, dtype=torch.bfloat16, device=dev)
    med_g, p20_g, p80_g = timed(lambda: x @ w.T, a.reps, flush=flush)
    tflops = 2 * N**3 / (med_g * 1e-3) / 1e12
    print(f"torch bf16 matmul {N}^3 {name}: {tflops:.1f} TFLOP/s (median {med_g:.3f} ms)")

    out = {
        "gpu": name,
        "torch": torch.__version__,
        "copy_gbps": copy_gbps,
        "copy_bytes": nbytes,
        "copy_ms_median": med,
        "copy_ms_p20": p20,
        "copy_ms_p80": p80,
        "bf16_8192_tflops": tflops,
        "bf16_ms_median": med_g,
        "bf16_ms_p20": p20_g,
        "bf16_ms_p80": p80_g,
        "reps": a.reps,
    }
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    print(f"peers: {a.out}")


if __name__ == "__main__":
    main()
