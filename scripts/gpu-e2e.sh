#!/usr/bin/env bash
# The end-to-end GPU session: PyTorch peers + the memory-bound and attention sweeps, a GEMM
# sweep on the Llama-3-8B decode and prefill shapes (so the tuned path has winners), then
# `kernlab e2e` (tuned vs reference) and the Hugging Face comparison, all in one call.
# Logs go to $OUT/e2e.log; reports are packed into $OUT/reports.tgz.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export KERNLAB_REPORTS=${KERNLAB_REPORTS:-/tmp/kl-reports}; mkdir -p "$KERNLAB_REPORTS"
K=./target/release/kernlab
step() { echo; echo "=== $* ($(date +%T)) ==="; }
{
  step "torch peers"
  [ -z "${SKIP_TORCH:-}" ] && timeout 90 python3 scripts/torch_peers.py "$KERNLAB_REPORTS/torch_peers.csv" 2>&1 | grep -v Warning | grep -v "return F" | tail -30
  for fam in ${FAMILIES:-softmax rmsnorm rope swiglu attention_decode attention_prefill}; do
    step "sweep $fam"
    timeout 60 $K sweep "$fam" --budget ${BUDGET:-8} --out "$KERNLAB_REPORTS/$fam-e2e.csv" 2>&1 | grep -v "^      dropped\|^  bf16" | tail -12
  done
  step "gemm sweep on the e2e shapes"
  shapes=()
  for m in 1 8 128 1024; do for nk in 6144x4096 4096x4096 28672x4096 4096x14336 128256x4096; do shapes+=(--shape "${m}x${nk}"); done; done
  timeout 120 $K sweep gemm --budget 6 "${shapes[@]}" --out "$KERNLAB_REPORTS/gemm-e2e.csv" 2>&1 | grep -v "^      dropped\|^  bf16" | tail -24
  step "e2e tuned (llama3-8b random weights)"
  timeout 150 $K e2e --batch 1,8 --runs 2 --validate --profile --out "$KERNLAB_REPORTS/e2e-tuned" 2>&1 | tail -60
  step "HF reference (transformers)"
  timeout 240 python3 scripts/hf_reference.py --preset llama3-8b --out-dir /tmp/hf8b --json /tmp/hf8b.json --budget-s 200 2>&1 | grep -v Warning | tail -25
  step "e2e vs HF"
  [ -f /tmp/hf8b.json ] && timeout 150 $K e2e --model /tmp/hf8b --hf-reference /tmp/hf8b.json --batch 1,8 --runs 1 --out "$KERNLAB_REPORTS/e2e-hf" 2>&1 | tail -45
  $K report >/dev/null 2>&1
} 2>&1 | tee "$OUT/e2e.log"
cp /tmp/hf8b.json "$KERNLAB_REPORTS/" 2>/dev/null
tar czf "$OUT/reports.tgz" -C "$KERNLAB_REPORTS" .
