#!/usr/bin/env bash
# A/B of gemm_int4 templates in one GPU call: an older commit's templates (with that commit's
# sweep file) against the working tree's, on the same shapes with the same cut-down grids,
# cuBLAS bf16 timed in each run; then the gemm_int4 selftest of the working tree. Here, before
# the call:
#   mkdir -p .kl-carry/old && git archive REV kernels sweeps | tar -x -C .kl-carry/old
# and carry .kl-carry/old with target/release/kernlab. Logs and CSVs go to $OUT.
#   scripts/gpu-int4-ab.sh
#   DECODE_SHAPES="1x28672x4096" PREFILL_SHAPES="" SKIP_SELFTEST=1 scripts/gpu-int4-ab.sh
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export KERNLAB_REPORTS=${KERNLAB_REPORTS:-/tmp/kl-reports}; mkdir -p "$KERNLAB_REPORTS"
K=${K:-./target/release/kernlab}
R=$KERNLAB_REPORTS
OLD=${OLD:-$PWD/.kl-carry/old}
DECODE_SHAPES=${DECODE_SHAPES-"1x6144x4096 1x4096x4096 1x28672x4096 1x4096x14336 1x128256x4096 16x6144x4096 16x4096x4096 16x28672x4096 16x4096x14336 16x128256x4096"}
PREFILL_SHAPES=${PREFILL_SHAPES-"128x28672x4096 128x4096x14336 2048x4096x4096 2048x28672x4096"}

# probe OUT VARIANT old|new PARAMS: the sweep file's header and that variant, params replaced;
# the old side takes the old tree's sweep file and templates.
probe() {
  if [ "$3" = old ]; then
    python3 scripts/sweep_probe.py "$OLD/sweeps/gemm_int4.toml" "$1" --variant "$2" --params "$4" --templates "$OLD/kernels"
  else
    python3 scripts/sweep_probe.py sweeps/gemm_int4.toml "$1" --variant "$2" --params "$4"
  fi
}
sweep() {  # sweep LABEL TOML SHAPES...
  local label=$1 toml=$2; shift 2
  local args=(); for s in "$@"; do args+=(--shape "$s"); done
  echo; echo "=== $label ($(date +%T)) ==="
  timeout ${SWEEP_TIMEOUT:-240} $K sweep gemm_int4 --file "$toml" --budget 0 "${args[@]}" \
    --time-limit ${TIME_LIMIT:-220s} --out "$R/$label.csv" 2>&1 | grep -v "^      dropped" | tail -14
  cp "$R/$label.csv" "$OUT/" 2>/dev/null
}
TC='{ GROUP = [128], ZERO_MODE = [0], M_TILES = [1, 2], N_TILES = [1, 2], NUM_WARPS = [4, 8], UNROLL = [1, 2], SPLITK = [1, 2, 4], PREFETCH = [0, 1]'
RS='{ GROUP = [128], ZERO_MODE = [0], BT = [128, 256], MT = [1, 2], CWG = [1, 2], STAGES = [4, 6], KGROUP = [1], SPLITK = [1, 4, 8] }'
{
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv,noheader
  if [ -n "$DECODE_SHAPES" ]; then
    probe "$R/tc-old.toml" int4_gemv_tc old "$TC }"
    probe "$R/tc-new.toml" int4_gemv_tc new "$TC, ZP_MMA = [0, 1], DIAG = [0] }"
    sweep tc-old "$R/tc-old.toml" $DECODE_SHAPES
    sweep tc-new "$R/tc-new.toml" $DECODE_SHAPES
  fi
  if [ -n "$PREFILL_SHAPES" ]; then
    probe "$R/rs-old.toml" int4_wgmma_rs old "$RS"
    probe "$R/rs-new.toml" int4_wgmma_rs new "$RS"
    sweep rs-old "$R/rs-old.toml" $PREFILL_SHAPES
    sweep rs-new "$R/rs-new.toml" $PREFILL_SHAPES
  fi
  if [ -z "${SKIP_SELFTEST:-}" ]; then
    echo; echo "=== selftest gemm_int4 ($(date +%T)) ==="
    timeout ${SELFTEST_TIMEOUT:-200} $K selftest --family gemm_int4 > "$R/selftest-int4.log" 2>&1
    echo "selftest exit $?"; grep -v "^  ok" "$R/selftest-int4.log" | tail -12
    grep -c "ZP_MMA.: 0" "$R/selftest-int4.log"; grep -c "ZP_MMA.: 1" "$R/selftest-int4.log"
    cp "$R/selftest-int4.log" "$OUT/"
  fi
} 2>&1 | tee "$OUT/int4-ab.log"
