#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the training and validation JSONL for the small shipped BlockRank model (issue #10) from data
# we may ship a model of, all under CC BY-SA 4.0 (BEIR ArguAna, texts from idebate.org):
#  1. ArguAna's generated queries (BeIR/arguana-generated-queries): query -> the passage it was
#     generated from;
#  2. self-supervised pairs: a sentence of an ArguAna passage as the query, the passage as positive;
# each with BM25 hard negatives mined from the ArguAna corpus by `blockrank mine` (top --k 30).
# Validation holds out about 1/50 of the passages (scripts/model/make_queries.py), never positives of
# training. No evaluation collection (NFCorpus, MS MARCO/DL19, Cranfield, CACM, Vaswani) is read, and
# nothing is copied into the repository: the data comes from ../shared/data at run time.
# Usage: scripts/model/build_training_data.sh [BLOCKRANK_BIN] [OUT_DIR]
#   env: K (candidates mined per query, 30), THREADS (search threads, 2), GQ_LIMIT / SS_PER_DOC
#   (generated queries used, 0 = all 25,844; sentences per passage, 1).
# Output: OUT_DIR/train.jsonl.gz, OUT_DIR/val.jsonl.gz (+ the per-source parts and the index).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$here/build/plugin/cli/blockrank}
out=${2:-$here/.cache/training-data}
data=${BLOCKRANK_SHARED_DATA:-$here/../shared/data}
k=${K:-30}
threads=${THREADS:-2}
[ -f "$data/arguana/corpus.jsonl.gz" ] || { echo "needs ../shared/data/arguana (set BLOCKRANK_SHARED_DATA)" >&2; exit 1; }
[ -x "$bin" ] || { echo "no blockrank binary at $bin" >&2; exit 1; }
mkdir -p "$out"
start=$(date +%s)

echo "indexing ArguAna (8,674 passages) ..." >&2
rm -rf "$out/arguana-db"
"$bin" index -q --db "$out/arguana-db" "$data/arguana/corpus.jsonl.gz" >&2

python3 "$here/scripts/model/make_queries.py" generated "$data/arguana/generated-queries.train.jsonl.gz" \
  "$out/gq" --limit "${GQ_LIMIT:-0}"
python3 "$here/scripts/model/make_queries.py" sentences "$data/arguana/corpus.jsonl.gz" "$out/ss" \
  --per-doc "${SS_PER_DOC:-1}"

# BM25 as bench/bm25/eval_collections.sh's default setting (k1=1.2, b=0.75, k3=1000).
for part in gq ss; do
  for split in train val; do
    "$bin" mine --db "$out/arguana-db" --queries "$out/$part.$split.tsv" --qrels "$out/$part.$split.qrels" \
      --k "$k" --threads "$threads" --out "$out/$part.$split.jsonl.gz"
  done
done
# Concatenated gzip members are one valid gzip stream.
cat "$out/gq.train.jsonl.gz" "$out/ss.train.jsonl.gz" > "$out/train.jsonl.gz"
cat "$out/gq.val.jsonl.gz" "$out/ss.val.jsonl.gz" > "$out/val.jsonl.gz"
for f in train val; do
  echo "$f: $(zcat "$out/$f.jsonl.gz" | wc -l) examples, $(du -h "$out/$f.jsonl.gz" | cut -f1) -> $out/$f.jsonl.gz" >&2
done
echo "done in $(( $(date +%s) - start )) s" >&2
