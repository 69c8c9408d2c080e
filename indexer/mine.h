// SPDX-License-Identifier: Apache-2.0
// BM25 hard-negative mining for BlockRank training (`blockrank mine`): for each query with
// judgements, the BM25 top-k of an index gives the candidates; the judged-relevant ones are the
// positives (plus, by default, the relevant documents BM25 missed) and the retrieved non-relevant
// ones are hard negatives. The output is the upstream training JSONL (BLOCKRANK.md §5.1), one line
// per query: {"query", "query_id", "documents": [{"doc_id", "title", "text"}], "answer_ids"},
// which `blockrank train` reads (training/example.h).
//
// Thread-safety: mine_training_data() opens its own searchers; safe to call concurrently on
// different outputs.
#ifndef BLOCKRANK_INDEXER_MINE_H_
#define BLOCKRANK_INDEXER_MINE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "blockrank/status.h"
#include "indexer/eval_data.h"
#include "indexer/retrieval_run.h"

namespace blockrank {

struct MineOptions {
  /// Index directory (written by `blockrank index`).
  std::string db;
  /// Queries and judgements, read as `blockrank eval` reads them.
  std::string queries;
  std::string qrels;
  QueryReaderOptions query_reader;
  QrelsReaderOptions qrels_reader;
  /// Output JSONL; gzip-compressed when the name ends in ".gz". Written to a temporary file and
  /// renamed at the end, so a failed run leaves no partial output.
  std::string out;
  /// BM25 hits per query (candidates). Default: 30.
  int k = 30;
  /// Lowest grade counted as a positive. Default: 1.
  int rel_threshold = 1;
  /// Add relevant documents that BM25 did not retrieve in the top k (teacher forcing, as upstream's
  /// training data always contains the ground truth, §5.4). Default: true.
  bool add_unretrieved_positives = true;
  /// BM25 settings, remove_query (ArguAna) and threads, as `blockrank eval`. depth is set to k.
  RetrievalRunOptions retrieval;
};

struct MineStats {
  int64_t queries_read = 0;
  int64_t written = 0;
  /// Queries without any judgement in the qrels.
  int64_t skipped_no_qrels = 0;
  /// Queries whose judgements name no positive (>= rel_threshold) that is in the index with text,
  /// or (with add_unretrieved_positives off) none that BM25 retrieved.
  int64_t skipped_no_positives = 0;
  /// Queries whose every candidate is a positive (no negative to train against; kept, counted).
  int64_t no_negatives = 0;
  int64_t positives = 0;            ///< written positives
  int64_t positives_retrieved = 0;  ///< of those, in the BM25 top k
  int64_t positives_missing = 0;    ///< judged relevant but absent from the index (not written)
  int64_t negatives = 0;            ///< written hard negatives
  int64_t empty_documents = 0;      ///< candidates dropped for having no text
  double seconds = 0;
};

/// Mines `options.out`. kInvalidArgument for bad options or unreadable query/qrels lines (with
/// file:line), kNotFound for a missing index or input, kIOError when the output cannot be written.
Status mine_training_data(const MineOptions& options, MineStats* stats);

}  // namespace blockrank

#endif  // BLOCKRANK_INDEXER_MINE_H_
