#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Retrains the default ranker in ranker/models/default (docs/MODEL.md) with the recipe it was trained
# with: the neutral-template lexical prior (training/lexical_init.h), refined on BM25-mined ArguAna
# data (CC BY-SA 4.0, scripts/model/build_training_data.sh) with the aux InfoNCE loss only, every
# matrix pulled back towards the prior (L2-SP, "weight_decay_to_init", strength 100), 1,200 steps x
# 16 prompts of 16 candidates at lr 1e-4. On the H200: ~3 min to mine the data, ~2.5 min to train.
# Usage: scripts/model/train_shipped_model.sh BLOCKRANK_BIN WORK_DIR
#   env: DEVICE (cuda), THREADS (mining threads, 14)
# Output: WORK_DIR/run/run/checkpoint-001200 (the model directory; copy its config.json,
# blockrank.json, model*.safetensors* into ranker/models/default, add "fusion" to blockrank.json
# as chosen on ArguAna, and regenerate SHA256SUMS).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=$1
work=$2
mkdir -p "$work"
if [ ! -f "$work/mined/.done" ]; then  # the marker: a killed build leaves half-written files
  THREADS=${THREADS:-14} SS_PER_DOC=2 bash "$here/scripts/model/build_training_data.sh" "$bin" \
    "$work/mined"
  touch "$work/mined/.done"
fi
recipe='{"init":"lexical","lexical_neutral_template":true,"signal_rows":56,"max_block_length":128,
"lm_weight":0,"warmup_steps":50,"save_interval":600,"save_total_limit":2,"eval_interval":300,
"max_eval_examples":400,"weight_decay_to_init":true,"weight_decay":100,"lr":1e-4}'
extra=$(python3 -c 'import json,sys; j=json.loads(sys.argv[1]);
j["train_file"]=sys.argv[2]+"/train.jsonl.gz"; j["eval_file"]=sys.argv[2]+"/val.jsonl.gz"
print(json.dumps(j))' "$recipe" "$work/mined")
STEPS=1200 DEVICE=${DEVICE:-cuda} bash "$here/scripts/model/train_default_model.sh" "$bin" \
  "$work/run" "$extra"
