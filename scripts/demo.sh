#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The main job: installs what is missing, builds, indexes the sample corpus and searches it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
bash scripts/build.sh
bin="${BUILD_DIR:-$root/build}/plugin/cli/blockrank"
db=${DEMO_DB:-$root/.cache/demo-index}
rm -rf "$db"
"$bin" index --db "$db" examples/sample-corpus/corpus.jsonl
echo
echo "$ blockrank search --db $db -k 3 'how do plants make sugar from light'"
"$bin" search --db "$db" -k 3 "how do plants make sugar from light"
echo
echo "$ blockrank eval --db $db --queries examples/sample-corpus/queries.tsv --qrels examples/sample-corpus/qrels.txt"
"$bin" eval --db "$db" --queries examples/sample-corpus/queries.tsv \
  --qrels examples/sample-corpus/qrels.txt
