#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# On the GPU machine, from the repository root, after `eval "$(bash .gpu-deps/unpack-debs.sh .gpu-deps)"`:
# configure + build the CUDA targets, run the kernel and GPU parity tests (+ compute-sanitizer
# memcheck/racecheck on the small cases and the fused layer ops), then gpu_rerank_bench and the HF
# peer for both model shapes in the same run.
# Logs go to $OUT (default /tmp/out). Usage: bench/gpu/run_h200.sh [stage...] (default: all but
# headline). Stage `headline`: Mistral N = 100 against the HF peer, ROUNDS (default 2) alternated
# pairs of a median of 11 each, with the ratio of each pair (docs/BENCHMARKS.md's target table).
set -uo pipefail
OUT=${OUT:-/tmp/out}
B=${BUILD_DIR:-/tmp/b}
mkdir -p "$OUT"
stages=${*:-"build test sanitize bench peer"}
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
date -u | tee -a "$OUT/gpu.txt"
if [[ $stages == *build* ]]; then
  cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBLOCKRANK_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DBLOCKRANK_TESTS=ON -DBLOCKRANK_BENCH=ON \
    -DCMAKE_CUDA_COMPILER="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" >"$OUT/configure.log" 2>&1 \
    || { tail -40 "$OUT/configure.log"; exit 1; }
  grep "blockrank:" "$OUT/configure.log"
  ninja -C "$B" -j16 kernel_test ranker_parity_gpu_test gpu_rerank_bench >"$OUT/build.log" 2>&1 \
    || { grep -E "error|FAILED" -A3 "$OUT/build.log" | head -60; exit 1; }
fi
T="$B/tests/unit/kernels/kernel_test"
if [[ $stages == *test* ]]; then
  "$T" 2>&1 | tee "$OUT/kernel_test.log" | grep -E "rel_l2|OK|FAIL|PASSED|SKIP" | tail -60
  # Parity with HF transformers in bf16 on the fixtures (the CUDA load path: merged and folded
  # weights, the fused layers where the shapes allow).
  "$B/tests/unit/ranker/ranker_parity_gpu_test" 2>&1 | tee "$OUT/parity_gpu_test.log" |
    grep -E "OK|FAIL|PASSED|SKIP" | tail -20
fi
if [[ $stages == *sanitize* ]]; then
  CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  # Racecheck leaves out the *MatchesAten cases: they call cuBLAS bf16 GEMMs, on which racecheck
  # runs past its timeout or fails inside the tool (bench/gpu/NOTES.md, sessions 11-12).
  # Racecheck in separate calls of up to 240 s each: since the attention checks also run Q's RoPE
  # inside the kernel (session 18) the one call ran past 240 s (the persistent kernel's cases
  # alone take ~20 s). The wgmma pieces kernel (session 19) runs in the Persistent-TMA cases.
  for run in "memcheck blockrank_ *Small*:*MatchesAten:*PersistentTma*" \
             "racecheck blockrank_attention_tma *PersistentTma*" \
             "racecheck blockrank_attention_pieces *PersistentTma*" \
             "racecheck blockrank_ *Small*" \
             "racecheck blockrank_ *SwigluGemm*:*RopeGemm*"; do
    read -r tool kernels filter <<<"$run"
    n=$((${n:-0} + 1))
    log="$OUT/sanitizer_${n}_$tool.log"
    timeout 240 "$CS" --tool "$tool" --kernel-name kns="$kernels" "$T" --gtest_filter="$filter" \
      >"$log" 2>&1
    echo "sanitizer $tool ($kernels, $filter) rc=$?: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | tail -1)"
  done
fi
if [[ $stages == *bench* ]]; then
  "$B/bench/gpu/gpu_rerank_bench" --model qwen 2>&1 | tee "$OUT/bench_qwen.log"
  "$B/bench/gpu/gpu_rerank_bench" --model mistral 2>&1 | tee "$OUT/bench_mistral.log"
fi
if [[ $stages == *peer* ]]; then
  PYTHONUNBUFFERED=1 python3 bench/gpu/hf_peer.py --model qwen 2>&1 | tee "$OUT/peer_qwen.log"
  PYTHONUNBUFFERED=1 python3 bench/gpu/hf_peer.py --model mistral 2>&1 | tee "$OUT/peer_mistral.log"
fi
if [[ $stages == *headline* ]]; then
  for r in $(seq 1 "${ROUNDS:-2}"); do
    ours=$("$B/bench/gpu/gpu_rerank_bench" --model mistral --docs 100 --reps 11 --kernel-bench 0 2>&1 |
           tee "$OUT/headline_ours_$r.log" | awk -F'|' '/^\| mistral \| 20 \| 100 \|/ {print $6 + 0}')
    peer=$(PYTHONUNBUFFERED=1 python3 bench/gpu/hf_peer.py --model mistral --docs 100 --reps 11 2>&1 |
           tee "$OUT/headline_peer_$r.log" | awk -F'|' '/^\| mistral \| 100 \|/ {print $5 + 0}')
    echo "headline round $r ($(date -u +%T)): ours $ours ms, HF peer $peer ms, speed-up" \
         "$(awk -v a="$ours" -v b="$peer" 'BEGIN { if (a > 0) printf "%.2fx", b / a; else print "?" }')"
  done
fi
