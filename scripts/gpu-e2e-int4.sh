#!/usr/bin/env bash
# One GPU call for the int4 model path, all on the same card:
#   1. `kernlab selftest --family gemm_int4` (every int4 variant and format, the device
#      quantizer vs the host one, the model's int4 linear with an in-place residual);
#   2. a gemm_int4 sweep on the shapes llama3-8b's int4 linears run at (decode M = 1, 8;
#      prefill M = 128, 1024), into a copy of the committed tuned database;
#   3. llama3-8b (random weights), batch 1 and 8, 128-token prompts, 256 new tokens:
#      bf16 tuned, then int4 tuned with --validate (vs cuBLAS on the dequantized weights,
#      and the quantization's effect vs bf16).
# Logs: $OUT/e2e-int4.log; reports: $OUT/reports.tgz.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export KERNLAB_REPORTS=${KERNLAB_REPORTS:-/tmp/kl-reports}; mkdir -p "$KERNLAB_REPORTS"
K=${K:-./target/release/kernlab}
R=$KERNLAB_REPORTS
DB=$R/tuned.json
[ -f "$DB" ] || cp "${SEED_DB:-docs/results/tuned-h200.json}" "$DB" 2>/dev/null
step() { echo; echo "=== $* ($(date +%T)) ==="; }
BENCH=(--batch 1,8 --prompt-len 128 --gen-len 256 --runs 2 --ignore-eos --db "$DB")
{
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
  step "selftest gemm_int4"
  timeout 200 $K selftest --family gemm_int4 > "$R/selftest-int4.log" 2>&1
  echo "selftest exit $?"; grep -v "^  ok" "$R/selftest-int4.log" | tail -20; grep "quantizer\|model linear" "$R/selftest-int4.log" | head -12
  if [ -z "${SKIP_SWEEP:-}" ]; then
    step "gemm_int4 sweep on the model's shapes"
    shapes=()
    for m in ${SWEEP_M:-1 8 128 1024}; do for nk in 6144x4096 4096x4096 28672x4096 4096x14336; do shapes+=(--shape "${m}x${nk}"); done; done
    timeout ${SWEEP_TIMEOUT:-200} $K sweep gemm_int4 --budget ${BUDGET:-16} "${shapes[@]}" --out "$R/gemm_int4-e2e.csv" 2>&1 | grep -v "^      dropped\|^  bf16" | tail -24
  fi
  step "llama3-8b bf16 tuned"
  timeout 120 $K e2e "${BENCH[@]}" --profile --out "$R/8b-bf16" 2>&1 | grep -v "^  note: gemm" | tail -60
  step "llama3-8b int4 tuned + validate"
  timeout 240 $K e2e "${BENCH[@]}" --weights int4 --profile --validate --out "$R/8b-int4" 2>&1 | grep -v "^  note: gemm" | tail -80
  step done
} 2>&1 | tee "$OUT/e2e-int4.log"
tar czf "$OUT/reports.tgz" -C "$R" .
