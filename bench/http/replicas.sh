#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Serving throughput with 1 vs 2 model replicas (issue #11) under concurrent reranked searches:
# `blockrank serve` once per replica setting on the same index and model, wrk POST /v1/search with
# rerank on, requests/s and p50/p99 for each. Prints one table row per setting.
# Usage: bench/http/replicas.sh [BLOCKRANK_BIN] [DURATION_S]
# Env:
#   DEVICES1 / DEVICES2  the --devices lists (default "cpu" and "cpu,cpu"; GPUs: "cuda:0" and
#                        "cuda:0,cuda:1")
#   MODEL_DIR            model to serve (default: a tiny random one from make_tiny_model.py, with
#                        HIDDEN/LAYERS, default 64/2 as in the load test of docs/BENCHMARKS.md)
#   CONNECTIONS (16), CANDIDATES (20), MAX_BATCH (4), MODEL_THREADS (1: one core per CPU replica)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$root/build/plugin/cli/blockrank}
dur=${2:-10}
work=$(mktemp -d /tmp/blockrank-replicas-XXXXXX)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
model=${MODEL_DIR:-}
if [ -z "$model" ]; then
  model=$work/model
  python3 "$root/bench/http/make_tiny_model.py" "$model" "$root/.cache/tokenizers/llama2/tokenizer.json" \
    "${HIDDEN:-64}" "${LAYERS:-2}" >/dev/null
fi
# ArguAna when the shared data is there (search.lua's queries find 20 candidates in it, so every
# request reranks), else the sample corpus (many queries find fewer or none).
data=${BLOCKRANK_SHARED_DATA:-$root/../shared/data}
if [ -f "$data/arguana/corpus.jsonl.gz" ]; then corpus="$data/arguana/corpus.jsonl.gz"; else corpus="$root/examples/sample-corpus/corpus.jsonl"; fi
"$bin" index -q --db "$work/db" "$corpus" >/dev/null 2>&1
conns=${CONNECTIONS:-16}
echo "corpus=$corpus model=$model candidates=${CANDIDATES:-20} connections=$conns max_batch=${MAX_BATCH:-4}" \
     "model_threads=${MODEL_THREADS:-1} duration=${dur}s cores=$(nproc)"
echo "| devices | replicas | requests/s | p50 ms | p99 ms | requests | errors | non-2xx | batches per replica |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for devices in "${DEVICES1:-cpu}" "${DEVICES2:-cpu,cpu}"; do
  port=$((20000 + RANDOM % 20000))
  "$bin" serve --db "$work/db" --port "$port" --io-threads 2 --model "$model" \
    --devices "$devices" --model-threads "${MODEL_THREADS:-1}" --max-batch "${MAX_BATCH:-4}" \
    --queue 256 >"$work/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done
  # Warm-up (first-call allocations), then the measured run.
  RERANK=1 wrk -t2 -c"$conns" -d2s --timeout 60s -s "$root/bench/http/search.lua" \
    "http://127.0.0.1:$port" >/dev/null 2>&1 || true
  out=$(RERANK=1 CANDIDATES=${CANDIDATES:-20} wrk -t2 -c"$conns" -d"${dur}s" --timeout 60s --latency \
    -s "$root/bench/http/search.lua" "http://127.0.0.1:$port" 2>&1 | grep RESULT)
  eval "$(echo "$out" | sed 's/RESULT //')"
  replicas=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^blockrank_model_replicas / {print $2}')
  batches=$(curl -s "http://127.0.0.1:$port/metrics" |
            awk '/^blockrank_rerank_batches_total\{/ {printf "%s%s", sep, $2; sep=" / "}')
  echo "| $devices | $replicas | $rps | $p50_ms | $p99_ms | $requests | $errors | $non2xx | $batches |"
  kill -TERM $pid; wait $pid || true
  pid=
done
