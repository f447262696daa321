#!/usr/bin/env bash
# The test command: installs what the tests need (NVRTC from pip wheels, the SmolLM2 test
# model) and runs every CPU and NVRTC test. No GPU needed; GPU checks are `kernlab selftest`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-nvrtc.sh
if [ -x scripts/fetch-test-model.sh ]; then scripts/fetch-test-model.sh; fi
cargo test --release "$@"
