#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The search page at GET / in headless Chromium (Debian's package): the page's own JavaScript calls
# /v1/search and renders result rows with the BM25 rank beside the final rank.
# Usage: search_page_test.sh BLOCKRANK_BIN SOURCE_DIR WORK_DIR [SCREENSHOT.png]
set -euo pipefail
bin=$1; src=$2; work=$3; shot=${4:-}
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then echo "SKIP: chromium not installed (scripts/setup.sh installs it)"; exit 0; fi
rm -rf "$work"; mkdir -p "$work"
"$bin" index -q --db "$work/db" "$src/examples/sample-corpus/corpus.jsonl" >/dev/null 2>&1
port=$((20000 + RANDOM % 20000))
"$bin" serve --db "$work/db" --port "$port" >"$work/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
       --disable-background-networking --disable-component-update --disable-sync
       --user-data-dir="$work/profile" --virtual-time-budget=10000 --window-size=1200,900)
url="http://127.0.0.1:$port/?q=eclipse%20of%20the%20moon%20and%20the%20sun"
timeout 120 "$browser" "${flags[@]}" --dump-dom "$url" >"$work/dom.html" 2>"$work/chromium.log" || true
if [ -n "$shot" ]; then
  timeout 120 "$browser" "${flags[@]}" --screenshot="$shot" "$url" >/dev/null 2>&1 || true
fi
fail=0
check() { grep -q -- "$1" "$work/dom.html" || { echo "FAIL: page lacks: $1"; fail=1; }; }
check 'Solar and lunar eclipses'
check 'BM25 only'
# Rendered rows (the script's own source holds no literal rank numbers, so these come from the DOM).
check '<td class="rank">1</td>'
check '<td class="rank">2</td>'
check '<td class="rank muted">1</td>'
if [ $fail -ne 0 ]; then head -c 3000 "$work/dom.html"; tail -n 20 "$work/chromium.log"; exit 1; fi
echo "search page OK"
