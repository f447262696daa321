#!/usr/bin/env bash
# One batched GPU call for the decode-attention / RoPE tuning work (issue 6): copy bandwidth,
# (optionally) the PyTorch peers, selftests of the touched families, and their sweeps, all in
# the same call so every % of copy and every peer ratio comes from one card.
#
#   OUT=/tmp/out scripts/decodeattn-gpu.sh [peers] [explore|final]
#
# Run from a folder holding kernlab, kernels/, sweeps/ and scripts/ (see docs/attention-notes.md).
set -uo pipefail
PEERS=${1:-nopeers}
MODE=${2:-explore}
OUT=${OUT:-$PWD/gpu-out}
export KERNLAB_REPORTS=${KERNLAB_REPORTS:-$OUT/rep}
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
mkdir -p "$OUT" "$KERNLAB_REPORTS"
K=./kernlab
step() { echo; echo "=== $* ($(date +%T)) ==="; }
{
  step devices
  nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
  if [ "$PEERS" = peers ]; then
    step "torch peers (copy_, decode SDPA, HF RoPE, ...)"
    timeout 150 python3 scripts/torch_peers.py "$KERNLAB_REPORTS/torch_peers.csv" 2>&1 | grep -E "^#|copy|rope|attn_decode" | head -20
    grep -E "^copy|^rope,4x2048|^attn_decode" "$KERNLAB_REPORTS/torch_peers.csv"
  else
    step "torch copy_ (2 GiB)"
    timeout 60 python3 scripts/torch_copy_peer.py "$KERNLAB_REPORTS/torch-peers.json" 2>&1 | tail -3
  fi
  step selftest
  timeout ${SELFTEST_TIMEOUT:-120} $K selftest --family attention_decode --family attention_decode_varlen --family rope \
    > "$KERNLAB_REPORTS/selftest.log" 2>&1
  echo "selftest exit $?"
  grep -v "^  ok" "$KERNLAB_REPORTS/selftest.log" | tail -30
  grep -c "^  ok" "$KERNLAB_REPORTS/selftest.log"
  step "sweep attention_decode"
  timeout ${DECODE_TIMEOUT:-170} $K sweep attention_decode ${DECODE_ARGS:-} --out "$KERNLAB_REPORTS/attention_decode-run.csv" 2>&1 \
    | grep -v "^ *dropped" | tail -25
  step "decode fixed-cost probe (batch 1, L = 512 .. 32768)"
  timeout ${PROBE_TIMEOUT:-60} $K sweep attention_decode --file scripts/decode-overhead-probe.toml \
    --db "$KERNLAB_REPORTS/probe-tuned.json" --out "$KERNLAB_REPORTS/decode-probe.csv" 2>&1 | grep -v "^ *dropped" | tail -12
  step "sweep rope"
  timeout ${ROPE_TIMEOUT:-90} $K sweep rope ${ROPE_ARGS:-} --out "$KERNLAB_REPORTS/rope-run.csv" 2>&1 \
    | grep -v "^ *dropped" | tail -25
} 2>&1 | tee "$OUT/log.txt"
tar czf "$OUT/reports.tgz" -C "$KERNLAB_REPORTS" . 2>/dev/null
