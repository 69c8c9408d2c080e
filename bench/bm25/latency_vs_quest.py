#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""BM25 speed of blockrank beside Xapian's own tools, measured in the same run on the same machine.

Indexing: `blockrank index` vs Xapian's `simpleindex` over the same documents (title + text).
Query latency, top-100, one thread, on the same blockrank index:
  * blockrank in-process (the `eval` command's per-query timer: analysis + matching + ids),
  * `blockrank search -k 100` as one process per query,
  * Xapian's `quest -m 100` as one process per query, given the same analysed terms
    (`blockrank search --terms`) with stemming off, so both match exactly the same terms,
  * and both processes on a query that matches nothing (start-up + open cost).
Usage: bench/bm25/latency_vs_quest.py [BLOCKRANK_BIN] [N_QUERIES]
"""
import gzip, json, os, statistics, subprocess, sys, tempfile, time

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "build/plugin/cli/blockrank")
n_queries = int(sys.argv[2]) if len(sys.argv) > 2 else 50
data = os.environ.get("BLOCKRANK_SHARED_DATA", os.path.join(root, "..", "shared", "data"))
if not os.path.isdir(data):
    print("needs ../shared/data (set BLOCKRANK_SHARED_DATA)")
    sys.exit(0)
work = tempfile.mkdtemp(prefix="blockrank-quest-")


def pct(v, p):
    v = sorted(v)
    i = p / 100 * (len(v) - 1)
    lo = int(i)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (i - lo)


def timed(cmd, **kw):
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    return (time.perf_counter() - t0) * 1000


def load(name):
    if name == "arguana":
        docs = [json.loads(l) for l in gzip.open(f"{data}/arguana/corpus.jsonl.gz", "rt")]
        docs = [(d["_id"], d.get("title") or "", d["text"]) for d in docs]
        qs = [json.loads(l) for l in gzip.open(f"{data}/arguana/queries.jsonl.gz", "rt")]
        queries = [(q["_id"], q["text"]) for q in qs]
        return docs, queries, ["--format", "beir", f"{data}/arguana/corpus.jsonl.gz"]
    docs, cur = [], None
    for line in open(f"{data}/vaswani/doc-text.trec"):
        line = line.strip()
        if line.startswith("<DOCNO>"):
            cur = [line[7:-8], "", ""]
        elif line == "</DOC>":
            docs.append(tuple(cur))
        elif cur is not None and line != "<DOC>":
            cur[2] += line + " "
    raw = open(f"{data}/vaswani/query-text.trec").read().split("<top>")[1:]
    queries = []
    for t in raw:
        num = t.split("<num>")[1].split("</num>")[0].strip()
        title = t.split("<title>")[1].split("</title>")[0].strip()
        queries.append((num, title))
    return docs, queries, ["--format", "trec", f"{data}/vaswani/doc-text.trec"]


rows = []
for name in ["arguana", "vaswani"]:
    docs, queries, index_args = load(name)
    text_mb = sum(len(t.encode()) + len(x.encode()) for _, t, x in docs) / 1e6
    # simpleindex reads paragraphs separated by blank lines from stdin.
    para = os.path.join(work, f"{name}.para")
    with open(para, "w") as f:
        for _, t, x in docs:
            f.write((t + " " + x).replace("\n", " ").strip() + "\n\n")
    db = os.path.join(work, name)
    peer_db = os.path.join(work, name + "-simpleindex")
    ours_ms = timed([binary, "index", "-q", "--db", db] + index_args)
    with open(para) as stdin:
        peer_ms = timed(["/usr/lib/xapian-examples/examples/simpleindex", peer_db], stdin=stdin)
    rows.append(("index", name, len(docs) / (ours_ms / 1000), len(docs) / (peer_ms / 1000),
                 text_mb / (ours_ms / 1000), text_mb / (peer_ms / 1000)))

    qfile = os.path.join(work, f"{name}.tsv")
    with open(qfile, "w") as f:
        for qid, text in queries:
            f.write(f"{qid}\t{' '.join(text.split())}\n")
    qrels = (f"{data}/arguana/qrels/test.tsv" if name == "arguana" else f"{data}/vaswani/qrels")
    out = subprocess.run([binary, "eval", "--json", "--db", db, "--queries", qfile, "--qrels", qrels,
                          "--depth", "100", "--threads", "1"], check=True, capture_output=True,
                         text=True).stdout
    lat = json.loads(out)["latency_ms"]
    sample = queries[: n_queries]
    ours_proc, quest_proc = [], []
    for _, text in sample:
        text = " ".join(text.split())
        terms = subprocess.run([binary, "search", "--db", db, "--terms", text], check=True,
                               capture_output=True, text=True).stdout.split()
        ours_proc.append(timed([binary, "search", "--db", db, "-k", "100", text]))
        quest_proc.append(timed(["quest", "-d", db, "-m", "100", "-s", "none", " ".join(terms)]))
    ours_empty = [timed([binary, "search", "--db", db, "-k", "100", "zzqqxxnomatch"]) for _ in range(20)]
    quest_empty = [timed(["quest", "-d", db, "-m", "100", "-s", "none", "zzqqxxnomatch"]) for _ in range(20)]
    rows.append(("query", name, lat["p50"], lat["p99"], pct(ours_proc, 50), pct(ours_proc, 99),
                 pct(quest_proc, 50), pct(quest_proc, 99), statistics.median(ours_empty),
                 statistics.median(quest_empty), len(sample)))

print(f"date: {time.strftime('%Y-%m-%d')}  machine: {os.cpu_count()} cores, {os.uname().machine}")
print("\n| indexing | blockrank docs/s | simpleindex docs/s | ratio | blockrank MB/s | simpleindex MB/s |")
print("| --- | --- | --- | --- | --- | --- |")
for r in rows:
    if r[0] == "index":
        print(f"| {r[1]} | {r[2]:.0f} | {r[3]:.0f} | {r[2] / r[3]:.2f}x | {r[4]:.2f} | {r[5]:.2f} |")
print("\n| top-100 latency (ms) | in-process p50 / p99 | blockrank search (process) p50 / p99 | quest (process) p50 / p99 | process ratio p50 (quest/blockrank) | empty query: blockrank / quest | queries |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for r in rows:
    if r[0] == "query":
        print(f"| {r[1]} | {r[2]:.2f} / {r[3]:.2f} | {r[4]:.1f} / {r[5]:.1f} | {r[6]:.1f} / {r[7]:.1f} | {r[6] / r[4]:.2f} | {r[8]:.1f} / {r[9]:.1f} | {r[10]} |")
