#!/usr/bin/env bash
# int4 check-and-benchmark run for the GPU machine: the gemm_int4 selftest, then the sweep on
# the given shapes (default: the ten decode shapes), then optionally the full selftest.
#   scripts/gpu-int4.sh                      # selftest gemm_int4 + decode sweep
#   SHAPES="2048x28672x4096" BUDGET=12 FULL_SELFTEST=1 scripts/gpu-int4.sh
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export KERNLAB_REPORTS=${KERNLAB_REPORTS:-/tmp/kl-reports}
mkdir -p "$KERNLAB_REPORTS"
K=./target/release/kernlab
SHAPES=${SHAPES:-"1x6144x4096 1x4096x4096 1x28672x4096 1x4096x14336 1x128256x4096 16x6144x4096 16x4096x4096 16x28672x4096 16x4096x14336 16x128256x4096"}
shape_args=()
for s in $SHAPES; do shape_args+=(--shape "$s"); done
step() { echo; echo "=== $* ($(date +%T)) ==="; }
{
  step devices
  $K devices 2>&1 | tail -12
  step "selftest gemm_int4"
  timeout ${SELFTEST_TIMEOUT:-240} $K selftest --family gemm_int4 > "$KERNLAB_REPORTS/selftest-int4.log" 2>&1
  echo "selftest exit $?"
  grep -v "^  ok" "$KERNLAB_REPORTS/selftest-int4.log" | tail -30
  grep "int4_gemv_tc" "$KERNLAB_REPORTS/selftest-int4.log" | head -20
  step "sweep gemm_int4"
  timeout ${SWEEP_TIMEOUT:-300} $K sweep gemm_int4 --budget ${BUDGET:-24} "${shape_args[@]}" \
    --out "$KERNLAB_REPORTS/gemm_int4-run.csv" 2>&1 | grep -v "^      dropped" | tail -40
  if [ -n "${FULL_SELFTEST:-}" ]; then
    step "selftest (all families)"
    timeout ${FULL_SELFTEST_TIMEOUT:-400} $K selftest > "$KERNLAB_REPORTS/selftest.log" 2>&1
    echo "selftest exit $?"
    grep -v "^  ok" "$KERNLAB_REPORTS/selftest.log" | tail -30
  fi
} 2>&1 | tee "$OUT/run-int4.log"
tar czf "$OUT/reports.tgz" -C "$KERNLAB_REPORTS" . 2>/dev/null
