#!/usr/bin/env bash
# The closing GPU call of a session: ceilings, the full selftest, the gemm_int4 sweep on all
# 20 default shapes (cuBLAS in the same run), and the llama3-8b bf16/int4 e2e with validation.
# Logs: $OUT/final.log; reports: $OUT/reports.tgz (CSV, tuned database, e2e JSON).
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export KERNLAB_REPORTS=${KERNLAB_REPORTS:-/tmp/kl-reports}; mkdir -p "$KERNLAB_REPORTS"
K=./target/release/kernlab
R=$KERNLAB_REPORTS
cp "${SEED_DB:-docs/results/tuned-h200.json}" "$R/tuned.json" 2>/dev/null
step() { echo; echo "=== $* ($(date +%T)) ==="; }
{
  step "roofline ceilings"
  timeout 150 $K roofline --remeasure 2>&1 | tail -14
  step "selftest (all families)"
  timeout 200 $K selftest > "$R/selftest.log" 2>&1
  echo "selftest exit $?"; grep -v "^  ok" "$R/selftest.log" | tail -20
  step "sweep gemm_int4 (20 default shapes)"
  timeout 220 $K sweep gemm_int4 --budget ${BUDGET:-16} --out "$R/gemm_int4-final.csv" 2>&1 | grep -v "^      dropped\|^  bf16" | tail -26
} 2>&1 | tee "$OUT/final.log"
SKIP_SWEEP=1 OUT=$OUT scripts/gpu-e2e-int4.sh > /dev/null 2>&1
tar czf "$OUT/reports.tgz" -C "$R" .
