#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Paired significance of a reranked run against BM25, per query, from `blockrank eval --json
--per-query` output (bench/model/eval_model.sh ... --per-query leaves WORK/<collection>.json).

For each file: the mean nDCG@10 difference (fusion - BM25) over the queries both have, a two-sided
paired randomization test (sign flips of the per-query differences; Smucker et al. 2007) and a
paired bootstrap 95% interval of the mean difference; with several files also all their queries
pooled. Queries with no judged document are scored 0 by both and count, as in the mean nDCG the
eval reports.

Usage: bench/model/significance.py FUSION EVAL_JSON [EVAL_JSON ...]
  e.g. bench/model/significance.py interpolate:0.9 .cache/eval-model/{nfcorpus,cacm}.json
"""
import json
import random
import sys


def per_query(block):
    return {q: m["ndcg@10"] for q, m in block["per_query"].items()}


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    fusion = sys.argv[1]
    rng = random.Random(20261129)
    trials = 10000
    print("| collection | queries | BM25 | %s | difference | 95%% bootstrap interval | p (randomization) |" % fusion)
    print("| --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    for path in sys.argv[2:]:
        j = json.load(open(path))
        if "per_query" not in j:
            sys.exit("%s: no per_query block (run eval with --per-query)" % path)
        if fusion not in j.get("reranked", {}):
            sys.exit("%s: no '%s' run; it has: %s" % (path, fusion, ", ".join(j.get("reranked", {}))))
        base = per_query(j)
        run = per_query(j["reranked"][fusion])
        qs = sorted(set(base) & set(run))
        if not qs:
            sys.exit("%s: no query has both a BM25 and a '%s' score" % (path, fusion))
        name = path.rsplit("/", 1)[-1].removesuffix(".json")
        rows.append((name, [base[q] for q in qs], [run[q] for q in qs]))
    if len(rows) > 1:  # every query of every file as one sample (each query weighs the same)
        rows.append(("all %d pooled" % len(rows), sum((r[1] for r in rows), []),
                     sum((r[2] for r in rows), [])))
    for name, b, r in rows:
        d = [y - x for x, y in zip(b, r)]
        n = len(d)
        mean = sum(d) / n
        extreme = 0
        for _ in range(trials):
            s = sum(x if rng.random() < 0.5 else -x for x in d) / n
            extreme += abs(s) >= abs(mean) - 1e-12
        boot = sorted(sum(d[rng.randrange(n)] for _ in range(n)) / n for _ in range(2000))
        print("| %s | %d | %.4f | %.4f | %+.4f | [%+.4f, %+.4f] | %.3f |" % (
            name, n, sum(b) / n, sum(r) / n, mean, boot[49], boot[1949],
            (extreme + 1) / (trials + 1)))

if __name__ == "__main__":
    main()
