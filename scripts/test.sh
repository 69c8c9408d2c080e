#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The test command: installs what is missing, builds, prepares test references (npm tokenizers into
# .cache/, never at product run time) and runs every CTest test that needs no GPU.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
bash scripts/build.sh
if [ -x scripts/tokenizer-reference/setup.sh ]; then
  bash scripts/tokenizer-reference/setup.sh
fi
ctest --test-dir "${BUILD_DIR:-$root/build}" --label-exclude gpu --output-on-failure \
  -j "${JOBS:-$(nproc)}" "$@"
