#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Instruction-prefix KV cache on the GPU (issue 6): the gpu-labelled test and the cold/warm
# benchmark for the Qwen2.5-0.5B and Mistral-7B shapes (bf16, random weights, the layout of
# bench/gpu: 64-token instruction + 16 query tokens in block 0, N x 128-token documents, 32-token
# query block). Run from the repository root on the GPU machine after
# `bash bench/gpu/run_h200.sh build` (same BUILD_DIR). Logs go to $OUT (default /tmp/out).
set -uo pipefail
OUT=${OUT:-/tmp/out}
B=${BUILD_DIR:-/tmp/b}
mkdir -p "$OUT"
ninja -C "$B" -j16 kv_prefix_gpu_test kv_prefix_test kv_prefix_bench >"$OUT/kv_build.log" 2>&1 \
  || { grep -E "error|FAILED" -A3 "$OUT/kv_build.log" | head -60; exit 1; }
"$B/tests/unit/ranker/kv_prefix_gpu_test" 2>&1 | tee "$OUT/kv_prefix_gpu_test.log" | grep -E "cached|OK|FAIL|PASSED|SKIP"
"$B/tests/unit/ranker/kv_prefix_test" 2>&1 | tail -3 | tee "$OUT/kv_prefix_test.log"
for n in 20 100; do
  "$B/bench/kv_cache/kv_prefix_bench" --model qwen --device cuda --docs $n --doc-tokens 128 \
    --reps 20 --dir /tmp/kv_prefix_bench_q 2>&1 | tee "$OUT/kv_bench_qwen_n$n.log"
done
for n in 20 100; do
  "$B/bench/kv_cache/kv_prefix_bench" --model mistral --device cuda --docs $n --doc-tokens 128 \
    --reps 10 --dir /tmp/kv_prefix_bench_m 2>&1 | tee "$OUT/kv_bench_mistral_n$n.log"
done
