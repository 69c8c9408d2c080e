#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Per-kernel GPU time of one rerank pass (no nsys on the GPU machine: Nsight Compute with only the
# duration metric, clocks left alone), summed by kernel name. Run after `run_h200.sh build`.
# Usage: bench/gpu/profile_kernels.sh [mistral|qwen] [docs]   (logs under $OUT)
set -uo pipefail
OUT=${OUT:-/tmp/out}
B=${BUILD_DIR:-/tmp/b}
model=${1:-mistral}
docs=${2:-100}
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
csv="$OUT/ncu_${model}_${docs}.csv"
# --warmup 0 --reps 1: one pass, so the sum is one query's kernels.
timeout 400 "$NCU" --clock-control none --metrics gpu__time_duration.sum --csv \
  "$B/bench/gpu/gpu_rerank_bench" --model "$model" --docs "$docs" --warmup 0 --reps 1 \
  >"$csv" 2>"$OUT/ncu_${model}_${docs}.err"
echo "ncu rc=$?"
python3 - "$csv" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head = rows[0]; rows = rows[1:]
ki, mi, vi, ui = head.index("Kernel Name"), head.index("Metric Name"), head.index("Metric Value"), head.index("Metric Unit")
tot = collections.defaultdict(float); cnt = collections.Counter()
for r in rows:
    if r[mi] != "gpu__time_duration.sum": continue
    v = float(r[vi].replace(",", ""))
    scale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3}
    v *= scale.get(r[ui], 1e-3)  # -> microseconds (ncu 2025 reports "ns")
    if r[ui] in ("ns", "nsecond"): v = float(r[vi].replace(",", "")) / 1e3
    name = r[ki].split("(")[0][:90]
    tot[name] += v; cnt[name] += 1
all_us = sum(tot.values())
print(f"total kernel time {all_us/1e3:.2f} ms over {sum(cnt.values())} launches")
for name, us in sorted(tot.items(), key=lambda x: -x[1])[:30]:
    print(f"{us/1e3:9.3f} ms {100*us/all_us:5.1f}% x{cnt[name]:4d}  {name}")
PY
