#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# On the GPU machine, from the repository root, after `bash bench/gpu/run_h200.sh build` (same env:
# `eval "$(bash .gpu-deps/unpack-debs.sh .gpu-deps)"` first): builds the `blockrank` CLI with its
# LibTorch module, runs `blockrank train` for a few steps on a random Qwen2.5-0.5B-shaped model
# (bf16 compute, fp32 masters, AdamW, aux loss at l* = 15) on the synthetic task shaped like the
# paper's training prompts (30 documents x 160 tokens, T = 4883 real tokens, 5120 padded slots),
# then the HF transformers + PyTorch peer on the same shape and batch in the same run
# (bench/training/hf_train_step.py: dense 4-D BlockRank mask, and plain causal as a lower bound).
# Prints tokens/s (median over the timed steps) and peak allocated CUDA memory for each.
# Logs go to $OUT (default /tmp/out). Usage: bench/training/run_h200_train.sh [steps] (default 8).
set -uo pipefail
OUT=${OUT:-/tmp/out}
B=${BUILD_DIR:-/tmp/b}
STEPS=${1:-8}
mkdir -p "$OUT"
ninja -C "$B" -j16 blockrank blockrank_torch_cli >"$OUT/train_build.log" 2>&1 \
  || { grep -E "error|FAILED" -A3 "$OUT/train_build.log" | head -60; exit 1; }
W=$(mktemp -d /tmp/blockrank-train-bench.XXXX)
# The random model's shape (Qwen2.5-0.5B), shared by run_h200_train.sh and run_h200_dp.sh.
cp "$(dirname "$0")/qwen25_05b_shape.json" "$W/config.json"
cat >"$W/train.json" <<JSON
{"model_config": "config.json", "output_dir": "out", "device": "cuda", "dtype": "bfloat16",
 "synthetic_train_examples": 64, "num_documents": 30, "synthetic_doc_tokens": 160,
 "synthetic_min_doc_tokens": 160, "synthetic_instruction_tokens": 70, "max_block_length": 160,
 "aux_layer": 15, "batch_size": 1, "grad_accum": 1, "max_steps": $STEPS, "lr": 1e-5,
 "warmup_steps": 0, "log_interval": 1, "eval_interval": 0, "save_interval": 0,
 "save_final": false}
JSON
echo "== blockrank train (ours) =="
"$B/plugin/cli/blockrank" train --config "$W/train.json" 2>&1 | tee "$OUT/train_ours.log"
cp "$W/out/log.jsonl" "$OUT/train_ours_log.jsonl"
python3 - "$W/out/log.jsonl" <<'PY' | tee "$OUT/train_ours_summary.txt"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"tokens_per_s"' in l]
timed = rows[2:] if len(rows) > 3 else rows  # the first steps warm up the allocator and kernels
tps = statistics.median(r["tokens_per_s"] for r in timed)
peak = max(r["peak_memory_bytes"] for r in rows)
print(f"| blockrank train (bf16, fp32 masters) | 4883 real / 5120 padded | {4883 / tps * 1e3:.1f} ms"
      f" | {tps:.0f} tok/s | {peak / 2**30:.2f} GiB peak allocated |")
PY
echo "== HF transformers peer =="
PYTHONUNBUFFERED=1 python3 bench/training/hf_train_step.py --attn blockrank 2>&1 \
  | tee "$OUT/train_peer_blockrank.log"
PYTHONUNBUFFERED=1 python3 bench/training/hf_train_step.py --attn causal 2>&1 \
  | tee "$OUT/train_peer_causal.log"
rm -rf "$W"
