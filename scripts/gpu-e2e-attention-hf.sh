#!/usr/bin/env bash
# Third GPU call for the tuned RoPE/attention wiring: kernlab against Hugging Face
# transformers at the llama3-8b shape (random weights, scripts/hf_reference.py, no HF timing),
# BEFORE (kernlab-base = main: plain RoPE/attention) and AFTER (./kernlab), same card.
# Same folder layout as scripts/gpu-e2e-attention.sh. Log: $OUT/e2e-attention-hf.log.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export KERNLAB_REPORTS=${KERNLAB_REPORTS:-/tmp/kl-reports}; mkdir -p "$KERNLAB_REPORTS"
K=${K:-./kernlab}; BASE=${BASE:-./kernlab-base}; DB=${DB:-tuned-h200.json}
R=$KERNLAB_REPORTS
step() { echo; echo "=== $* ($(date +%T)) ==="; }
E=(--model /tmp/hf8b --hf-reference /tmp/hf8b.json --batch 1 --prompt-len 16 --gen-len 8 --runs 1 --db "$DB")
{
  nvidia-smi --query-gpu=name --format=csv,noheader
  step "HF reference llama3-8b"
  timeout 200 python3 scripts/hf_reference.py --preset llama3-8b --out-dir /tmp/hf8b --json /tmp/hf8b.json --time-batches "" 2>&1 | grep -v Warning | tail -8
  step "BEFORE vs HF"; timeout 90 $BASE e2e "${E[@]}" --out "$R/hf-before" 2>&1 | grep -v "note: gemm" | tail -16
  step "AFTER vs HF"; timeout 90 $K e2e "${E[@]}" --out "$R/hf-after" 2>&1 | grep -v "note: gemm" | tail -16
  step done
} 2>&1 | tee "$OUT/e2e-attention-hf.log"
