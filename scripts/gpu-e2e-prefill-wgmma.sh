#!/usr/bin/env bash
# The model's prefill on flash_wgmma, checked in one GPU call: a short sweep of
# attention_prefill_varlen restricted to flash_wgmma at the shapes the checks below query
# (so the model's database lookup lands on it), then
#   1. the smollm2-135m shape (head dim 64, GQA 9/3), ragged batch of 3, vs the f32 CPU
#      reference and tuned-vs-reference lockstep;
#   2. llama3-8b bf16 (random weights), batch 1 and 8, 128-token prompts, --validate.
# Logs: $OUT/e2e-prefill-wgmma.log; reports: $OUT/reports.tgz.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export KERNLAB_REPORTS=${KERNLAB_REPORTS:-/tmp/kl-reports}; mkdir -p "$KERNLAB_REPORTS"
K=${K:-./target/release/kernlab}
R=$KERNLAB_REPORTS
DB=$R/tuned.json
cp "${SEED_DB:-docs/results/tuned-h200.json}" "$DB"
probe="$R/prefill-wgmma-only.toml"
awk -v keep=" flash_wgmma " '
  /^\[\[variant\]\]/ { in_v = 1; block = $0 "\n"; next }
  in_v && /^name = / { n = $3; gsub(/"/, "", n); take = index(keep, " " n " ") > 0 }
  in_v { block = block $0 "\n"; if ($0 == "]") { if (take) printf "%s\n", block; in_v = 0; block = "" } next }
  { print }
' sweeps/attention_prefill_varlen.toml > "$probe"
step() { echo; echo "=== $* ($(date +%T)) ==="; }
{
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
  step "sweep attention_prefill_varlen (flash_wgmma only) at the checks' shapes"
  grep -c '^name = ' "$probe"
  timeout 150 $K sweep attention_prefill_varlen --file "$probe" --budget ${BUDGET:-8} --db "$DB" \
    --shape 1x128x32x8x128 --shape 8x128x32x8x128 --shape 3x40x9x3x64 --out "$R/prefill-wgmma-e2e.csv" 2>&1 \
    | grep -v "^      dropped\|^  bf16" | tail -12
  step "smollm2-135m shape vs CPU reference + lockstep"
  timeout 90 $K e2e --preset smollm2-135m --check-cpu --batch 3 --ragged --prompt-len 40 --gen-len 24 --runs 1 \
    --validate --db "$DB" --out "$R/smol" 2>&1 | grep -i "attention\|PASS\|FAIL\|error\|agree" | head -20
  step "llama3-8b bf16, prefill on flash_wgmma, --validate"
  timeout 150 $K e2e --batch 1,8 --prompt-len 128 --gen-len 64 --runs 1 --ignore-eos --validate --db "$DB" \
    --out "$R/8b-bf16" 2>&1 | grep -v "^  note: gemm" | grep -i "attention\|PASS\|FAIL\|error\|first token\|Throughput\|Decode step" | head -30
  step done
} 2>&1 | tee "$OUT/e2e-prefill-wgmma.log"
tar czf "$OUT/reports.tgz" -C "$R" . 2>/dev/null
