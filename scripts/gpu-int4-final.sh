#!/usr/bin/env bash
# The gemm_int4 closing table in one GPU call: the gemm_int4 selftest, then the whole default
# grid on the 20 default shapes (cuBLAS bf16 timed in the same run), seeded with the
# committed tuned database (so the model's other winners stay) and the committed H200
# ceilings (for "% of bound"; `kernlab roofline` re-measures them when time allows); then
# llama3-8b with --weights int4 --validate on the new database (unless SKIP_E2E=1).
# Logs: $OUT/int4-final.log; CSV and database: $OUT/gemm_int4-final.csv, $OUT/tuned.json.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export KERNLAB_REPORTS=${KERNLAB_REPORTS:-/tmp/kl-reports}; mkdir -p "$KERNLAB_REPORTS"
K=${K:-./target/release/kernlab}
R=$KERNLAB_REPORTS
cp "${SEED_DB:-docs/results/tuned-h200.json}" "$R/tuned.json"
cp "${SEED_CEILINGS:-docs/results/ceilings-h200-call-d.json}" "$R/ceilings-nvidia-h200-sm90.json"
step() { echo; echo "=== $* ($(date +%T)) ==="; }
{
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv,noheader
  step "selftest gemm_int4"
  timeout 120 $K selftest --family gemm_int4 > "$R/selftest-int4.log" 2>&1
  echo "selftest exit $?"; grep -v "^  ok" "$R/selftest-int4.log" | tail -8
  step "sweep gemm_int4 (20 default shapes, whole grid)"
  timeout ${SWEEP_TIMEOUT:-380} $K sweep gemm_int4 --budget 0 --time-limit ${TIME_LIMIT:-350s} \
    --out "$R/gemm_int4-final.csv" 2>&1 | grep -v "^      dropped\|^  bf16" | tail -26
  if [ -z "${SKIP_E2E:-}" ]; then
    step "llama3-8b int4 tuned + validate (new database)"
    timeout ${E2E_TIMEOUT:-180} $K e2e --batch 1,8 --prompt-len 128 --gen-len 128 --runs 1 --ignore-eos \
      --db "$R/tuned.json" --weights int4 --validate --out "$R/8b-int4" 2>&1 | grep -v "^  note: gemm" | tail -45
  fi
} 2>&1 | tee "$OUT/int4-final.log"
cp "$R/gemm_int4-final.csv" "$R/tuned.json" "$R/selftest-int4.log" "$OUT/" 2>/dev/null
(cd "$R" && tar czf "$OUT/e2e-int4.tgz" 8b-int4* 2>/dev/null)
