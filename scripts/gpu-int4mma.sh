#!/usr/bin/env bash
# One GPU call for the int4 prefill kernels (int4_mma, int4_mma_wgmma): the gemm_int4
# selftest, then the sweep at M = 128 and 2048 with cuBLAS bf16 measured in the same run.
# Run from a folder holding kernlab, kernels/, sweeps/ (e.g. a carry copy); writes to $OUT.
#   SHAPES="128x4096x4096" BUDGET=16 scripts/gpu-int4mma.sh
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export KERNLAB_REPORTS=${KERNLAB_REPORTS:-$OUT/rep}
mkdir -p "$KERNLAB_REPORTS"
K=${KERNLAB:-./kernlab}
SHAPES=${SHAPES:-"128x6144x4096 128x4096x4096 128x28672x4096 128x4096x14336 2048x4096x4096 2048x28672x4096"}
shape_args=()
for s in $SHAPES; do shape_args+=(--shape "$s"); done
step() { echo; echo "=== $* ($(date +%T)) ==="; }
{
  step devices
  $K devices 2>&1 | head -8
  step "selftest gemm_int4"
  timeout ${SELFTEST_TIMEOUT:-200} $K selftest --family gemm_int4 > "$OUT/selftest-int4.log" 2>&1
  echo "selftest exit $?"
  grep -v "^  ok" "$OUT/selftest-int4.log" | tail -40
  grep -c "int4_mma_wgmma" "$OUT/selftest-int4.log"
  step "sweep gemm_int4"
  timeout ${SWEEP_TIMEOUT:-200} $K sweep gemm_int4 --budget ${BUDGET:-16} "${shape_args[@]}" \
    --out "$OUT/gemm_int4-run.csv" 2>&1 | grep -v "^      dropped" | tail -40
} 2>&1 | tee "$OUT/run.log"
