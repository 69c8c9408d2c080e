// SPDX-License-Identifier: Apache-2.0
// Metrics against values computed by hand (the arithmetic is in the comments).
#include "indexer/metrics.h"

#include <cmath>

#include <gtest/gtest.h>

namespace blockrank {
namespace {

std::vector<RunEntry> ranked(std::initializer_list<const char*> ids) {
  std::vector<RunEntry> out;
  double score = 100;
  for (const char* id : ids) {
    out.push_back(RunEntry{id, score});
    score -= 1;
  }
  return out;
}

TEST(MetricsTest, NdcgGradedHandComputed) {
  // Run: d1 (rel 2), d2 (0), d3 (1), d4 (unjudged). Judged: d1=2, d3=1, d5=3, d2=0.
  // DCG@10 = 2/log2(2) + 1/log2(4) = 2 + 0.5 = 2.5
  // IDCG@10 = 3/log2(2) + 2/log2(3) + 1/log2(4) = 3 + 1.261860 + 0.5 = 4.761860
  const std::map<std::string, int> j = {{"d1", 2}, {"d2", 0}, {"d3", 1}, {"d5", 3}};
  const QueryMetrics m = evaluate_query(ranked({"d1", "d2", "d3", "d4"}), j, MetricOptions());
  EXPECT_NEAR(m.ndcg, 2.5 / (3 + 2 / std::log2(3.0) + 0.5), 1e-12);
  // MRR: first relevant at rank 1.
  EXPECT_DOUBLE_EQ(m.mrr, 1.0);
  // Recall@100: 2 of 3 relevant found.
  EXPECT_DOUBLE_EQ(m.recall, 2.0 / 3.0);
  // AP: (1/1 + 2/3) / 3 relevant = 0.555…
  EXPECT_NEAR(m.ap, (1.0 + 2.0 / 3.0) / 3.0, 1e-12);
  EXPECT_DOUBLE_EQ(m.p1, 1.0);
}

TEST(MetricsTest, CutoffsApply) {
  // Relevant document only at rank 11: MRR@10 = 0, nDCG@10 = 0, but AP = 1/11.
  std::vector<RunEntry> run = ranked({"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "rel"});
  const std::map<std::string, int> j = {{"rel", 1}};
  const QueryMetrics m = evaluate_query(run, j, MetricOptions());
  EXPECT_EQ(m.mrr, 0.0);
  EXPECT_EQ(m.ndcg, 0.0);
  EXPECT_NEAR(m.ap, 1.0 / 11, 1e-12);
  EXPECT_DOUBLE_EQ(m.recall, 1.0);
  MetricOptions short_recall;
  short_recall.recall_cutoff = 10;
  EXPECT_EQ(evaluate_query(run, j, short_recall).recall, 0.0);
}

TEST(MetricsTest, TiesBrokenByDocIdDescendingLikeTrecEval) {
  // Same score: trec_eval orders "b" before "a". Relevant "a" is therefore at rank 2.
  const std::vector<RunEntry> run = {{"a", 1.0}, {"b", 1.0}};
  const QueryMetrics m = evaluate_query(run, {{"a", 1}}, MetricOptions());
  EXPECT_DOUBLE_EQ(m.mrr, 0.5);
  EXPECT_NEAR(m.ndcg, 1.0 / std::log2(3.0), 1e-12);
}

TEST(MetricsTest, RelevanceThresholdForBinaryMetrics) {
  // With threshold 2, a grade-1 document is not relevant for MRR but still gains in nDCG.
  MetricOptions o;
  o.relevance_threshold = 2;
  const QueryMetrics m = evaluate_query(ranked({"x", "y"}), {{"x", 1}, {"y", 2}}, o);
  EXPECT_DOUBLE_EQ(m.mrr, 0.5);
  EXPECT_EQ(m.relevant, 1);
  // DCG = 1 + 2/log2(3); IDCG = 2 + 1/log2(3).
  EXPECT_NEAR(m.ndcg, (1 + 2 / std::log2(3.0)) / (2 + 1 / std::log2(3.0)), 1e-12);
}

TEST(MetricsTest, AveragesOverAllJudgedQueriesMissingRunsScoreZero) {
  Qrels q = {{"q1", {{"d", 1}}}, {"q2", {{"e", 1}}}};
  blockrank::Run run = {{"q1", {{"d", 3.0}}}, {"q9", {{"d", 1.0}}}};
  const EvalSummary s = evaluate_run(run, q, MetricOptions());
  EXPECT_EQ(s.queries, 2);
  EXPECT_EQ(s.queries_in_run, 1);
  EXPECT_DOUBLE_EQ(s.ndcg, 0.5);
  EXPECT_DOUBLE_EQ(s.mrr, 0.5);
}

TEST(MetricsTest, QueryWithOnlyNonRelevantJudgementsScoresZero) {
  const QueryMetrics m = evaluate_query(ranked({"d"}), {{"d", 0}}, MetricOptions());
  EXPECT_EQ(m.ndcg, 0.0);
  EXPECT_EQ(m.recall, 0.0);
  EXPECT_EQ(m.ap, 0.0);
}

}  // namespace
}  // namespace blockrank
