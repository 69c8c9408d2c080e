#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Indexes the test collections in ../shared/data and reports BM25 effectiveness for two parameter
# settings (Anserini's BEIR k1=0.9/b=0.4 and the classic k1=1.2/b=0.75), plus indexing throughput.
# Usage: bench/bm25/eval_collections.sh [BLOCKRANK_BIN] [WORK_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$here/build/plugin/cli/blockrank}
work=${2:-$(mktemp -d /tmp/blockrank-bm25-XXXXXX)}
data=${BLOCKRANK_SHARED_DATA:-$here/../shared/data}
[ -d "$data" ] || { echo "needs ../shared/data (set BLOCKRANK_SHARED_DATA)"; exit 0; }
mkdir -p "$work"

index() {  # name, index args...
  local name=$1; shift
  rm -rf "$work/$name"
  "$bin" index -q --db "$work/$name" "$@" 2>&1 | tail -n 1 | sed "s/^/  $name: /"
}
evalset() {  # name, k1, b, eval args...
  local name=$1 k1=$2 b=$3; shift 3
  "$bin" eval --json --db "$work/$name" --k1 "$k1" --b "$b" "$@" |
    python3 -c "import sys,json; j=json.load(sys.stdin); print('| %-14s | %s/%s | %.4f | %.4f | %.4f | %.4f | %d |' % ('$name', '$k1', '$b', j['ndcg@10'], j['mrr@10'], j['recall@100'], j['map'], j['queries']))"
}

# NFCorpus-orig test: the BEIR natural-language test queries (323 ids), graded qrels 2/1.
nfq="$work/nfcorpus-test-queries.tsv"
zcat "$data/beir-topics-qrels/topics.beir-v1.0.0-nfcorpus.test.tsv.gz" > "$nfq"

echo "indexing:"
index arguana "$data/arguana/corpus.jsonl.gz"
index cranfield --format smart "$data/cran/cran.all.1400"
index cacm --format jsonl --id-field id --text-fields contents "$data/cacm/cacm.json"
index vaswani --format trec "$data/vaswani/doc-text.trec"
index nfcorpus --format tsv "$data/nfcorpus-original/test.docs"

echo
echo "| collection | k1/b | nDCG@10 | MRR@10 | R@100 | MAP | queries |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for kb in "0.9 0.4" "1.2 0.75"; do
  set -- $kb
  evalset arguana "$1" "$2" --queries "$data/arguana/queries.jsonl.gz" \
    --qrels "$data/arguana/qrels/test.tsv" --remove-query
  evalset cranfield "$1" "$2" --queries "$data/cran/cran.qry" --query-format smart \
    --smart-by-position --qrels "$data/cran/cranqrel" --rel-map '1:4,2:3,3:2,4:1,5:0,-1:0'
  evalset cacm "$1" "$2" --queries "$data/cacm/topics.cacm.txt" --qrels "$data/cacm/qrels.cacm.txt" \
    --normalize-ids
  evalset vaswani "$1" "$2" --queries "$data/vaswani/query-text.trec" --qrels "$data/vaswani/qrels"
  evalset nfcorpus "$1" "$2" --queries "$nfq" --qrels "$data/nfcorpus-original/test.2-1-0.qrel"
done
