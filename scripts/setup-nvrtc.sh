#!/usr/bin/env bash
# Installs NVRTC 13.0 and the CUDA headers from NVIDIA's pip wheels when no CUDA toolkit is
# found, into ~/.cache/kernlab/cuda (where kernlab looks without any path being set).
# NVRTC needs no GPU: tests compile every kernel template with it on CI machines.
# With --cublas it also installs cuBLAS (the GEMM peer; ~700 MB) into ~/.cache/kernlab/cublas;
# `kernlab sweep` installs it itself when it is missing.
set -euo pipefail
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/kernlab
DEST=${KERNLAB_CUDA_DIR:-$CACHE/cuda}

need_pip() {
  if ! command -v python3 >/dev/null 2>&1; then
    echo "error: python3 is needed to install NVIDIA's CUDA wheels and is not on PATH." >&2
    echo "  Debian/Ubuntu: sudo apt-get install python3 python3-pip" >&2
    echo "  or install the CUDA 13 toolkit and set CUDA_HOME." >&2
    exit 1
  fi
  if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "error: python3 has no pip, which installs NVIDIA's CUDA wheels." >&2
    echo "  Get it with:  python3 -m ensurepip --user" >&2
    echo "  or, on Debian/Ubuntu (where ensurepip is disabled):  sudo apt-get install python3-pip" >&2
    echo "  or install the CUDA 13 toolkit and set CUDA_HOME." >&2
    exit 1
  fi
}

# The folders an NVRTC may be in: a toolkit, or a wheel's CUDA 13 (nvidia/cu13) or CUDA 12
# (nvidia/cuda_nvrtc + nvidia/cuda_runtime for the headers) layout.
found_nvrtc() {
  for root in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda "$DEST/nvidia/cu13"; do
    [ -n "$root" ] || continue
    for lib in "$root"/lib64/libnvrtc.so.1[23] "$root"/lib/libnvrtc.so.1[23]; do
      if [ -f "$lib" ] && [ -f "$root/include/cuda_bf16.h" ]; then echo "$lib"; return 0; fi
    done
  done
  if [ -f "$DEST/nvidia/cuda_nvrtc/lib/libnvrtc.so.12" ] && [ -f "$DEST/nvidia/cuda_runtime/include/cuda_bf16.h" ]; then
    echo "$DEST/nvidia/cuda_nvrtc/lib/libnvrtc.so.12"; return 0
  fi
  return 1
}

if lib=$(found_nvrtc); then
  echo "NVRTC found: $lib"
else
  need_pip
  echo "installing NVRTC 13.0 wheels into $DEST"
  mkdir -p "$DEST"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$DEST" \
    nvidia-cuda-nvrtc==13.0.88 nvidia-cuda-runtime==13.0.96
  test -f "$DEST/nvidia/cu13/lib/libnvrtc.so.13" || { echo "NVRTC wheel did not install libnvrtc.so.13" >&2; exit 1; }
  echo "NVRTC installed: $DEST/nvidia/cu13/lib/libnvrtc.so.13"
fi

if [ "${1:-}" = "--cublas" ]; then
  BLAS=$CACHE/cublas
  if [ -f "$BLAS/nvidia/cu13/lib/libcublas.so.13" ]; then
    echo "cuBLAS found: $BLAS/nvidia/cu13/lib/libcublas.so.13"
  else
    need_pip
    echo "installing the cuBLAS 13 wheel into $BLAS"
    mkdir -p "$BLAS"
    python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$BLAS" 'nvidia-cublas>=13,<14'
    echo "cuBLAS installed in $BLAS"
  fi
fi
