#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Issue #10 on one GPU in one device call: BM25-mined ArguAna data (scripts/model/build_training_data.sh),
# a step-0 baseline "base" (the JSON of the first spec with lr ~0 and 1 step), then every NAME=JSON run
# side by side on that data, and the evaluation (bench/model/eval_model.sh: the five collections plus
# a subset of ArguAna's test queries for choosing the fusion weight) of the baseline and of every
# checkpoint the runs saved.
# Usage: bench/model/mined_sweep_h200.sh BLOCKRANK_BIN WORK_DIR LOG_DIR COMMON_JSON NAME=JSON [NAME=JSON ...]
#   COMMON_JSON: train.json fields every run (and the baseline) gets; a run's JSON adds to them.
#   env: STEPS (600), DEADLINE (seconds the runs may take, 200), ALPHAS ("0.7 0.8 0.9"),
#        ARGUANA_QUERIES (the ArguAna queries to tune on; default all), THREADS (mining, 14).
# Resumable: a second call with the same arguments (the GPU machine keeps /tmp while warm) skips the
# mined data, the baseline, the runs and every evaluation already finished, so a sweep whose
# evaluations do not fit one device call's limit finishes in the next.
set -uo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=$1 work=$2 logs=$3 common=$4
shift 4
mkdir -p "$work" "$logs"
t0=$SECONDS
if [ ! -f "$work/mined/.done" ]; then  # the marker: a killed build leaves half-written files
  THREADS=${THREADS:-14} SS_PER_DOC=2 bash "$here/scripts/model/build_training_data.sh" "$bin" \
    "$work/mined" > "$logs/mined.log" 2>&1 || { tail -20 "$logs/mined.log"; exit 1; }
  touch "$work/mined/.done"
fi
echo "mined data: $((SECONDS - t0)) s"
merge() {  # common JSON + run JSON (+ mined data files) -> one JSON
  python3 -c 'import json,sys; j=json.loads(sys.argv[1]); j.update(json.loads(sys.argv[2]));
j.setdefault("train_file", sys.argv[3] + "/train.jsonl.gz"); j.setdefault("eval_file", sys.argv[3] + "/val.jsonl.gz")
print(json.dumps(j, separators=(",", ":")))' "$common" "$1" "$work/mined"
}
ls -d "$work"/base/run/checkpoint-* > /dev/null 2>&1 ||
  STEPS=1 DEADLINE=120 bash "$here/bench/model/sweep_h200.sh" "$bin" "$work" "$logs" \
    "base=$(merge '{"lr":1e-12}')" > "$logs/base.txt" 2>&1
specs=()
for spec in "$@"; do  # runs that finished (a log ending in "exit 0") are not repeated
  tail -1 "$logs/${spec%%=*}.log" 2>/dev/null | grep -qx "exit 0" || specs+=("${spec%%=*}=$(merge "${spec#*=}")")
done
[ ${#specs[@]} -eq 0 ] || (STEPS=${STEPS:-600} DEADLINE=${DEADLINE:-200} bash "$here/bench/model/sweep_h200.sh" "$bin" "$work" \
   "$logs" "${specs[@]}" > "$logs/sweep.txt" 2>&1) &
sweep=$!
evaluate() {  # name, index work dir, checkpoint (skipped when its table is complete)
  [ "$(grep -cE '^\| [a-z0-9]+ \| 0\.' "$logs/eval-$1.md" 2>/dev/null)" = 6 ] && return 0
  WORK=$2 BLOCKRANK_BIN=$bin ALPHAS=${ALPHAS:-0.7 0.8 0.9} ONLY="arguana nfcorpus dl19 cranfield cacm vaswani" \
    bash "$here/bench/model/eval_model.sh" "$3" --device cuda --max-block-length 128 > "$logs/eval-$1.md" 2>&1
}
evaluate base "$work/ev-base" "$(ls -d "$work"/base/run/checkpoint-* | tail -1)"
echo "baseline evaluated: $((SECONDS - t0)) s"
wait "$sweep"
echo "runs done: $((SECONDS - t0)) s"
pids=()
for spec in "$@"; do
  name=${spec%%=*}
  for ck in "$work/$name"/run/checkpoint-*; do
    [ -d "$ck" ] || continue
    s=$(basename "$ck")
    [ -d "$work/ev-$name-$s" ] || cp -r "$work/ev-base" "$work/ev-$name-$s"  # indexes built once
    evaluate "$name-$s" "$work/ev-$name-$s" "$ck" &
    pids+=($!)
  done
done
wait "${pids[@]}"
echo "evaluated: $((SECONDS - t0)) s"
cat "$logs/sweep.txt"
for f in "$logs"/eval-*.md; do echo "== $f"; grep -E "^\|" "$f"; done
