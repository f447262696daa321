#!/usr/bin/env bash
# One batched check-and-benchmark run for the GPU machine (it has no Rust toolchain: build
# here with `cargo build --release` and send target/release/kernlab along).
#
#   scripts/gpu-check.sh quick                  # devices, selftest, a short GEMM sweep
#   scripts/gpu-check.sh sweeps "gemm gemm_int4" # roofline + torch peers + these families' sweeps
#   scripts/gpu-check.sh selftest               # devices + selftest only
#
# Everything goes to $OUT/run.log; the reports folder is packed into $OUT/reports.tgz.
# Set BUDGET to cap candidates per shape for every family (default: each sweep file's).
set -uo pipefail
MODE=${1:-quick}
FAMILIES=${2:-}
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export KERNLAB_REPORTS=${KERNLAB_REPORTS:-/tmp/kl-reports}
mkdir -p "$KERNLAB_REPORTS"
K=./target/release/kernlab
LOG="$OUT/run-$MODE.log"
step() { echo; echo "=== $* ($(date +%T)) ==="; }
budget=()
[ -n "${BUDGET:-}" ] && budget=(--budget "$BUDGET")
{
  step devices
  $K devices
  case "$MODE" in
    quick|selftest)
      step selftest
      timeout ${SELFTEST_TIMEOUT:-400} $K selftest > "$KERNLAB_REPORTS/selftest.log" 2>&1
      echo "selftest exit $?"
      grep -v "^  ok" "$KERNLAB_REPORTS/selftest.log" | tail -40
      ;;
  esac
  if [ "$MODE" = quick ]; then
    step "gemm sweep (short)"
    timeout 300 $K sweep gemm --budget 6 --out "$KERNLAB_REPORTS/gemm-quick.csv" \
      --shape 1x4096x4096 --shape 16x4096x14336 --shape 128x6144x4096 --shape 2048x28672x4096 2>&1 | tail -12
  fi
  if [ "$MODE" = sweeps ]; then
    if [ -z "${SKIP_PEERS:-}" ]; then
      step "torch peers"
      [ -f scripts/torch_copy_peer.py ] && timeout 120 python3 scripts/torch_copy_peer.py "$KERNLAB_REPORTS/torch-peers.json" 2>&1 | tail -5
      [ -f scripts/torch_peers.py ] && timeout 240 python3 scripts/torch_peers.py "$KERNLAB_REPORTS/torch_peers.csv" 2>&1 | tail -40
      step roofline
      timeout 200 $K roofline --remeasure --torch-peers "$KERNLAB_REPORTS/torch-peers.json" 2>&1 | tail -30
    fi
    for fam in $FAMILIES; do
      step "sweep $fam"
      timeout ${SWEEP_TIMEOUT:-300} $K sweep "$fam" "${budget[@]}" --out "$KERNLAB_REPORTS/$fam-run.csv" 2>&1 | grep -v "^      dropped" | tail -30
    done
    step report
    $K roofline 2>&1 | tail -3
    $K report 2>&1 | tail -5
  fi
} 2>&1 | tee "$LOG"
tar czf "$OUT/reports.tgz" -C "$KERNLAB_REPORTS" . 2>/dev/null
