// SPDX-License-Identifier: Apache-2.0
// `blockrank mine` on examples/sample-corpus: one JSONL line per judged query, positives from the
// qrels (grade threshold, unretrieved positives added or not), hard negatives = the retrieved
// non-relevant documents with their stored title and text, --remove-query, gzip output, and clear
// errors for inputs that do not match.
#include "indexer/mine.h"

#include <map>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "indexer/index_writer.h"
#include "plugin/base/line_reader.h"
#include "test_util.h"

#include <nlohmann/json.hpp>

namespace blockrank {
namespace {

class MineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sample_ = testing::source_dir() + "/examples/sample-corpus/";
    IndexRunStats stats;
    ASSERT_OK(index_files(db(), {sample_ + "corpus.jsonl"}, IndexRunOptions(), &stats));
    ASSERT_EQ(stats.documents, 40u);
  }
  std::string db() const { return dir_.file("db"); }
  MineOptions options(const std::string& out) const {
    MineOptions o;
    o.db = db();
    o.queries = sample_ + "queries.tsv";
    o.qrels = sample_ + "qrels.txt";
    o.out = dir_.file(out);
    o.k = 5;
    return o;
  }
  // The output, one JSON object per line, keyed by query_id.
  std::map<std::string, nlohmann::json> read_out(const std::string& path) const {
    std::unique_ptr<LineReader> r;
    EXPECT_OK(LineReader::open(path, &r));
    std::map<std::string, nlohmann::json> out;
    std::string line;
    bool eof = false;
    while (r != nullptr && r->next(&line, &eof).is_ok() && !eof) {
      nlohmann::json j = nlohmann::json::parse(line);
      out[j["query_id"].get<std::string>()] = j;
    }
    return out;
  }
  static std::set<std::string> doc_ids(const nlohmann::json& j) {
    std::set<std::string> ids;
    for (const auto& d : j["documents"]) {
      ids.insert(d["doc_id"].get<std::string>());
    }
    return ids;
  }

  std::string sample_;
  testing::TempDir dir_;
};

TEST_F(MineTest, WritesPositivesAndHardNegatives) {
  MineStats stats;
  ASSERT_OK(mine_training_data(options("train.jsonl"), &stats));
  EXPECT_EQ(stats.queries_read, 8);
  EXPECT_EQ(stats.written, 8);
  const auto out = read_out(dir_.file("train.jsonl"));
  ASSERT_EQ(out.size(), 8u);

  // q2 judges blockrank 2, attention 1, reranking 1: every one is a positive (threshold 1), and is
  // a document of the line even when BM25 missed it.
  const nlohmann::json& q2 = out.at("q2");
  EXPECT_EQ(q2["query"], "why do documents only attend to the instruction in blockrank");
  std::set<std::string> answers(q2["answer_ids"].begin(), q2["answer_ids"].end());
  EXPECT_EQ(answers, (std::set<std::string>{"blockrank", "attention", "reranking"}));
  const std::set<std::string> ids = doc_ids(q2);
  for (const std::string& a : answers) {
    EXPECT_EQ(ids.count(a), 1u) << a;
  }
  // Documents carry their stored title and text; the negatives are the retrieved non-relevant.
  for (const auto& d : q2["documents"]) {
    EXPECT_FALSE(d["text"].get<std::string>().empty());
    if (d["doc_id"] == "bm25") {
      EXPECT_EQ(d["title"], "BM25 ranking function");
    }
  }
  EXPECT_EQ(stats.positives, 13);  // every qrels line has grade >= 1
  EXPECT_EQ(stats.positives + stats.negatives, [&] {
    int64_t n = 0;
    for (const auto& [id, j] : out) {
      n += static_cast<int64_t>(j["documents"].size());
    }
    return n;
  }());
  EXPECT_GT(stats.negatives, 0);
  EXPECT_LE(stats.positives_retrieved, stats.positives);
}

TEST_F(MineTest, ThresholdRetrievedOnlyAndGzip) {
  MineOptions o = options("train.jsonl.gz");
  o.rel_threshold = 2;
  MineStats stats;
  ASSERT_OK(mine_training_data(o, &stats));
  EXPECT_EQ(stats.positives, 8);  // one grade-2 document per query
  auto out = read_out(o.out);     // LineReader reads gzip
  ASSERT_EQ(out.size(), 8u);
  // A grade-1 document is now a (hard) negative when retrieved, never an answer.
  const std::vector<std::string> q1_answers = out.at("q1")["answer_ids"];
  EXPECT_EQ(q1_answers, std::vector<std::string>{"bm25"});

  // Retrieved positives only, with k = 1: queries whose top hit is not relevant are skipped.
  o = options("top1.jsonl");
  o.k = 1;
  o.add_unretrieved_positives = false;
  ASSERT_OK(mine_training_data(o, &stats));
  EXPECT_EQ(stats.written + stats.skipped_no_positives, 8);
  EXPECT_EQ(stats.positives_retrieved, stats.positives);
  for (const auto& [qid, j] : read_out(o.out)) {
    EXPECT_EQ(j["documents"].size(), 1u) << qid;
    EXPECT_EQ(j["answer_ids"].size(), 1u) << qid;
  }
}

TEST_F(MineTest, RemoveQueryDropsTheQueryDocument) {
  // A query whose id is a document id, as in ArguAna: --remove-query keeps the document out.
  const std::string queries = dir_.file("q.tsv");
  const std::string qrels = dir_.file("qrels.txt");
  testing::write_text(queries, "bm25\thow does bm25 weight repeated terms and long documents\n");
  testing::write_text(qrels, "bm25 0 ndcg 1\n");
  MineOptions o = options("rq.jsonl");
  o.queries = queries;
  o.qrels = qrels;
  MineStats stats;
  ASSERT_OK(mine_training_data(o, &stats));
  EXPECT_EQ(doc_ids(read_out(o.out).at("bm25")).count("bm25"), 1u);
  o.retrieval.remove_query = true;
  ASSERT_OK(mine_training_data(o, &stats));
  const nlohmann::json j = read_out(o.out).at("bm25");
  EXPECT_EQ(doc_ids(j).count("bm25"), 0u);
  // Still k retrieved candidates (one extra hit fetched), plus ndcg if BM25 missed it.
  EXPECT_EQ(stats.positives_retrieved + stats.negatives, 5);
  EXPECT_EQ(static_cast<int64_t>(j["documents"].size()),
            5 + stats.positives - stats.positives_retrieved);
}

TEST_F(MineTest, ClearErrors) {
  MineStats stats;
  MineOptions o = options("x.jsonl");
  o.qrels = dir_.file("other-qrels.txt");
  testing::write_text(o.qrels, "zz 0 bm25 1\n");
  Status s = mine_training_data(o, &stats);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("has judgements"), std::string::npos) << s.message();

  o = options("x.jsonl");
  o.qrels = dir_.file("missing-docs.txt");
  testing::write_text(o.qrels, "q3 0 no-such-doc 1\n");
  o.add_unretrieved_positives = true;
  s = mine_training_data(o, &stats);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("no query has a positive"), std::string::npos) << s.message();
  EXPECT_FALSE(std::filesystem::exists(o.out));  // no partial output

  o = options("x.jsonl");
  o.k = 0;
  EXPECT_EQ(mine_training_data(o, &stats).code(), StatusCode::kInvalidArgument);
  o = options("x.jsonl");
  o.db = dir_.file("no-db");
  EXPECT_NE(mine_training_data(o, &stats).code(), StatusCode::kOk);
  o = options("x.jsonl");
  o.queries = dir_.file("no-queries.tsv");
  EXPECT_EQ(mine_training_data(o, &stats).code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace blockrank
