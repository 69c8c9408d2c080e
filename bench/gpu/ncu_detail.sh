#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Nsight Compute's full section set (occupancy, stall reasons, pipe and memory throughput) for one
# launch of the kernels matching a regex, inside one gpu_rerank_bench pass. Run after
# `run_h200.sh build`. Usage: bench/gpu/ncu_detail.sh REGEX [mistral|qwen] [docs] [skip]
# (skip: launches of the kernel to pass over first). Report text under $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/out}
B=${BUILD_DIR:-/tmp/b}
regex=$1
model=${2:-mistral}
docs=${3:-100}
skip=${4:-4}
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
tag=$(echo "$regex" | tr -c 'a-zA-Z0-9_' '_' | cut -c1-40)
timeout 300 "$NCU" --clock-control none --set full -k "regex:$regex" --launch-skip "$skip" \
  --launch-count 1 "$B/bench/gpu/gpu_rerank_bench" --model "$model" --docs "$docs" --warmup 0 \
  --reps 1 --kernel-bench 0 >"$OUT/ncu_detail_${tag}.txt" 2>&1
echo "ncu $regex rc=$?"
grep -E "^  [a-z_]+.*\(|Duration|Achieved Occupancy|Theoretical Occupancy|Registers Per|Compute \(SM\) Throughput|Memory Throughput|L2 Cache Throughput|DRAM Throughput|Issue Slots Busy|Eligible Warps|No Eligible|Block Limit|Dynamic Shared|Waves Per SM|Executed Ipc A" \
  "$OUT/ncu_detail_${tag}.txt" | head -40
