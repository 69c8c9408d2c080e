#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The lexical-prior recipe for the small ranker on one GPU, in one device call (issue #10,
# docs/MODEL.md): phase 1 on random negatives from the lexical initialisation
# (training/lexical_init.h), phase 2 on BM25-mined negatives from each phase-1 checkpoint, then the
# five-collection evaluation of every model (bench/model/eval_model.sh). Runs of a phase go side by
# side (the 11M model leaves the GPU mostly idle).
# Usage: bench/model/lexical_h200.sh BLOCKRANK_BIN WORK_DIR LOG_DIR NAME=JSON [NAME=JSON ...]
#   Each NAME=JSON is a phase-1 run (extra train.json fields over scripts/model/train_default_model.sh;
#   "_lr2" sets phase 2's lr). env: STEPS1 (1000), STEPS2 (1000), DEADLINE1/DEADLINE2 (seconds a
#   phase may take, 200), EVAL_BLOCK (128), ALPHAS / ONLY (bench/model/eval_model.sh's), GQ_LIMIT /
#   SS_PER_DOC (scripts/model/build_training_data.sh's, for the mined data).
set -uo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=$1 work=$2 logs=$3
shift 3
mkdir -p "$work" "$logs"
t0=$SECONDS
# BM25-mined data for phase 2 in the background (index + mine, ~150 s on 14 threads).
(THREADS=12 SS_PER_DOC=${SS_PER_DOC:-2} GQ_LIMIT=${GQ_LIMIT:-0} bash "$here/scripts/model/build_training_data.sh" "$bin" "$work/mined" \
   > "$logs/mined.log" 2>&1; echo "exit $?" >> "$logs/mined.log") &
mined=$!
# Phase 1 (sweep_h200.sh builds the random-negative data and waits for its runs).
specs1=()
for spec in "$@"; do
  name=${spec%%=*} json=${spec#*=}
  specs1+=("$name=$(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); j.pop("_lr2",0); print(json.dumps(j))' "$json")")
done
STEPS=${STEPS1:-1000} DEADLINE=${DEADLINE1:-200} \
  bash "$here/bench/model/sweep_h200.sh" "$bin" "$work" "$logs" "${specs1[@]}" > "$logs/phase1.txt" 2>&1
echo "phase 1 done at $((SECONDS - t0)) s"
wait "$mined"
echo "mined data at $((SECONDS - t0)) s: $(tail -1 "$logs/mined.log")"
evaluate() {  # name, checkpoint
  WORK=$work/eval-$1 BLOCKRANK_BIN=$bin ALPHAS=${ALPHAS:-0.5 0.8 0.9} ONLY=${ONLY:-nfcorpus dl19 cranfield cacm vaswani} \
    bash "$here/bench/model/eval_model.sh" "$2" --device cuda --max-block-length "${EVAL_BLOCK:-128}" \
    > "$logs/eval-$1.md" 2>&1
}
pids=()
for spec in "$@"; do
  name=${spec%%=*} json=${spec#*=}
  ck=$(ls -d "$work/$name"/run/checkpoint-* 2>/dev/null | tail -1)
  [ -n "$ck" ] || { echo "$name: no phase-1 checkpoint"; continue; }
  evaluate "$name" "$ck" &
  pids+=($!)
  lr2=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("_lr2", 3e-4))' "$json")
  extra=$(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); j.pop("_lr2",0); j.pop("_steps",0); j.pop("init",0); j.update({"model_config": None, "model_dir": sys.argv[2], "lr": float(sys.argv[3]), "eval_interval": 500, "max_eval_examples": 400}); print(json.dumps(j))' "$json" "$ck" "$lr2")
  mkdir -p "$work/$name-p2"
  (DATA=$work/mined STEPS=${STEPS2:-1000} timeout "${DEADLINE2:-200}" \
     bash "$here/scripts/model/train_default_model.sh" "$bin" "$work/$name-p2" "$extra" \
     > "$logs/$name-p2.log" 2>&1; echo "exit $?" >> "$logs/$name-p2.log") &
  pids+=($!)
done
wait "${pids[@]}"
echo "phase 2 done at $((SECONDS - t0)) s"
pids=()
for spec in "$@"; do
  name=${spec%%=*}
  ck=$(ls -d "$work/$name-p2"/run/checkpoint-* 2>/dev/null | tail -1)
  [ -n "$ck" ] && { evaluate "$name-p2" "$ck" & pids+=($!); }
done
wait "${pids[@]}"
echo "evaluated at $((SECONDS - t0)) s"
cat "$logs/phase1.txt"
for spec in "$@"; do
  name=${spec%%=*}
  echo "== $name-p2"; grep -E "eval|exit|trained" "$logs/$name-p2.log" | tail -5
done
for f in "$logs"/eval-*.md; do echo "== $f"; grep -E "^\|" "$f"; done
