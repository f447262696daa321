#!/usr/bin/env bash
# Installs NVRTC 13.0 and the CUDA headers from NVIDIA's pip wheels when no CUDA toolkit is
# found, into ~/.cache/kernlab/cuda (where kernlab looks without any path being set).
# NVRTC needs no GPU: tests compile every kernel template with it on CI machines.
set -euo pipefail
DEST=${KERNLAB_CUDA_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kernlab/cuda}
for root in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda "$DEST/nvidia/cu13"; do
  [ -n "$root" ] || continue
  for lib in "$root/lib64/libnvrtc.so.13" "$root/lib/libnvrtc.so.13"; do
    if [ -f "$lib" ] && [ -f "$root/include/cuda_bf16.h" ]; then
      echo "NVRTC found: $lib"
      exit 0
    fi
  done
done
echo "installing NVRTC 13.0 wheels into $DEST"
mkdir -p "$DEST"
python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$DEST" \
  nvidia-cuda-nvrtc==13.0.88 nvidia-cuda-runtime==13.0.96
test -f "$DEST/nvidia/cu13/lib/libnvrtc.so.13" || { echo "NVRTC wheel did not install libnvrtc.so.13" >&2; exit 1; }
echo "NVRTC installed: $DEST/nvidia/cu13/lib/libnvrtc.so.13"
