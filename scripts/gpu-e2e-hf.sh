#!/usr/bin/env bash
# One GPU call for issue #7's closing table: Hugging Face transformers builds llama3-8b with
# random weights (scripts/hf_reference.py: saves the directory, records reference logits and
# greedy tokens, times HF generate eager and static cache + torch.compile at batch 1 and 8),
# then kernlab loads that directory, checks it against HF, and benchmarks the same batches
# with HF's figures beside its own. Log: $OUT/e2e-hf.log; reports: $OUT/reports.tgz.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export KERNLAB_REPORTS=${KERNLAB_REPORTS:-/tmp/kl-reports}; mkdir -p "$KERNLAB_REPORTS"
K=${K:-./target/release/kernlab}
R=$KERNLAB_REPORTS
DB=${DB:-docs/results/tuned-h200.json}
step() { echo; echo "=== $* ($(date +%T)) ==="; }
{
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  step "HF reference + timing (transformers)"
  PYTHONUNBUFFERED=1 timeout ${HF_TIMEOUT:-380} python3 scripts/hf_reference.py --preset llama3-8b --out-dir /tmp/hf8b \
    --json /tmp/hf8b.json --budget-s ${HF_BUDGET:-320} 2>&1 | grep -v "Warning\|warn(" | tail -20
  step "kernlab vs HF (same weights) + benchmark"
  [ -f /tmp/hf8b.json ] && timeout ${E2E_TIMEOUT:-170} $K e2e --model /tmp/hf8b --hf-reference /tmp/hf8b.json \
    --batch 1,8 --prompt-len 128 --gen-len 256 --runs 2 --ignore-eos --db "$DB" --out "$R/e2e-hf" 2>&1 | grep -v "note: gemm" | tail -70
  step done
} 2>&1 | tee "$OUT/e2e-hf.log"
tar czf "$OUT/reports.tgz" -C "$R" .
