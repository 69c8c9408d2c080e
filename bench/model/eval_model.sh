#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# BM25 vs BlockRank-reranked nDCG@10 of a model on the evaluation collections in ../shared/data:
# NFCorpus-orig test, TREC DL19 (the provided Pyserini BM25 top-100), Cranfield, CACM and Vaswani.
# Each collection's BM25 top-100 is reranked once; the columns are BM25, the pure model order
# (rerank) and BM25/model interpolations of min-max scores (blockrank/fusion.h; ALPHA = BM25 weight).
# Indexing and BM25 settings are bench/bm25/eval_collections.sh's (k1=1.2, b=0.75, k3=1000, and the
# same per-collection query/qrels flags). None of these collections is training data (issue #10).
# Usage: bench/model/eval_model.sh MODEL_DIR [extra flags for eval/rerank, e.g. --device cuda]
#   env: BLOCKRANK_BIN (default build/plugin/cli/blockrank), WORK (indexes; reused when present),
#        DEPTH (reranked per query, 100), ALPHAS ("0.3 0.5"), ONLY (e.g. "cacm vaswani";
#        "arguana" adds the fusion-tuning collection), ARGUANA_QUERIES (a subset of its queries,
#        e.g. the 150 used to choose ALPHA; default all 1,406), PER_QUERY=1 (per-query metrics in
#        WORK/<collection>.json for bench/model/significance.py; not for DL19, which `rerank` scores).
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,13p' "$0"; exit 2; }
model=$1; shift
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=${BLOCKRANK_BIN:-$here/build/plugin/cli/blockrank}
work=${WORK:-$here/.cache/eval-model}
data=${BLOCKRANK_SHARED_DATA:-$here/../shared/data}
depth=${DEPTH:-100}
alphas=${ALPHAS:-0.3 0.5}
only=${ONLY:-nfcorpus dl19 cranfield cacm vaswani}
[ -d "$data" ] || { echo "needs ../shared/data (set BLOCKRANK_SHARED_DATA)" >&2; exit 1; }
[ -x "$bin" ] || { echo "no blockrank binary at $bin (set BLOCKRANK_BIN)" >&2; exit 1; }
[ -d "$model" ] || { echo "no model directory $model" >&2; exit 1; }
mkdir -p "$work"
fusions=(--fusion rerank)
for a in $alphas; do fusions+=(--fusion "interpolate:$a"); done
wanted() { [[ " $only " == *" $1 "* ]]; }

index() {  # name, index args... (kept when already built)
  local name=$1; shift
  [ -f "$work/$name/.done" ] && return 0
  rm -rf "$work/$name"
  "$bin" index -q --db "$work/$name" "$@" > "$work/$name.index.log" 2>&1 ||
    { cat "$work/$name.index.log" >&2; exit 1; }
  touch "$work/$name/.done"
}
header() {
  local h="| collection | BM25 | rerank" sep="| --- | --- | ---"
  for a in $alphas; do h+=" | interp. $a"; sep+=" | ---"; done
  echo "$h | queries | seconds |"; echo "$sep | --- | --- |"
}
evalset() {  # name, eval args...
  local name=$1; shift
  local t0=$SECONDS
  local pq=()
  [ "${PER_QUERY:-0}" = 1 ] && pq=(--per-query)
  "$bin" eval --json --db "$work/$name" --k1 1.2 --b 0.75 --model "$model" --rerank-depth "$depth" \
    "${fusions[@]}" "${pq[@]}" "$@" > "$work/$name.json"
  python3 - "$work/$name.json" "$name" "$((SECONDS - t0))" "$alphas" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
cols = [j["ndcg@10"], j["reranked"]["rerank"]["ndcg@10"]]
cols += [j["reranked"]["interpolate:" + a]["ndcg@10"] for a in sys.argv[4].split()]
print("| %s | %s | %d | %s |" % (sys.argv[2], " | ".join("%.4f" % c for c in cols), j["queries"], sys.argv[3]))
PY
}

nfq="$work/nfcorpus-test-queries.tsv"
if wanted nfcorpus; then
  zcat "$data/beir-topics-qrels/topics.beir-v1.0.0-nfcorpus.test.tsv.gz" > "$nfq"
fi
wanted nfcorpus && index nfcorpus --format tsv "$data/nfcorpus-original/test.docs"
wanted cranfield && index cranfield --format smart "$data/cran/cran.all.1400"
wanted cacm && index cacm --format jsonl --id-field id --text-fields contents "$data/cacm/cacm.json"
wanted vaswani && index vaswani --format trec "$data/vaswani/doc-text.trec"
# ArguAna (not in the default list) is where the fusion weight is chosen: it is none of the five
# evaluation collections, and its test queries are not training data (only its passages are).
wanted arguana && index arguana "$data/arguana/corpus.jsonl.gz"

start=$SECONDS
echo "model $model, BM25 top $depth reranked, extra flags: ${*:-none}"
echo
header
wanted nfcorpus && evalset nfcorpus --queries "$nfq" --qrels "$data/nfcorpus-original/test.2-1-0.qrel" "$@"
if wanted dl19; then
  # The rank_llm file carries Pyserini's BM25 top-100 and scores; `rerank` fuses with those.
  t0=$SECONDS
  "$bin" rerank --model "$model" --input "$data/msmarco-dl19/retrieve_results_dl19.json" \
    --qrels "$data/msmarco-dl19/qrels.dl19-passage.txt" --candidates "$depth" "${fusions[@]}" \
    --output "$work/dl19.reranked.jsonl" "$@" > "$work/dl19.txt"
  python3 - "$work/dl19.txt" "$((SECONDS - t0))" "$alphas" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ndcg(label):
    m = re.search(re.escape(label) + r"\s+nDCG@10 ([0-9.]+).*\((\d+) queries", text)
    if not m:
        sys.exit("dl19: no '%s' line in the rerank output:\n%s" % (label, text))
    return float(m.group(1)), int(m.group(2))
cols = [ndcg("input")[0], ndcg("reranked (rerank)")[0]]
cols += [ndcg("reranked (interpolate:%s)" % a)[0] for a in sys.argv[3].split()]
print("| dl19 | %s | %d | %s |" % (" | ".join("%.4f" % c for c in cols), ndcg("input")[1], sys.argv[2]))
PY
fi
wanted cranfield && evalset cranfield --queries "$data/cran/cran.qry" --query-format smart \
  --smart-by-position --qrels "$data/cran/cranqrel" --rel-map '1:4,2:3,3:2,4:1,5:0,-1:0' "$@"
wanted cacm && evalset cacm --queries "$data/cacm/topics.cacm.txt" --qrels "$data/cacm/qrels.cacm.txt" \
  --normalize-ids "$@"
wanted vaswani && evalset vaswani --queries "$data/vaswani/query-text.trec" --qrels "$data/vaswani/qrels" "$@"
wanted arguana && evalset arguana --queries "${ARGUANA_QUERIES:-$data/arguana/queries.jsonl.gz}" \
  --qrels "$data/arguana/qrels/test.tsv" --remove-query "$@"
echo
echo "total $((SECONDS - start)) s"
