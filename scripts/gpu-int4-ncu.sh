#!/usr/bin/env bash
# Nsight Compute on the tuned int4_gemv_tc winners of two decode shapes (one launch each, the
# full section set), then the whole `kernlab selftest`. Reports go to $OUT/ncu-*.txt.
#   scripts/gpu-int4-ncu.sh
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export KERNLAB_REPORTS=${KERNLAB_REPORTS:-/tmp/kl-reports}; mkdir -p "$KERNLAB_REPORTS"
K=${K:-$PWD/target/release/kernlab}
R=$KERNLAB_REPORTS
NCU=${NCU:-/usr/local/cuda/bin/ncu}
# shape and the winner's tunables (docs/results/tuned-h200.json, call U)
profile() {
  local shape=$1 params=$2 toml="$R/ncu-$1.toml"
  python3 scripts/sweep_probe.py sweeps/gemm_int4.toml "$toml" --variant int4_gemv_tc --params "$params"
  echo; echo "=== ncu $shape ($(date +%T)) ==="
  timeout 200 $NCU --target-processes all -k regex:int4_gemv_tc --launch-skip 5 --launch-count 1 --set full \
    $K sweep gemm_int4 --file "$toml" --budget 0 --shape "$shape" --out "$R/ncu-$shape.csv" \
    > "$OUT/ncu-int4_gemv_tc-$shape.txt" 2>&1
  echo "ncu exit $?"
  grep -E "Duration|DRAM Throughput|Compute \(SM\) Throughput|Memory Throughput|Registers Per|Achieved Occupancy|Theoretical Occ|Warp Cycles Per Issued|Issue Slots Busy|L1/TEX Hit|L2 Hit|Executed Ipc A|dram__bytes|Mem Busy|Max Bandwidth" \
    "$OUT/ncu-int4_gemv_tc-$shape.txt" | head -24
  grep -B1 -A6 "Est. Local Speedup\|Est. Speedup" "$OUT/ncu-int4_gemv_tc-$shape.txt" | grep -v "^--" | cut -c1-150 | head -40
}
{
  nvidia-smi --query-gpu=name --format=csv,noheader
  profile 1x28672x4096 '{ GROUP = [128], ZERO_MODE = [0], M_TILES = [1], N_TILES = [1], NUM_WARPS = [4], UNROLL = [1], SPLITK = [1], PREFETCH = [0], ZP_MMA = [1], DIAG = [0] }'
  profile 16x28672x4096 '{ GROUP = [128], ZERO_MODE = [0], M_TILES = [2], N_TILES = [2], NUM_WARPS = [4], UNROLL = [1], SPLITK = [1], PREFETCH = [0], ZP_MMA = [0], DIAG = [0] }'
  if [ -z "${SKIP_SELFTEST:-}" ]; then
    echo; echo "=== selftest ($(date +%T)) ==="
    timeout ${SELFTEST_TIMEOUT:-330} $K selftest > "$OUT/selftest.log" 2>&1
    echo "selftest exit $?"; grep -v "^  ok" "$OUT/selftest.log" | tail -12
  fi
} 2>&1 | tee "$OUT/int4-ncu.log"
