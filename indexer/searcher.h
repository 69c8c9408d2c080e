// SPDX-License-Identifier: Apache-2.0
// BM25 retrieval over an index written by IndexWriter: the first stage that feeds the reranker.
// Queries are analysed with the settings recorded in the index (stemmer, stop words).
//
// Thread-safety: a Searcher is not thread-safe (Xapian::Database is not); open one per thread.
#ifndef BLOCKRANK_INDEXER_SEARCHER_H_
#define BLOCKRANK_INDEXER_SEARCHER_H_

#include <memory>
#include <string>
#include <vector>

#include "blockrank/status.h"

namespace Xapian {
class Database;
}  // namespace Xapian

namespace blockrank {

struct SearchOptions {
  /// BM25 term-frequency saturation. Default: 1.2. With k1=1.2/b=0.75 BM25 scored higher than with
  /// Anserini's BEIR setting 0.9/0.4 on ArguAna (0.470 vs 0.399), Cranfield and CACM, equal on
  /// NFCorpus and 0.002 lower on Vaswani (docs/BENCHMARKS.md, "BM25").
  double bm25_k1 = 1.2;
  /// BM25 length normalisation. Default: 0.75.
  double bm25_b = 0.75;
  /// BM25 query-term-frequency saturation. Xapian's own default (1) damps repeated query words;
  /// a large value makes a word that occurs n times in the query count n times, as Lucene/Anserini
  /// do, which matters for long queries (ArguAna: 0.355 with k3=1, 0.399 with k3=1000 at
  /// k1=0.9/b=0.4, against Pyserini's 0.397). Default: 1000.
  double bm25_k3 = 1000;
  /// Fetch title and text of the hits (needed for display and reranking). Default: true.
  bool fetch_text = true;
  /// When > 0 (and fetch_text), each hit gets a plain-text snippet of about this many bytes around
  /// the query terms. Default: 0.
  size_t snippet_bytes = 0;
  Status validate() const;
};

struct SearchHit {
  int rank = 0;        ///< 1-based
  unsigned docid = 0;  ///< Xapian docid (internal, changes across shards)
  std::string id;      ///< external document id
  double score = 0;    ///< BM25 weight
  std::string title;
  std::string text;
  std::string snippet;  ///< only with SearchOptions::snippet_bytes > 0
};

class Searcher {
 public:
  ~Searcher();
  Searcher(const Searcher&) = delete;
  Searcher& operator=(const Searcher&) = delete;

  /// Opens the index at `db_dir` read-only. kNotFound if there is none.
  static Status open(const std::string& db_dir,
                     const SearchOptions& options,
                     std::unique_ptr<Searcher>* out);
  /// Wraps an already opened database (several shards, remote backends).
  static Status open(const Xapian::Database& db,
                     const SearchOptions& options,
                     std::unique_ptr<Searcher>* out);

  /// The top `k` hits for free text `query`, best first. An empty query returns no hits.
  Status search(const std::string& query, int k, std::vector<SearchHit>* hits);
  /// As above with per-call options (e.g. snippets for display but not for evaluation).
  Status search(const std::string& query,
                int k,
                const SearchOptions& options,
                std::vector<SearchHit>* hits);
  /// The analysed query terms with their query frequencies ("term:wqf"), for debugging.
  std::vector<std::string> query_terms(const std::string& query) const;
  /// Looks a document up by external id; kNotFound if absent.
  Status get_document(const std::string& id, SearchHit* hit);
  /// Picks up changes committed by a writer since open (or the last reopen).
  Status reopen();
  uint64_t doc_count() const;

 private:
  struct Impl;
  explicit Searcher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace blockrank

#endif  // BLOCKRANK_INDEXER_SEARCHER_H_
