#!/usr/bin/env bash
# One GPU call checking CUDA-graph decode: the tiny and smollm2-135m shapes against the CPU
# reference and the reference path (graphs replayed in the tuned model), then llama3-8b bf16
# and int4 at batch 1 and 8 with and without graphs, same card. Log: $OUT/e2e-graphs.log.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export KERNLAB_REPORTS=${KERNLAB_REPORTS:-/tmp/kl-reports}; mkdir -p "$KERNLAB_REPORTS"
K=${K:-./target/release/kernlab}
R=$KERNLAB_REPORTS
DB=${DB:-docs/results/tuned-h200.json}
step() { echo; echo "=== $* ($(date +%T)) ==="; }
BENCH=(--batch 1,8 --prompt-len 128 --gen-len 256 --runs 2 --ignore-eos --db "$DB")
row() { grep -E "Throughput|Decode step|Time to first|% of band|validate|PASS|FAIL|Error|error" | grep -v "note:"; }
{
  nvidia-smi --query-gpu=name --format=csv,noheader
  step "tiny vs CPU reference + lockstep (graphs)"
  timeout 60 $K e2e --preset tiny --check-cpu --batch 3 --ragged --prompt-len 40 --gen-len 40 --runs 1 --validate --out "$R/tiny" 2>&1 | row
  step "smollm2-135m shape vs CPU reference + lockstep (graphs)"
  timeout 90 $K e2e --preset smollm2-135m --check-cpu --batch 3 --ragged --prompt-len 40 --gen-len 24 --runs 1 --validate --out "$R/smol" 2>&1 | row
  for w in bf16 int4; do
    step "llama3-8b $w, no graphs"
    timeout 100 $K e2e "${BENCH[@]}" --weights $w --no-cuda-graphs --out "$R/8b-$w-nograph" 2>&1 | row
    step "llama3-8b $w, graphs + validate"
    timeout 150 $K e2e "${BENCH[@]}" --weights $w --validate --out "$R/8b-$w-graph" 2>&1 | row
  done
  step done
} 2>&1 | tee "$OUT/e2e-graphs.log"
tar czf "$OUT/reports.tgz" -C "$R" .
