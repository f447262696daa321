#!/usr/bin/env bash
# Selftest of the families whose Hopper kernels share kernels/common/hopper.cuh, in one call:
# gemm_int4 (int4_wgmma_rs), attention_prefill (flash_wgmma), gemm (wgmma_tma), each capped.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export KERNLAB_REPORTS=${KERNLAB_REPORTS:-/tmp/kl-reports}; mkdir -p "$KERNLAB_REPORTS"
K=${K:-./target/release/kernlab}
for f in gemm_int4 attention_prefill gemm; do
  echo "=== selftest $f ($(date +%T)) ==="
  timeout ${CAP:-40} $K selftest --family $f > "$KERNLAB_REPORTS/selftest-$f.log" 2>&1
  echo "exit $?"; grep -v "^  ok" "$KERNLAB_REPORTS/selftest-$f.log" | tail -4
done 2>&1 | tee "$OUT/selftest-hopper.log"
