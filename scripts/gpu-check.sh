#!/usr/bin/env bash
# One batched check-and-benchmark run for the GPU machine (it has no Rust toolchain: build
# here with `cargo build --release` and send target/release/kernlab along).
#
#   scripts/gpu-check.sh quick     # devices, selftest, a short GEMM sweep (bug hunting)
#   scripts/gpu-check.sh full      # + every family's default sweep, roofline, report, torch peers
#
# Writes logs and CSVs under $OUT (or ./gpu-out) and prints short tables last.
set -uo pipefail
MODE=${1:-quick}
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export KERNLAB_REPORTS="$OUT/reports"
mkdir -p "$KERNLAB_REPORTS"
K=./target/release/kernlab
step() { echo; echo "=== $* ==="; }

step devices
$K devices 2>&1 | tee "$OUT/devices.log"

step selftest
timeout 420 $K selftest 2>&1 | tee "$OUT/selftest.log" | grep -v "^  ok" || true
tail -3 "$OUT/selftest.log"

if [ "$MODE" = quick ]; then
  step "gemm sweep (short)"
  timeout 300 $K sweep gemm --budget 6 --out "$KERNLAB_REPORTS/gemm-quick.csv" \
    --shape 1x4096x4096 --shape 16x4096x14336 --shape 128x6144x4096 --shape 2048x28672x4096 --shape 1x128256x4096 2>&1 \
    | tee "$OUT/sweep-gemm.log" | tail -12
  exit 0
fi

for fam in ${FAMILIES:-gemm gemm_int4 softmax rmsnorm rope swiglu attention_prefill attention_decode}; do
  [ -f "sweeps/$fam.toml" ] || continue
  step "sweep $fam"
  timeout ${SWEEP_TIMEOUT:-400} $K sweep "$fam" --out "$KERNLAB_REPORTS/$fam-run.csv" 2>&1 | tee "$OUT/sweep-$fam.log" | tail -25
done
if [ -f scripts/torch_peers.py ]; then
  step "torch peers"
  timeout 300 python3 scripts/torch_peers.py "$KERNLAB_REPORTS/torch-peers.csv" 2>&1 | tail -30
fi
if $K roofline --help >/dev/null 2>&1; then
  step roofline
  timeout 200 $K roofline 2>&1 | tee "$OUT/roofline.log" | tail -25
  step report
  $K report 2>&1 | tail -5
fi
