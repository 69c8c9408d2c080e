// SPDX-License-Identifier: Apache-2.0
// Runs a batch of queries against an index with BM25 and collects a TREC run, using several threads
// (one Searcher each: Xapian databases are not thread-safe).
#ifndef BLOCKRANK_INDEXER_RETRIEVAL_RUN_H_
#define BLOCKRANK_INDEXER_RETRIEVAL_RUN_H_

#include <string>
#include <vector>

#include "blockrank/status.h"
#include "indexer/eval_data.h"
#include "indexer/searcher.h"

namespace blockrank {

struct RetrievalRunOptions {
  SearchOptions search;
  /// Hits per query. Default: 1000.
  int depth = 1000;
  /// Drop a hit whose document id equals the query id (BEIR ignore_identical_ids, Pyserini
  /// --remove-query; needed for ArguAna and Quora). Default: false.
  bool remove_query = false;
  /// Worker threads. Default: 2.
  int threads = 2;
};

struct RetrievalRunStats {
  double seconds = 0;
  std::vector<double> latencies_ms;  ///< per query, in query order
};

Status run_queries(const std::string& db_dir,
                   const std::vector<EvalQuery>& queries,
                   const RetrievalRunOptions& options,
                   Run* run,
                   RetrievalRunStats* stats);

}  // namespace blockrank

#endif  // BLOCKRANK_INDEXER_RETRIEVAL_RUN_H_
