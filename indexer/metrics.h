// SPDX-License-Identifier: Apache-2.0
// Ranking metrics with trec_eval semantics:
// - a run is ordered by score descending, ties broken by document id descending (trec_eval's
//   comparison), so results match trec_eval exactly on runs with tied scores;
// - nDCG@k: linear graded gain (relevance <= 0 counts 0), log2(rank + 1) discount, ideal DCG from
//   all judged documents with relevance > 0 (trec_eval ndcg_cut);
// - binary metrics (MRR@k, P@k, Recall@k, MAP) count a document relevant when its grade is at least
//   `relevance_threshold` (trec_eval -l, default 1);
// - averages are over every query in the qrels; a query absent from the run scores 0
//   (trec_eval -c, as Pyserini reports BEIR).
#ifndef BLOCKRANK_INDEXER_METRICS_H_
#define BLOCKRANK_INDEXER_METRICS_H_

#include <map>
#include <string>
#include <vector>

#include "indexer/eval_data.h"

namespace blockrank {

struct MetricOptions {
  int ndcg_cutoff = 10;
  int mrr_cutoff = 10;
  int recall_cutoff = 100;
  int relevance_threshold = 1;
};

struct QueryMetrics {
  double ndcg = 0;    ///< nDCG@ndcg_cutoff
  double mrr = 0;     ///< reciprocal rank of the first relevant document within mrr_cutoff
  double recall = 0;  ///< Recall@recall_cutoff
  double ap = 0;      ///< average precision over the whole run
  double p1 = 0;      ///< precision at 1
  int retrieved = 0;
  int relevant = 0;
};

struct EvalSummary {
  MetricOptions options;
  int queries = 0;         ///< queries in the qrels (the denominator)
  int queries_in_run = 0;  ///< of which the run has results
  double ndcg = 0, mrr = 0, recall = 0, map = 0, p1 = 0;
  std::map<std::string, QueryMetrics> per_query;
};

/// Sorts `entries` as trec_eval does (score desc, then doc id desc).
void sort_trec_order(std::vector<RunEntry>* entries);

/// Scores one ranked list against the judgements of its query.
QueryMetrics evaluate_query(const std::vector<RunEntry>& ranked,
                            const std::map<std::string, int>& judgements,
                            const MetricOptions& options);

EvalSummary evaluate_run(const Run& run, const Qrels& qrels, const MetricOptions& options);

}  // namespace blockrank

#endif  // BLOCKRANK_INDEXER_METRICS_H_
