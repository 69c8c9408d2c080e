#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Data-parallel training on two GPUs against one (issue #11), on the GPU machine after
# `eval "$(bash .gpu-deps/unpack-debs.sh .gpu-deps)"` and a configure of $BUILD_DIR (run_h200.sh
# build). The random Qwen2.5-0.5B-shaped model and synthetic task of run_h200_train.sh (30
# documents x 160 tokens, 5,120 padded slots per example, bf16 compute, fp32 masters, AdamW, aux
# loss at l* = 15), three runs of STEPS steps:
#   1 GPU,  batch 1            the per-GPU baseline for the scaling efficiency;
#   1 GPU,  batch 2            the single-GPU run with the global batch of the next one;
#   2 GPUs, batch 1 per rank   RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT, NCCL,
#                              NCCL_NVLS_ENABLE=0 (multicast off).
# Prints tokens/s (median of the steps after the first two), the scaling efficiency
# (2-GPU tokens/s over twice the 1-GPU batch-1 tokens/s), and the loss and gradient norm per step of
# the 2-GPU run against the 1-GPU batch-2 run (rank 0 logs the global step's loss).
# Usage: bench/training/run_h200_dp.sh [STEPS] (default 12). Logs in $OUT (default /tmp/out).
# THREADS=N passes --threads N (CPU intra-op threads per process; default all cores).
set -uo pipefail
OUT=${OUT:-/tmp/out}
B=${BUILD_DIR:-/tmp/b}
STEPS=${1:-12}
mkdir -p "$OUT"
ninja -C "$B" -j"$(nproc)" blockrank blockrank_torch_cli >"$OUT/dp_build.log" 2>&1 \
  || { grep -E "error|FAILED" -A3 "$OUT/dp_build.log" | head -60; exit 1; }
W=$(mktemp -d /tmp/blockrank-dp.XXXX)
# The random model's shape (Qwen2.5-0.5B), shared by run_h200_train.sh and run_h200_dp.sh.
cp "$(dirname "$0")/qwen25_05b_shape.json" "$W/config.json"
config() {  # name batch
  cat >"$W/$1.json" <<JSON
{"model_config": "config.json", "output_dir": "$1", "device": "cuda", "dtype": "bfloat16",
 "synthetic_train_examples": 64, "num_documents": 30, "synthetic_doc_tokens": 160,
 "synthetic_min_doc_tokens": 160, "synthetic_instruction_tokens": 70, "max_block_length": 160,
 "aux_layer": 15, "batch_size": $2, "grad_accum": 1, "max_steps": $STEPS, "lr": 1e-5,
 "warmup_steps": 0, "log_interval": 1, "eval_interval": 0, "save_interval": 0,
 "save_final": false, "seed": 7}
JSON
}
config one_b1 1
config one_b2 2
config two_b1 1
cd "$W" || exit 1
thr=${THREADS:+--threads $THREADS}
CUDA_VISIBLE_DEVICES=0 "$B/plugin/cli/blockrank" train --config one_b1.json $thr >"$OUT/dp_one_b1.log" 2>&1 \
  || { tail -20 "$OUT/dp_one_b1.log"; exit 1; }
CUDA_VISIBLE_DEVICES=0 "$B/plugin/cli/blockrank" train --config one_b2.json $thr >"$OUT/dp_one_b2.log" 2>&1 \
  || { tail -20 "$OUT/dp_one_b2.log"; exit 1; }
port=$((29000 + RANDOM % 1000))
for r in 0 1; do
  RANK=$r WORLD_SIZE=2 LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$port NCCL_NVLS_ENABLE=0 \
    "$B/plugin/cli/blockrank" train --config two_b1.json $thr >"$OUT/dp_two_rank$r.log" 2>&1 &
done
fail=0
for j in $(jobs -p); do wait "$j" || fail=1; done
[ $fail = 0 ] || { tail -20 "$OUT"/dp_two_rank*.log; exit 1; }
cp one_b1/log.jsonl "$OUT/dp_one_b1.jsonl"; cp one_b2/log.jsonl "$OUT/dp_one_b2.jsonl"
cp two_b1/log.jsonl "$OUT/dp_two_b1.jsonl"
python3 - one_b1/log.jsonl one_b2/log.jsonl two_b1/log.jsonl <<'PY' | tee "$OUT/dp_summary.txt"
import json, statistics, sys
runs = [[json.loads(l) for l in open(p) if '"tokens_per_s"' in l] for p in sys.argv[1:]]
tps = [statistics.median(r["tokens_per_s"] for r in rows[2:]) for rows in runs]
names = ["1 GPU, batch 1", "1 GPU, batch 2", "2 GPUs, batch 1 per GPU"]
print("| run | steps | tokens/s (median of steps 3+) | peak allocated GiB |")
print("| --- | --- | --- | --- |")
for n, rows, t in zip(names, runs, tps):
    print(f"| {n} | {len(rows)} | {t:.0f} | {max(r['peak_memory_bytes'] for r in rows) / 2**30:.2f} |")
print(f"scaling efficiency, 2 GPUs vs 1 (batch 1 per GPU): {tps[2] / (2 * tps[0]):.3f}"
      f" ({tps[2] / tps[0]:.2f}x the tokens/s)")
print(f"2 GPUs vs 1 GPU with the same global batch of 2: {tps[2] / tps[1]:.2f}x the tokens/s")
print("| step | loss, 1 GPU batch 2 | loss, 2 GPUs | rel. diff | grad norm, 1 GPU | grad norm, 2 GPUs |")
print("| --- | --- | --- | --- | --- | --- |")
worst = 0.0
for a, b in zip(runs[1], runs[2]):
    d = abs(a["loss"] - b["loss"]) / max(abs(a["loss"]), 1e-12)
    worst = max(worst, d)
    print(f"| {a['step']} | {a['loss']:.6f} | {b['loss']:.6f} | {d:.2e} | {a['grad_norm']:.4f} | {b['grad_norm']:.4f} |")
print(f"largest relative loss difference: {worst:.2e}; loss moved {runs[1][0]['loss']:.4f} -> {runs[1][-1]['loss']:.4f}")
PY
cd / && rm -rf "$W"
