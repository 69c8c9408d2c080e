// SPDX-License-Identifier: Apache-2.0
// The training-data and reranked-evaluation commands end to end on examples/sample-corpus:
// `blockrank mine` writes the training JSONL; `blockrank eval --model` reranks the BM25 top-k with
// a tiny random model (bench/http/make_tiny_model.py) and prints BM25 and each --fusion side by
// side, where interpolate:1 must give exactly BM25's metrics; `blockrank rerank --fusion` on a
// rank_llm-style file with BM25 scores, where interpolate:1 reproduces the input ranking's metrics.
// The model cases skip without the llama2 reference tokenizer in .cache/tokenizers.
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "test_util.h"

#include <nlohmann/json.hpp>
#include <sys/wait.h>

namespace blockrank {
namespace {

using Result = testing::CommandResult;

Result run(const std::string& args, bool with_stderr = true) {
  return testing::run_command(std::string(BLOCKRANK_CLI_PATH) + " " + args +
                              (with_stderr ? " 2>&1" : " 2>/dev/null"));
}

std::string quote(const std::string& s) {
  return testing::shell_quote(s);
}

class RerankEvalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = dir_.file("db");
    ASSERT_EQ(run("index -q --db " + quote(db_) + " " + sample("corpus.jsonl")).exit_code, 0);
  }
  std::string sample(const std::string& f) const {
    return quote(testing::source_dir() + "/examples/sample-corpus/" + f);
  }
  // A tiny random model, or "" (the test skips) without the reference tokenizer.
  std::string tiny_model() {
    const std::string tok = testing::source_dir() + "/.cache/tokenizers/llama2/tokenizer.json";
    if (::access(tok.c_str(), R_OK) != 0) {
      return "";
    }
    const std::string model = dir_.file("model");
    const std::string cmd = "python3 " +
                            quote(testing::source_dir() + "/bench/http/make_tiny_model.py") + " " +
                            quote(model) + " " + quote(tok) + " > /dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0);
    return model;
  }
  testing::TempDir dir_;
  std::string db_;
};

TEST_F(RerankEvalTest, MineWritesTrainingJsonl) {
  const std::string out = dir_.file("train.jsonl");
  Result r = run("mine --db " + quote(db_) + " --queries " + sample("queries.tsv") + " --qrels " +
                 sample("qrels.txt") + " --k 5 --out " + quote(out));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("8 of 8 queries written"), std::string::npos) << r.out;
  r = run("mine --db " + quote(db_) + " --queries " + sample("queries.tsv") + " --qrels " +
          quote(dir_.file("none.txt")) + " --out " + quote(out));
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("none.txt"), std::string::npos) << r.out;
}

TEST_F(RerankEvalTest, EvalWithModelPrintsBm25AndFusionsSideBySide) {
  const std::string model = tiny_model();
  if (model.empty()) {
    GTEST_SKIP() << "needs .cache/tokenizers/llama2 (run scripts/tokenizer-reference/setup.sh)";
  }
  const std::string base = "eval --db " + quote(db_) + " --queries " + sample("queries.tsv") +
                           " --qrels " + sample("qrels.txt") + " --model " + quote(model) +
                           " --rerank-depth 20";
  Result r = run(base + " --json --fusion rerank --fusion interpolate:1 --fusion interpolate:0.5",
                 /*with_stderr=*/false);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.contains("reranked")) << r.out;
  // interpolate:1 is the BM25 order: every metric equal, bit for bit.
  const nlohmann::json& same = j["reranked"]["interpolate:1"];
  for (const char* m : {"ndcg@10", "mrr@10", "recall@100", "map", "p@1"}) {
    EXPECT_EQ(same[m].get<double>(), j[m].get<double>()) << m;
  }
  for (const char* f : {"rerank", "interpolate:0.5"}) {
    const double ndcg = j["reranked"][f]["ndcg@10"].get<double>();
    EXPECT_GE(ndcg, 0.0) << f;
    EXPECT_LE(ndcg, 1.0) << f;
    // Reranking reorders only the top 20 of BM25's run (all the hits here): recall is unchanged.
    EXPECT_EQ(j["reranked"][f]["recall@100"].get<double>(), j["recall@100"].get<double>()) << f;
  }
  EXPECT_EQ(j["rerank"]["queries"].get<int>(), 8);

  // The table form names BM25 and each fusion.
  r = run(base + " --fusion interpolate:0.3");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("BM25"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("interpolate:0.3"), std::string::npos) << r.out;

  // "model": the fusion the model's blockrank.json recommends; none there -> rerank.
  r = run(base + " --json --fusion model", /*with_stderr=*/false);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(nlohmann::json::parse(r.out)["reranked"].contains("rerank")) << r.out;
  const auto set_fusion = [&](const nlohmann::json& value) {  // keeps the model's other settings
    std::ifstream in(model + "/blockrank.json");
    nlohmann::json settings = nlohmann::json::parse(in);
    settings["fusion"] = value;
    testing::write_text(model + "/blockrank.json", settings.dump());
  };
  set_fusion("interpolate:0.7");
  r = run(base + " --json --fusion model", /*with_stderr=*/false);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(nlohmann::json::parse(r.out)["reranked"].contains("interpolate:0.7")) << r.out;
  set_fusion("blend");
  r = run(base + " --fusion model");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("blockrank.json: field 'fusion'"), std::string::npos) << r.out;

  // Clear errors: a bad fusion, a model without an index.
  r = run(base + " --fusion mix");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("fusion"), std::string::npos) << r.out;
  r = run("eval --run " + quote(dir_.file("x.trec")) + " --qrels " + sample("qrels.txt") +
          " --model " + quote(model));
  EXPECT_NE(r.exit_code, 0) << r.out;
}

TEST_F(RerankEvalTest, RerankFusionInterpolateOneKeepsTheInputOrder) {
  const std::string model = tiny_model();
  if (model.empty()) {
    GTEST_SKIP() << "needs .cache/tokenizers/llama2 (run scripts/tokenizer-reference/setup.sh)";
  }
  // A rank_llm retrieve_results file with BM25 scores, from `search --json` over the sample.
  nlohmann::json input = nlohmann::json::array();
  const std::vector<std::pair<std::string, std::string>> queries = {
      {"q1", "how does bm25 weight repeated terms and long documents"},
      {"q4", "what causes an eclipse of the moon"},
      {"q6", "how do plants make sugar from light"}};
  for (const auto& [qid, text] : queries) {
    Result s = run("search --db " + quote(db_) + " --json -k 8 " + quote(text), false);
    ASSERT_EQ(s.exit_code, 0) << s.out;
    const nlohmann::json hits = nlohmann::json::parse(s.out)["results"];
    nlohmann::json entry = {{"query", text}, {"hits", nlohmann::json::array()}};
    for (const auto& h : hits) {
      entry["hits"].push_back(
          {{"content", h["title"].get<std::string>() + " " + h["snippet"].get<std::string>()},
           {"qid", qid},
           {"docid", h["doc_id"]},
           {"rank", h["rank"]},
           {"score", h["score"]}});
    }
    input.push_back(entry);
  }
  const std::string path = dir_.file("bm25.json");
  testing::write_text(path, input.dump());
  Result r = run("rerank --model " + quote(model) + " --input " + quote(path) + " --qrels " +
                 sample("qrels.txt") + " --output " + quote(dir_.file("out.jsonl")) +
                 " --fusion interpolate:1 --fusion rerank");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto metrics_line = [&](const std::string& label) {
    const size_t at = r.out.find(label + " nDCG@10");
    EXPECT_NE(at, std::string::npos) << label << "\n" << r.out;
    return at == std::string::npos
               ? std::string()
               : r.out.substr(at + label.size(), r.out.find('\n', at) - at - label.size());
  };
  const std::string input_metrics = metrics_line("input     ");
  EXPECT_EQ(metrics_line("reranked (interpolate:1)"), input_metrics);
  EXPECT_NE(r.out.find("reranked (rerank)"), std::string::npos) << r.out;
  r = run("rerank --model " + quote(model) + " --input " + quote(path) + " --fusion blend");
  EXPECT_EQ(r.exit_code, 2) << r.out;
}

}  // namespace
}  // namespace blockrank
