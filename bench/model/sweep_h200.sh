#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Several small-ranker training runs side by side on one GPU (issue #10, docs/MODEL.md): the 11M model
# leaves the H200 mostly idle, so four runs at once cost about what one does. Data: the random-negative
# variant of the ArguAna training queries (scripts/model/make_queries.py + random_negatives.py; no
# index, no mining). Each run is `scripts/model/train_default_model.sh` with its own extra fields.
# Usage: bench/model/sweep_h200.sh BLOCKRANK_BIN WORK_DIR LOG_DIR NAME=JSON [NAME=JSON ...]
#   A run's JSON may carry "_pretrain_steps" (PRETRAIN_STEPS for that run) and "_steps" (STEPS).
#   env: STEPS (default steps, 2000), RANDOM_NEGATIVES (15), DEADLINE (seconds, 500: runs still
#        going are stopped so the logs come back inside one device call).
set -uo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=$1 work=$2 logs=$3
shift 3
data=${BLOCKRANK_SHARED_DATA:-$here/../shared/data}/arguana
mkdir -p "$work/data" "$logs"
d=$work/data
if [ ! -f "$d/rand_train.jsonl.gz" ]; then
  python3 "$here/scripts/model/make_queries.py" generated "$data/generated-queries.train.jsonl.gz" "$d/gq"
  python3 "$here/scripts/model/make_queries.py" sentences "$data/corpus.jsonl.gz" "$d/ss" --per-doc 2
  for p in gq ss; do
    for s in train val; do
      python3 "$here/scripts/model/random_negatives.py" "$d/$p.$s" "$data/corpus.jsonl.gz" \
        "$d/r_$p.$s.jsonl.gz" --random "${RANDOM_NEGATIVES:-15}" &
    done
  done
  wait
  cat "$d/r_gq.train.jsonl.gz" "$d/r_ss.train.jsonl.gz" > "$d/rand_train.jsonl.gz"
  cat "$d/r_gq.val.jsonl.gz" "$d/r_ss.val.jsonl.gz" > "$d/rand_val.jsonl.gz"
fi
for spec in "$@"; do
  name=${spec%%=*} json=${spec#*=}
  read -r pre steps extra < <(python3 - "$json" "$d" <<'PY'
import json, sys
j = json.loads(sys.argv[1])
pre, steps = j.pop("_pretrain_steps", 0), j.pop("_steps", 0)
j.setdefault("train_file", sys.argv[2] + "/rand_train.jsonl.gz")
j.setdefault("eval_file", sys.argv[2] + "/rand_val.jsonl.gz")
j.setdefault("eval_interval", 500)
j.setdefault("max_eval_examples", 400)
print(pre, steps, json.dumps(j, separators=(",", ":")))
PY
)
  [ "$steps" = 0 ] && steps=${STEPS:-2000}
  mkdir -p "$work/$name"
  (PRETRAIN_STEPS=$pre STEPS=$steps timeout "${DEADLINE:-500}" \
     bash "$here/scripts/model/train_default_model.sh" "$bin" "$work/$name" "$extra" \
     > "$logs/$name.log" 2>&1; echo "exit $?" >> "$logs/$name.log") &
done
wait
for spec in "$@"; do
  name=${spec%%=*}
  echo "== $name"; grep -E "eval|exit|trained" "$logs/$name.log" | tail -8
done
