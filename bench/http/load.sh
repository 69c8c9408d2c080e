#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Load test of `blockrank serve` with wrk on loopback: requests/s and p50/p99 of POST /v1/search at
# several concurrency levels, plus the server's RSS before and after (memory steady?).
# Usage: bench/http/load.sh [BLOCKRANK_BIN] [DURATION_S] [-- extra serve flags, e.g. --model DIR]
# Env: RERANK=1 to ask for reranking, CANDIDATES (default 20), CONCURRENCY (default "1 8 32 128").
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$root/build/plugin/cli/blockrank}
dur=${2:-10}
shift $(( $# > 2 ? 2 : $# )) || true
[ "${1:-}" = "--" ] && shift
work=$(mktemp -d /tmp/blockrank-load-XXXXXX)
data=${BLOCKRANK_SHARED_DATA:-$root/../shared/data}
if [ -f "$data/arguana/corpus.jsonl.gz" ]; then corpus="$data/arguana/corpus.jsonl.gz"; else corpus="$root/examples/sample-corpus/corpus.jsonl"; fi
"$bin" index -q --db "$work/db" "$corpus" >/dev/null 2>&1
port=$((20000 + RANDOM % 20000))
"$bin" serve --db "$work/db" --port "$port" --io-threads 2 "$@" >"$work/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2}' /proc/$pid/status; }
echo "corpus: $corpus ($(curl -s http://127.0.0.1:$port/ready))"
echo "rerank=${RERANK:-0} candidates=${CANDIDATES:-20} duration=${dur}s rss_before_kb=$(rss)"
echo "| connections | requests/s | p50 ms | p99 ms | requests | socket errors | non-2xx | RSS after (MB) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for c in ${CONCURRENCY:-1 8 32 128}; do
  t=$(( c < 2 ? 1 : 2 ))
  out=$(wrk -t"$t" -c"$c" -d"${dur}s" --timeout 60s --latency -s "$root/bench/http/search.lua" "http://127.0.0.1:$port" 2>&1 | grep RESULT)
  eval "$(echo "$out" | sed 's/RESULT //')"
  echo "| $c | $rps | $p50_ms | $p99_ms | $requests | $errors | $non2xx | $(( $(rss) / 1024 )) |"
done
kill -TERM $pid; wait $pid || true
tail -n 2 "$work/serve.log"
