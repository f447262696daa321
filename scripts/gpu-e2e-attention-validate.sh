#!/usr/bin/env bash
# Second GPU call for the tuned RoPE/attention wiring: is the batch-8 greedy agreement of
# tuned vs reference (95.0 % in the first call, the pass mark) what the main branch gets too?
# llama3-8b, batch 8, 256 teacher-forced steps, BEFORE (kernlab-base = main) and AFTER on the
# same card for seeds 0 and 1, and a ragged batch (prompts 128..72: cu_seqlens prefill).
# Same folder layout as scripts/gpu-e2e-attention.sh. Log: $OUT/e2e-attention-validate.log.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export KERNLAB_REPORTS=${KERNLAB_REPORTS:-/tmp/kl-reports}; mkdir -p "$KERNLAB_REPORTS"
K=${K:-./kernlab}; BASE=${BASE:-./kernlab-base}; DB=${DB:-tuned-h200.json}
R=$KERNLAB_REPORTS
step() { echo; echo "=== $* ($(date +%T)) ==="; }
V=(--batch 8 --prompt-len 128 --gen-len 256 --runs 1 --ignore-eos --validate --db "$DB")
show() { grep -E "^validate|^  seq|Decode step|Throughput" ; }
{
  nvidia-smi --query-gpu=name --format=csv,noheader
  for seed in 0 1; do
    step "BEFORE seed $seed"; timeout 60 $BASE e2e "${V[@]}" --seed $seed --out "$R/before-s$seed" 2>&1 | show
    step "AFTER seed $seed"; timeout 60 $K e2e "${V[@]}" --seed $seed --out "$R/after-s$seed" 2>&1 | show
  done
  step "BEFORE ragged"; timeout 60 $BASE e2e "${V[@]}" --ragged --out "$R/before-ragged" 2>&1 | show
  step "AFTER ragged"; timeout 60 $K e2e "${V[@]}" --ragged --out "$R/after-ragged" 2>&1 | show
  step done
} 2>&1 | tee "$OUT/e2e-attention-validate.log"
