#!/usr/bin/env bash
# One batched GPU call for the Hopper prefill variant flash_wgmma (issue 6 item 5): PyTorch
# SDPA's prefill figures (flash, cuDNN, efficient backends) written to torch_peers.csv first,
# so the sweep prints them beside ours; then the selftest of both prefill families (both
# variants, awkward and ragged lengths, bf16 and fp16), a correctness sweep of flash_wgmma's
# space at awkward ragged lengths (scripts/prefill-wgmma-awkward.toml), then the
# attention_prefill sweep (both variants, S = 4096 and 8192) and the varlen sweep. Every step
# is cut to what is left of CALL_LIMIT seconds.
#
#   OUT=/tmp/out scripts/gpu-prefill-wgmma.sh
#
# Run from a folder holding kernlab (or target/release/kernlab), kernels/, sweeps/ and
# scripts/. Logs go to $OUT/prefill-wgmma.log; CSVs and the selftest log to $KERNLAB_REPORTS.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}
export KERNLAB_REPORTS=${KERNLAB_REPORTS:-$OUT/rep}
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
mkdir -p "$OUT" "$KERNLAB_REPORTS"
R=$KERNLAB_REPORTS
K=./kernlab
[ -x "$K" ] || K=./target/release/kernlab
step() { echo; echo "=== $* ($(date +%T), ${SECONDS}s) ==="; }
# A step's timeout: its own limit, cut to what is left of CALL_LIMIT seconds (at least 5).
cap() { local left=$((${CALL_LIMIT:-400} - SECONDS)); [ "$left" -lt 5 ] && left=5; echo $(($1 < left ? $1 : left)); }
{
  step devices
  nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem,power.limit --format=csv,noheader
  step "torch SDPA prefill/decode peers (attention rows of scripts/torch_peers.py only)"
  # Only the attention benchmark of torch_peers.py (its copy/softmax/... rows are not needed here).
  timeout $(cap ${PEERS_TIMEOUT:-90}) python3 - "$R/torch_peers.csv" <<'PY' 2>&1 | tail -8
import sys
sys.path.insert(0, "scripts")
import torch
import torch_peers as tp
out = tp.Writer(sys.argv[1])
print(f"# {torch.cuda.get_device_name(0)} · torch {torch.__version__} · CUDA {torch.version.cuda}", flush=True)
tp.bench_attention(tp.Timer(target_ms=100.0, min_reps=10), out, torch.bfloat16, "bf16")
out.f.close()
PY
  grep "^attn_prefill" "$R/torch_peers.csv"
  step "selftest attention_prefill + attention_prefill_varlen"
  timeout $(cap ${SELFTEST_TIMEOUT:-120}) $K selftest --family attention_prefill --family attention_prefill_varlen \
    > "$R/selftest-prefill.log" 2>&1
  echo "selftest exit $?"
  grep -v "^  ok" "$R/selftest-prefill.log" | tail -30
  grep "flash_wgmma" "$R/selftest-prefill.log" | head -40
  step "flash_wgmma correctness over its space at awkward ragged lengths (bf16, then fp16)"
  for dt in bf16 fp16; do
    budget=48; [ $dt = fp16 ] && budget=16
    timeout $(cap ${AWKWARD_TIMEOUT:-60}) $K sweep attention_prefill_varlen --file scripts/prefill-wgmma-awkward.toml \
      --dtype $dt --budget $budget --db "$R/awkward-tuned.json" --out "$R/awkward-$dt.csv" > "$R/awkward-$dt.log" 2>&1
    echo "awkward $dt exit $?: $(grep -c ',ok,' "$R/awkward-$dt.csv") ok rows; not ok:"
    grep -v ',ok,' "$R/awkward-$dt.csv" | grep -v '^family' | cut -c1-200 | head -10
  done
  step "sweep attention_prefill (flash_mma and flash_wgmma)"
  timeout $(cap ${SWEEP_TIMEOUT:-170}) $K sweep attention_prefill --out "$R/attention_prefill-wgmma.csv" 2>&1 \
    | grep -v "^ *dropped" | tail -40
  step "sweep attention_prefill_varlen"
  timeout $(cap ${VARLEN_TIMEOUT:-80}) $K sweep attention_prefill_varlen --out "$R/attention_prefill_varlen-wgmma.csv" 2>&1 \
    | grep -v "^ *dropped" | tail -20
} 2>&1 | tee "$OUT/prefill-wgmma.log"
