#!/usr/bin/env bash
# One GPU call checking the model's tuned RoPE and attention (the rope, attention_prefill and
# attention_decode families) and measuring what they bring, all on the same card:
#   1. tiny preset vs the f32 CPU reference, ragged batch of 3, + tuned vs reference lockstep
#      (head dim 32: the attention families do not take it, only RoPE is on its family there);
#   2. smollm2-135m shape (head dim 64, GQA 9/3) vs the CPU reference, ragged, + lockstep;
#   3. llama3-8b, batch 1 and 8, 128-token prompts, 256 new tokens, --profile: BEFORE (the
#      binary $BASE, built from main without this change), AFTER (./kernlab, with --validate),
#      and the reference path.
# Run from a folder holding kernlab, kernlab-base, kernels/, sweeps/, scripts/ and the tuned
# database $DB (GEMM winners). Logs go to $OUT/e2e-attention.log, reports to $OUT/reports.tgz.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export KERNLAB_REPORTS=${KERNLAB_REPORTS:-/tmp/kl-reports}; mkdir -p "$KERNLAB_REPORTS"
K=${K:-./kernlab}; BASE=${BASE:-./kernlab-base}; DB=${DB:-tuned-h200.json}
R=$KERNLAB_REPORTS
step() { echo; echo "=== $* ($(date +%T)) ==="; }
BENCH=(--batch 1,8 --prompt-len 128 --gen-len 256 --runs 2 --ignore-eos --profile)
{
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
  step "tiny vs CPU reference (tuned path) + lockstep"
  timeout 40 $K e2e --preset tiny --check-cpu --batch 3 --ragged --prompt-len 40 --gen-len 40 --runs 1 --validate --out "$R/tiny" 2>&1 | tail -30
  step "smollm2-135m shape vs CPU reference (tuned path) + lockstep"
  timeout 90 $K e2e --preset smollm2-135m --check-cpu --batch 3 --ragged --prompt-len 40 --gen-len 24 --runs 1 --validate --out "$R/smol" 2>&1 | tail -30
  step "llama3-8b BEFORE (main: plain RoPE and attention)"
  timeout 80 $BASE e2e "${BENCH[@]}" --db "$DB" --out "$R/8b-before" 2>&1 | grep -v "^  note: gemm" | tail -75
  step "llama3-8b AFTER (tuned RoPE and attention) + validate"
  timeout 130 $K e2e "${BENCH[@]}" --validate --db "$DB" --out "$R/8b-after" 2>&1 | grep -v "^  note: gemm" | tail -90
  step "llama3-8b reference path"
  timeout 60 $K e2e "${BENCH[@]}" --reference --out "$R/8b-ref" 2>&1 | tail -70
  step done
} 2>&1 | tee "$OUT/e2e-attention.log"
tar czf "$OUT/reports.tgz" -C "$R" .
