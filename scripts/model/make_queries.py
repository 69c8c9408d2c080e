#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes query TSV + qrels files for `blockrank mine` from data we may ship a model of (issue #10).

  make_queries.py generated GQ_JSONL_GZ OUT_PREFIX [--val-every N]
      ArguAna's generated queries (BeIR/arguana-generated-queries, CC BY-SA 4.0): one query per line,
      {"_id": positive doc id, "query": text}. Ids gq<line>. Split by positive document (a stable hash
      of its id), so no validation document is a training positive: about 1/N of the documents go to
      validation (default N = 50).
  make_queries.py sentences CORPUS_JSONL_GZ OUT_PREFIX [--seed S] [--per-doc K] [--val-every N]
      Self-supervised pairs: one (or K) sentence(s) of 6-40 words drawn from each corpus passage is the
      query, the passage its positive. Ids ss<n>. Same split rule.

Writes OUT_PREFIX.train.tsv / .train.qrels and OUT_PREFIX.val.tsv / .val.qrels ("qid docid 1" per
line, the 3-column qrels `blockrank mine` reads). Pure Python, deterministic."""
import argparse, gzip, hashlib, json, random, re, sys


def is_val(doc_id, every):
    return int(hashlib.sha1(doc_id.encode()).hexdigest()[:8], 16) % every == 0


def clean(text):
    return " ".join(text.replace("\t", " ").split())


def sentences(text):
    for s in re.split(r"(?<=[.!?])\s+", clean(text)):
        s = re.sub(r"\[\d+\]", "", s).strip()  # drop citation markers like [1]
        n = len(s.split())
        if 6 <= n <= 40:
            yield s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["generated", "sentences"])
    ap.add_argument("input")
    ap.add_argument("out_prefix")
    ap.add_argument("--val-every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--per-doc", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0, help="stop after this many queries (0: all)")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    files = {}
    for split in ("train", "val"):
        files[split] = (open(f"{a.out_prefix}.{split}.tsv", "w"), open(f"{a.out_prefix}.{split}.qrels", "w"))
    counts = {"train": 0, "val": 0}
    n = 0
    with gzip.open(a.input, "rt", encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                j = json.loads(line)
                doc_id = str(j["_id"])
            except (ValueError, KeyError) as e:
                sys.exit(f"{a.input}:{line_no}: {e}")
            if a.kind == "generated":
                picks = [clean(j.get("query", ""))]
            else:
                cands = list(sentences(j.get("text", "")))
                picks = rng.sample(cands, min(a.per_doc, len(cands)))
            for q in picks:
                if not q:
                    continue
                qid = ("gq" if a.kind == "generated" else "ss") + str(n)
                n += 1
                split = "val" if is_val(doc_id, a.val_every) else "train"
                tsv, qrels = files[split]
                tsv.write(f"{qid}\t{q}\n")
                qrels.write(f"{qid} {doc_id} 1\n")
                counts[split] += 1
            if a.limit and n >= a.limit:
                break
    for tsv, qrels in files.values():
        tsv.close()
        qrels.close()
    print(f"{a.kind}: {counts['train']} training and {counts['val']} validation queries -> {a.out_prefix}.*",
          file=sys.stderr)


if __name__ == "__main__":
    main()
