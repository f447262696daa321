#!/usr/bin/env bash
# One batched GPU call for the Hopper prefill variant flash_wgmma (issue 6 item 5): PyTorch
# SDPA's prefill figures (flash, cuDNN, efficient backends) written to torch_peers.csv first,
# so the sweep prints them beside ours; then the selftest of both prefill families (both
# variants, awkward and ragged lengths, bf16 and fp16), then the attention_prefill sweep
# (both variants, S = 4096 and 8192), then, if time is left, a short varlen sweep.
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
step() { echo; echo "=== $* ($(date +%T)) ==="; }
{
  step devices
  nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem,power.limit --format=csv,noheader
  step "torch SDPA prefill/decode peers (attention rows of scripts/torch_peers.py only)"
  # Only the attention benchmark of torch_peers.py (its copy/softmax/... rows are not needed here).
  timeout ${PEERS_TIMEOUT:-120} python3 - "$R/torch_peers.csv" <<'PY' 2>&1 | tail -8
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
  timeout ${SELFTEST_TIMEOUT:-150} $K selftest --family attention_prefill --family attention_prefill_varlen \
    > "$R/selftest-prefill.log" 2>&1
  echo "selftest exit $?"
  grep -v "^  ok" "$R/selftest-prefill.log" | tail -30
  grep "flash_wgmma" "$R/selftest-prefill.log" | head -40
  step "sweep attention_prefill (flash_mma and flash_wgmma)"
  timeout ${SWEEP_TIMEOUT:-190} $K sweep attention_prefill --out "$R/attention_prefill-wgmma.csv" 2>&1 \
    | grep -v "^ *dropped" | tail -40
  if [ "${SECONDS}" -lt "${VARLEN_IF_BEFORE:-330}" ]; then
    step "sweep attention_prefill_varlen (short)"
    timeout $((${CALL_LIMIT:-400} - SECONDS)) $K sweep attention_prefill_varlen --budget ${VARLEN_BUDGET:-12} \
      --strategy random --out "$R/attention_prefill_varlen-wgmma.csv" 2>&1 | grep -v "^ *dropped" | tail -20
  fi
} 2>&1 | tee "$OUT/prefill-wgmma.log"
