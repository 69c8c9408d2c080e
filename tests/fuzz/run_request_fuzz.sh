#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the request-parser fuzzer with clang (libFuzzer + ASan + UBSan) and runs it for a bounded
# time from the seed corpus. Exit status is non-zero on any crash, leak or sanitizer report.
# Usage: run_request_fuzz.sh SOURCE_DIR WORK_DIR [SECONDS]
set -euo pipefail
src=$1; work=$2; secs=${3:-30}
cxx=$(command -v clang++-14 || command -v clang++ || true)
if [ -z "$cxx" ]; then echo "SKIP: clang++ not installed (scripts/setup.sh installs clang-14)"; exit 0; fi
mkdir -p "$work/corpus"
cp "$src"/tests/fuzz/corpus/* "$work/corpus/"
"$cxx" -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$src" -I"$src/plugin/include" \
  "$src/tests/fuzz/request_fuzz.cc" "$src/http/api.cc" "$src/plugin/base/strings.cc" \
  "$src/plugin/base/status.cc" "$src/plugin/base/fusion.cc" -o "$work/request_fuzz"
"$work/request_fuzz" -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 "$work/corpus" 2>&1 | tail -n 12
