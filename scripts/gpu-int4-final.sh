#!/usr/bin/env bash
# The gemm_int4 closing table, in two GPU calls (each fits the 10-minute limit of one):
#   PHASE=grid  (default) the gemm_int4 selftest, then the whole default grid on the 20
#               default shapes (cuBLAS bf16 timed in the same run), seeded with the committed
#               tuned database (so the model's other winners stay) and the committed H200
#               ceilings (for "% of bound"; `kernlab roofline` re-measures them when time
#               allows). Copy $OUT/tuned.json to docs/results/tuned-h200.json before the next.
#   PHASE=model the batch-8 decode shapes the model also looks up (every variant, whole grid;
#               SHAPES="..." for others, SELFTEST=1 for the gemm_int4 selftest first), then
#               llama3-8b with --weights int4 --validate at batch 1 and 8 on the result.
# Logs: $OUT/int4-final-<phase>.log; CSVs and database: $OUT/gemm_int4-*.csv, $OUT/tuned.json.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export KERNLAB_REPORTS=${KERNLAB_REPORTS:-/tmp/kl-reports}; mkdir -p "$KERNLAB_REPORTS"
K=${K:-./target/release/kernlab}
R=$KERNLAB_REPORTS
PHASE=${PHASE:-grid}
cp "${SEED_DB:-docs/results/tuned-h200.json}" "$R/tuned.json"
cp "${SEED_CEILINGS:-docs/results/ceilings-h200-call-d.json}" "$R/ceilings-nvidia-h200-sm90.json"
step() { echo; echo "=== $* ($(date +%T)) ==="; }
{
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv,noheader
  if [ "$PHASE" = grid ]; then
    step "selftest gemm_int4"
    timeout 150 $K selftest --family gemm_int4 > "$R/selftest-int4.log" 2>&1
    echo "selftest exit $?"; grep -v "^  ok" "$R/selftest-int4.log" | tail -8
    cp "$R/selftest-int4.log" "$OUT/"
    step "sweep gemm_int4 (20 default shapes, whole grid)"
    timeout ${SWEEP_TIMEOUT:-400} $K sweep gemm_int4 --budget 0 --time-limit ${TIME_LIMIT:-380s} \
      --out "$R/gemm_int4-final.csv" 2>&1 | grep -v "^      dropped\|^  bf16" | tail -26
    cp "$R/gemm_int4-final.csv" "$OUT/" 2>/dev/null
  else
    if [ -n "${SELFTEST:-}" ]; then
      step "selftest gemm_int4"
      timeout 150 $K selftest --family gemm_int4 > "$R/selftest-int4.log" 2>&1
      echo "selftest exit $?"; grep -v "^  ok" "$R/selftest-int4.log" | tail -8
      cp "$R/selftest-int4.log" "$OUT/"
    fi
    SHAPES=${SHAPES:-"8x6144x4096 8x4096x4096 8x28672x4096 8x4096x14336"}
    step "sweep gemm_int4 at $SHAPES"
    shape_args=(); for sh in $SHAPES; do shape_args+=(--shape "$sh"); done
    timeout 260 $K sweep gemm_int4 --budget 0 --time-limit 240s --out "$R/gemm_int4-model.csv" "${shape_args[@]}" \
      2>&1 | grep -v "^      dropped\|^  bf16" | tail -20
    cp "$R/gemm_int4-model.csv" "$OUT/" 2>/dev/null
    step "llama3-8b int4 tuned + validate"
    timeout ${E2E_TIMEOUT:-240} $K e2e --batch 1,8 --prompt-len 128 --gen-len 128 --runs 1 --ignore-eos \
      --db "$R/tuned.json" --weights int4 --validate --out "$R/8b-int4" 2>&1 | grep -v "^  note: gemm" | tail -45
    (cd "$R" && tar czf "$OUT/e2e-int4.tgz" 8b-int4* 2>/dev/null)
  fi
} 2>&1 | tee "$OUT/int4-final-$PHASE.log"
cp "$R/tuned.json" "$OUT/" 2>/dev/null
