#!/usr/bin/env bash
# int4_wgmma_rs on the GPU machine in one call: the gemm_int4 selftest (every variant, every
# format, the model's int4 linear), then a sweep of only the variants named in VARIANTS on
# SHAPES (a copy of sweeps/gemm_int4.toml cut down to them), cuBLAS bf16 timed in the same run.
#   scripts/gpu-int4-rs.sh
#   VARIANTS="int4_wgmma_rs int4_gemv_tc" SHAPES="1x28672x4096" BUDGET=0 SKIP_SELFTEST=1 scripts/gpu-int4-rs.sh
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export KERNLAB_REPORTS=${KERNLAB_REPORTS:-/tmp/kl-reports}
mkdir -p "$KERNLAB_REPORTS"
K=${K:-./target/release/kernlab}
VARIANTS=${VARIANTS:-int4_wgmma_rs}
SHAPES=${SHAPES:-"1x28672x4096 1x4096x4096 1x128256x4096 16x28672x4096 128x28672x4096 128x4096x4096 2048x28672x4096 2048x4096x4096"}
shape_args=()
for s in $SHAPES; do shape_args+=(--shape "$s"); done
# The sweep file's header plus the chosen variants.
probe="$KERNLAB_REPORTS/gemm_int4-probe.toml"
variant_args=(); for v in $VARIANTS; do variant_args+=(--variant "$v"); done
python3 scripts/sweep_probe.py sweeps/gemm_int4.toml "$probe" "${variant_args[@]}"
step() { echo; echo "=== $* ($(date +%T)) ==="; }
{
  step devices
  $K devices 2>&1 | tail -12
  if [ -z "${SKIP_SELFTEST:-}" ]; then
    step "selftest gemm_int4"
    timeout ${SELFTEST_TIMEOUT:-240} $K selftest --family gemm_int4 > "$KERNLAB_REPORTS/selftest-int4.log" 2>&1
    echo "selftest exit $?"
    grep -v "^  ok" "$KERNLAB_REPORTS/selftest-int4.log" | tail -30
    grep -c "int4_wgmma_rs" "$KERNLAB_REPORTS/selftest-int4.log"
  fi
  step "sweep ($VARIANTS)"
  grep -c '^name = ' "$probe"
  timeout ${SWEEP_TIMEOUT:-300} $K sweep gemm_int4 --file "$probe" --budget ${BUDGET:-0} "${shape_args[@]}" \
    --time-limit ${TIME_LIMIT:-270s} --out "$KERNLAB_REPORTS/gemm_int4-probe.csv" 2>&1 | grep -v "^      dropped" | tail -60
} 2>&1 | tee "$OUT/run-int4-rs.log"
cp "$KERNLAB_REPORTS/gemm_int4-probe.csv" "$OUT/" 2>/dev/null
tar czf "$OUT/reports.tgz" -C "$KERNLAB_REPORTS" . 2>/dev/null
