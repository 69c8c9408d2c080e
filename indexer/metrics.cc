// SPDX-License-Identifier: Apache-2.0
#include "indexer/metrics.h"

#include <algorithm>
#include <cmath>

namespace blockrank {

void sort_trec_order(std::vector<RunEntry>* entries) {
  std::sort(entries->begin(), entries->end(), [](const RunEntry& a, const RunEntry& b) {
    if (a.score != b.score) {
      return a.score > b.score;
    }
    return a.doc_id > b.doc_id;
  });
}

QueryMetrics evaluate_query(const std::vector<RunEntry>& ranked_in,
                            const std::map<std::string, int>& judgements,
                            const MetricOptions& options) {
  std::vector<RunEntry> ranked = ranked_in;
  sort_trec_order(&ranked);
  QueryMetrics m;
  m.retrieved = static_cast<int>(ranked.size());
  std::vector<int> ideal;
  for (const auto& [doc, rel] : judgements) {
    if (rel > 0) {
      ideal.push_back(rel);
    }
    if (rel >= options.relevance_threshold) {
      ++m.relevant;
    }
  }
  std::sort(ideal.rbegin(), ideal.rend());
  double dcg = 0;
  double idcg = 0;
  for (int i = 0; i < options.ndcg_cutoff && i < static_cast<int>(ideal.size()); ++i) {
    idcg += ideal[static_cast<size_t>(i)] / std::log2(i + 2.0);
  }
  int found = 0;
  double precision_sum = 0;
  for (size_t i = 0; i < ranked.size(); ++i) {
    const auto it = judgements.find(ranked[i].doc_id);
    const int rel = it == judgements.end() ? 0 : it->second;
    const int rank = static_cast<int>(i) + 1;
    if (rank <= options.ndcg_cutoff && rel > 0) {
      dcg += rel / std::log2(rank + 1.0);
    }
    if (rel >= options.relevance_threshold) {
      ++found;
      precision_sum += static_cast<double>(found) / rank;
      if (m.mrr == 0 && rank <= options.mrr_cutoff) {
        m.mrr = 1.0 / rank;
      }
      if (rank <= options.recall_cutoff) {
        m.recall += 1;
      }
      if (rank == 1) {
        m.p1 = 1;
      }
    }
  }
  m.ndcg = idcg > 0 ? dcg / idcg : 0;
  m.recall = m.relevant > 0 ? m.recall / m.relevant : 0;
  m.ap = m.relevant > 0 ? precision_sum / m.relevant : 0;
  return m;
}

EvalSummary evaluate_run(const Run& run, const Qrels& qrels, const MetricOptions& options) {
  EvalSummary s;
  s.options = options;
  static const std::vector<RunEntry> kEmpty;
  for (const auto& [qid, judgements] : qrels) {
    const auto it = run.find(qid);
    const bool in_run = it != run.end();
    const QueryMetrics m = evaluate_query(in_run ? it->second : kEmpty, judgements, options);
    s.per_query[qid] = m;
    ++s.queries;
    s.queries_in_run += in_run ? 1 : 0;
    s.ndcg += m.ndcg;
    s.mrr += m.mrr;
    s.recall += m.recall;
    s.map += m.ap;
    s.p1 += m.p1;
  }
  if (s.queries > 0) {
    s.ndcg /= s.queries;
    s.mrr /= s.queries;
    s.recall /= s.queries;
    s.map /= s.queries;
    s.p1 /= s.queries;
  }
  return s;
}

}  // namespace blockrank
