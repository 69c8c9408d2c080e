#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Easy-negatives variant of mined training data, for the first phase of a curriculum (issue #10).

  random_negatives.py IN.jsonl.gz CORPUS.jsonl.gz OUT.jsonl.gz [--hard H] [--random R] [--seed S]
  random_negatives.py PREFIX CORPUS.jsonl.gz OUT.jsonl.gz ...   (PREFIX.tsv + PREFIX.qrels)

Reads `blockrank mine` output (BLOCKRANK.md §5.1 lines: query, documents in BM25 order, answer_ids),
or, without mining, the query TSV and qrels of scripts/model/make_queries.py (positives only), and
writes the same examples with every positive, the first H BM25 negatives (default 0) and R
passages drawn uniformly from the corpus (default 29; never a positive). A model from random weights
first learns plain query/document token matching on these, then the BM25-hard negatives of the
original file teach it what BM25 gets wrong (scripts/model/train_default_model.sh). Deterministic."""
import argparse
import gzip
import json
import random
import sys


def examples_from_queries(prefix, by_id):
    """JSONL lines (positives only) from make_queries.py's PREFIX.tsv and PREFIX.qrels."""
    positives = {}
    with open(prefix + ".qrels", encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) < 3:
                sys.exit(f"{prefix}.qrels:{line_no}: expected 'qid docid rel'")
            if int(parts[2]) > 0:
                positives.setdefault(parts[0], []).append(parts[1])
    with open(prefix + ".tsv", encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            qid, _, text = line.rstrip("\n").partition("\t")
            docs = [by_id[d] for d in positives.get(qid, []) if d in by_id]
            if not docs or not text:
                continue
            yield json.dumps({"query": text, "query_id": qid, "documents": docs,
                              "answer_ids": [d["doc_id"] for d in docs]})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("corpus")
    ap.add_argument("output")
    ap.add_argument("--hard", type=int, default=0)
    ap.add_argument("--random", type=int, default=29)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    corpus = []
    with gzip.open(a.corpus, "rt", encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                j = json.loads(line)
                corpus.append({"doc_id": str(j["_id"]), "title": j.get("title", "") or "",
                               "text": j.get("text", "") or j.get("title", "")})
            except (ValueError, KeyError) as e:
                sys.exit(f"{a.corpus}:{line_no}: {e}")
    by_id = {d["doc_id"]: d for d in corpus}
    corpus = [d for d in corpus if d["text"].strip()]
    n = 0
    if a.input.endswith(".jsonl.gz"):
        lines = enumerate(gzip.open(a.input, "rt", encoding="utf-8"), 1)
    else:
        lines = enumerate(examples_from_queries(a.input, by_id), 1)
    with gzip.open(a.output, "wt", encoding="utf-8") as out:
        for line_no, line in lines:
            if not line.strip():
                continue
            try:
                ex = json.loads(line)
                answers = set(str(x) for x in ex["answer_ids"])
                docs = ex["documents"]
            except (ValueError, KeyError) as e:
                sys.exit(f"{a.input}:{line_no}: {e}")
            positives = [d for d in docs if str(d["doc_id"]) in answers]
            hard = [d for d in docs if str(d["doc_id"]) not in answers][: a.hard]
            taken = answers | {str(d["doc_id"]) for d in hard}
            rand = []
            while len(rand) < a.random:
                d = corpus[rng.randrange(len(corpus))]
                if d["doc_id"] not in taken:
                    taken.add(d["doc_id"])
                    rand.append(d)
            ex["documents"] = positives + hard + rand
            out.write(json.dumps(ex, ensure_ascii=False) + "\n")
            n += 1
    print(f"{n} examples with {a.hard} hard + {a.random} random negatives -> {a.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
