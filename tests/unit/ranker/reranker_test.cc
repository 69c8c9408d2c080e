// SPDX-License-Identifier: Apache-2.0
// Reranker tests: KV-cache greedy decoding equals a full BlockRank forward over the extended query
// block; decode-output parsing of garbage; the reranker end to end on a tiny random Mistral-shaped
// model written beside a reference tokenizer (scores sum to 1, a permutation of the candidates
// gives the same scores with doc ids mapped back, decode mode ranks every candidate whatever the
// model emits); `blockrank rerank` error messages and output formats.
#include "ranker/core/reranker.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "ranker/core/model.h"
#include "ranker/core/safetensors.h"
#include "test_util.h"

#include <sys/wait.h>

namespace blockrank {
namespace {

namespace fs = std::filesystem;

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

ModelConfig tiny_config(int64_t vocab) {
  ModelConfig c;
  c.arch = Architecture::kMistral;
  c.vocab_size = vocab;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.rope_theta = 1e6;
  return c;
}

// Writes a random Mistral-shaped model (config.json, model.safetensors, blockrank.json) with the
// llama2 reference tokenizer into `dir`; false when the tokenizer cache is absent.
bool write_tiny_model(const std::string& dir, int64_t vocab = 32000) {
  const std::string tok = testing::source_dir() + "/.cache/tokenizers/llama2/tokenizer.json";
  if (!fs::exists(tok)) {
    return false;
  }
  fs::create_directories(dir);
  fs::copy_file(tok, dir + "/tokenizer.json", fs::copy_options::overwrite_existing);
  testing::write_text(dir + "/config.json",
                      R"({"model_type": "mistral", "vocab_size": )" + std::to_string(vocab) + R"(,
    "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": 8, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
    "tie_word_embeddings": false, "sliding_window": null, "eos_token_id": 2})");
  testing::write_text(dir + "/blockrank.json",
                      R"({"scoring_layer": 1, "signal_rows": 2, "prompt_template": "mistral"})");
  at::manual_seed(7);
  std::vector<std::pair<std::string, at::Tensor>> w;
  auto mat = [](int64_t r, int64_t c) { return at::randn({r, c}) / std::sqrt(double(c)); };
  w.emplace_back("model.embed_tokens.weight", at::randn({vocab, 32}));
  w.emplace_back("lm_head.weight", mat(vocab, 32));
  w.emplace_back("model.norm.weight", at::ones({32}));
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    w.emplace_back(p + "input_layernorm.weight", at::ones({32}));
    w.emplace_back(p + "post_attention_layernorm.weight", at::ones({32}));
    w.emplace_back(p + "self_attn.q_proj.weight", mat(32, 32));
    w.emplace_back(p + "self_attn.k_proj.weight", mat(16, 32));
    w.emplace_back(p + "self_attn.v_proj.weight", mat(16, 32));
    w.emplace_back(p + "self_attn.o_proj.weight", mat(32, 32));
    w.emplace_back(p + "mlp.gate_proj.weight", mat(64, 32));
    w.emplace_back(p + "mlp.up_proj.weight", mat(64, 32));
    w.emplace_back(p + "mlp.down_proj.weight", mat(32, 64));
  }
  EXPECT_OK(write_safetensors(dir + "/model.safetensors", w));
  return true;
}

std::vector<RerankDocument> sample_docs() {
  return {{"d-a", "Fleas", "A flea can live up to a year."},
          {"d-b", "", "Cats sleep sixteen hours a day."},
          {"d-c", "Dogs", "Dogs need exercise."},
          {"d-d", "Flea life cycle", "Egg, larva, pupa and adult."},
          {"d-e", "", "The moon is not made of cheese."}};
}

TEST(GenerateTest, KvCacheDecodingEqualsFullForward) {
  std::unique_ptr<Model> m;
  BlockRankSettings st;
  st.scoring_layer = 1;
  ASSERT_OK(Model::create_random(tiny_config(128), st, LoadOptions{}, 3, &m));
  BlockLayout layout;
  layout.block_lengths = {6, 5, 7, 4, 5};
  std::vector<int64_t> ids;
  for (int i = 0; i < 27; ++i) {
    ids.push_back((i * 37 + 11) % 128);
  }
  GenerateRequest req;
  req.max_new_tokens = 5;
  req.scoring_layer = 1;
  auto gen = m->generate(ids, layout, req);
  ASSERT_OK(gen.status());
  ASSERT_EQ(gen->tokens.size(), 5u);
  // The scores of the prompt pass are attention inference's.
  auto scores = m->score_documents(ids, layout, 1, 2);
  ASSERT_OK(scores.status());
  ASSERT_EQ(gen->scores.size(), scores->size());
  for (size_t i = 0; i < scores->size(); ++i) {
    EXPECT_NEAR(gen->scores[i], (*scores)[i], 1e-6);
  }
  // Generated tokens belong to the query block: a full forward with them appended to it must
  // predict the same greedy tokens at every step.
  std::vector<int64_t> ext = ids;
  ext.insert(ext.end(), gen->tokens.begin(), gen->tokens.end() - 1);
  BlockLayout ext_layout = layout;
  ext_layout.block_lengths.back() += 4;
  ForwardRequest fr;
  fr.logits = true;
  auto full = m->forward(ext, &ext_layout, fr);
  ASSERT_OK(full.status());
  const int64_t t = static_cast<int64_t>(ids.size());
  for (int64_t step = 0; step < 5; ++step) {
    EXPECT_EQ(full->logits[t - 1 + step].argmax().item<int64_t>(),
              gen->tokens[static_cast<size_t>(step)])
        << "step " << step;
  }
  // A stop id ends generation right after it is emitted.
  req.stop_ids = {gen->tokens[1]};
  auto stopped = m->generate(ids, layout, req);
  ASSERT_OK(stopped.status());
  EXPECT_LE(stopped->tokens.size(), 2u);
  EXPECT_EQ(stopped->tokens.back(), gen->tokens[stopped->tokens.size() - 1]);
}

TEST(ParseGeneratedIdsTest, ValidDistinctIdsBeforeTheBracket) {
  using V = std::vector<int32_t>;
  EXPECT_EQ(parse_generated_ids("3, 7]", 10), (V{3, 7}));
  EXPECT_EQ(parse_generated_ids("3, 3, 12, 1]</s>", 10), (V{3, 1}));
  EXPECT_EQ(parse_generated_ids("1] 2, 4", 10), (V{1}));
  EXPECT_EQ(parse_generated_ids("", 10), V{});
  EXPECT_EQ(parse_generated_ids("abc def ???", 10), V{});
  EXPECT_EQ(parse_generated_ids("id7, 3rd, -2, 99999999999999999999, 4", 10), (V{4}));
  EXPECT_EQ(parse_generated_ids("0,1,2", 2), (V{0, 1}));
  EXPECT_EQ(parse_generated_ids("5", 0), V{});
}

class RerankerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_dir_ = tmp_.file("model");
    if (!write_tiny_model(model_dir_)) {
      GTEST_SKIP() << "needs .cache/tokenizers/llama2 (run scripts/tokenizer-reference/setup.sh)";
    }
    RerankerOptions o;
    o.ranker.num_threads = 1;
    ASSERT_OK(Reranker::open(model_dir_, o, &reranker_));
  }
  testing::TempDir tmp_;
  std::string model_dir_;
  std::unique_ptr<Reranker> reranker_;
};

TEST_F(RerankerTest, AttentionScoresSumToOneAndCoverEveryCandidate) {
  EXPECT_EQ(reranker_->prompt_template(), PromptTemplate::kMistral);
  EXPECT_EQ(reranker_->max_block_length(), 384);
  Reranking r;
  ASSERT_OK(reranker_->rerank("how long do fleas live", sample_docs(), RerankOptions{}, &r));
  ASSERT_EQ(r.ranked.size(), 5u);
  double sum = 0;
  std::set<std::string> ids;
  for (size_t i = 0; i < r.ranked.size(); ++i) {
    const RankedDocument& d = r.ranked[i];
    sum += d.score;
    EXPECT_EQ(d.score, d.attention);
    EXPECT_EQ(d.doc_id, sample_docs()[d.index].id);
    EXPECT_EQ(static_cast<size_t>(d.prompt_id), d.index);  // no shuffle: prompt id = position
    if (i > 0) {
      EXPECT_GE(r.ranked[i - 1].score, d.score);
    }
    ids.insert(d.doc_id);
  }
  EXPECT_NEAR(sum, 1.0, 1e-5);
  EXPECT_EQ(ids.size(), 5u);
  EXPECT_GT(r.prompt_tokens, 0);
  EXPECT_EQ(r.block_length % 16, 0);
}

// Shuffling with a seed shows the documents in some order; passing the candidates already in that
// order without a shuffle builds the identical prompt, so every doc id must get the identical score
// and the indices must map back to each caller's own list.
TEST_F(RerankerTest, PermutedCandidatesMapBack) {
  const std::vector<RerankDocument> docs = sample_docs();
  RerankOptions shuffled;
  shuffled.shuffle_seed = 42;
  Reranking a;
  ASSERT_OK(reranker_->rerank("fleas", docs, shuffled, &a));
  std::vector<RerankDocument> permuted(docs.size());
  bool moved = false;
  for (const RankedDocument& d : a.ranked) {
    permuted[static_cast<size_t>(d.prompt_id)] = docs[d.index];
    moved = moved || static_cast<size_t>(d.prompt_id) != d.index;
  }
  EXPECT_TRUE(moved) << "seed 42 left the order unchanged; pick another seed";
  Reranking b;
  ASSERT_OK(reranker_->rerank("fleas", permuted, RerankOptions{}, &b));
  std::map<std::string, double> score_a, score_b;
  for (const RankedDocument& d : a.ranked) {
    score_a[d.doc_id] = d.score;
    EXPECT_EQ(docs[d.index].id, d.doc_id);
  }
  for (const RankedDocument& d : b.ranked) {
    score_b[d.doc_id] = d.score;
    EXPECT_EQ(permuted[d.index].id, d.doc_id);
  }
  ASSERT_EQ(score_a.size(), 5u);
  for (const auto& [id, s] : score_a) {
    EXPECT_NEAR(score_b.at(id), s, 1e-6) << id;
  }
}

TEST_F(RerankerTest, DecodeModeRanksEveryCandidateWhateverTheModelSays) {
  RerankOptions o;
  o.mode = RerankMode::kDecode;
  Reranking r;
  ASSERT_OK(reranker_->rerank("how long do fleas live", sample_docs(), o, &r));
  ASSERT_EQ(r.ranked.size(), 5u);
  // A random model emits garbage; whatever it parsed comes first, in generated order.
  EXPECT_EQ(r.generated_ids, parse_generated_ids(r.generated_text, 5));
  for (size_t i = 0; i < r.generated_ids.size(); ++i) {
    EXPECT_EQ(r.ranked[i].prompt_id, r.generated_ids[i]);
    EXPECT_TRUE(r.ranked[i].generated);
  }
  std::set<size_t> seen;
  for (size_t i = 0; i < r.ranked.size(); ++i) {
    seen.insert(r.ranked[i].index);
    EXPECT_EQ(r.ranked[i].score, 5.0 - static_cast<double>(i));
    // The rest follow in attention order.
    if (i > r.generated_ids.size()) {
      EXPECT_GE(r.ranked[i - 1].attention, r.ranked[i].attention);
    }
  }
  EXPECT_EQ(seen.size(), 5u);
}

TEST_F(RerankerTest, RejectsNoDocumentsAndBadOptions) {
  Reranking r;
  EXPECT_EQ(reranker_->rerank("q", {}, RerankOptions{}, &r).code(), StatusCode::kInvalidArgument);
  RerankerOptions bad;
  bad.prompt_template = "vicuna";
  std::unique_ptr<Reranker> x;
  EXPECT_EQ(Reranker::open(model_dir_, bad, &x).code(), StatusCode::kInvalidArgument);
  // A tokenizer with more ids than the model's vocabulary is refused at open.
  const std::string small = tmp_.file("small");
  ASSERT_TRUE(write_tiny_model(small, /*vocab=*/1000));
  Status s = Reranker::open(small, RerankerOptions{}, &x);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("the tokenizer has 32000 ids"), std::string::npos) << s.message();
}

// ----------------------------------------------------------------------------------------------
// `blockrank rerank`
// ----------------------------------------------------------------------------------------------

std::string blockrank_binary() {
  const char* env = std::getenv("BLOCKRANK_BINARY_DIR");
  std::error_code ec;
  const std::string build_dir = env != nullptr ? std::string(env)
                                               : fs::read_symlink("/proc/self/exe", ec)
                                                     .parent_path()
                                                     .parent_path()
                                                     .parent_path()
                                                     .parent_path()
                                                     .string();
  return build_dir + "/plugin/cli/blockrank";
}

// Runs `cmd`, returns its exit code; stderr goes to `err_path`.
int run(const std::string& cmd, const std::string& err_path) {
  const int rc = std::system((cmd + " 2>" + err_path).c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

TEST(RerankCommandTest, MalformedInputIsReportedWithFileAndLine) {
  const std::string bin = blockrank_binary();
  if (!fs::exists(bin)) {
    GTEST_SKIP() << "blockrank binary not built (" << bin << ")";
  }
  testing::TempDir tmp;
  const std::string in = tmp.file("in.jsonl");
  const std::string err = tmp.file("err.txt");
  struct Case {
    std::string second_line;
    std::string message;
  };
  const Case cases[] = {
      {"{\"query\": \"q\", \"documents\": [", "not valid JSON"},
      {"{\"documents\": []}", "missing string field 'query'"},
      {"{\"query\": \"q\"}", "missing array field 'documents'"},
      {"{\"query\": \"q\", \"documents\": [{\"text\": \"t\"}]}",
       "documents[0]: missing string field 'doc_id'"},
      {"{\"query\": \"q\", \"documents\": [{\"doc_id\": \"a\"}]}",
       "documents[0]: missing string field 'text'"},
      {"{\"query\": \"q\", \"documents\": [], \"answer_ids\": 3}",
       "field 'answer_ids' must be an array"},
  };
  for (const Case& c : cases) {
    testing::write_text(in,
                        "{\"query\": \"ok\", \"documents\": [{\"doc_id\": \"a\", \"text\": "
                        "\"t\"}]}\n" +
                            c.second_line + "\n");
    // The input is read before the model is loaded, so no model is needed here.
    EXPECT_EQ(run(bin + " rerank --model /nonexistent --input " + in, err), 2) << c.second_line;
    const std::string msg = read_text(err);
    EXPECT_NE(msg.find(in + ":2: " + c.message), std::string::npos) << msg;
  }
  testing::write_text(tmp.file("bad.json"), "[{\"query\": \"q\", \"hits\": [{\"qid\": 1}]}]");
  EXPECT_EQ(run(bin + " rerank --model /nonexistent --input " + tmp.file("bad.json"), err), 2);
  EXPECT_NE(read_text(err).find("entry 0: hits[0]: missing field 'docid'"), std::string::npos)
      << read_text(err);
  EXPECT_EQ(run(bin + " rerank --model /nonexistent --input " + in + " --mode beam", err), 2);
  EXPECT_NE(read_text(err).find("expected \"attention\" or \"decode\""), std::string::npos);
}

TEST(RerankCommandTest, WritesJsonlAndTrecAndReportsMetrics) {
  const std::string bin = blockrank_binary();
  if (!fs::exists(bin)) {
    GTEST_SKIP() << "blockrank binary not built (" << bin << ")";
  }
  testing::TempDir tmp;
  const std::string model = tmp.file("model");
  if (!write_tiny_model(model)) {
    GTEST_SKIP() << "needs .cache/tokenizers/llama2 (run scripts/tokenizer-reference/setup.sh)";
  }
  const std::string in = tmp.file("in.jsonl");
  testing::write_text(
      in,
      "{\"query\": \"fleas\", \"query_id\": \"q1\", \"documents\": [{\"doc_id\": \"a\", "
      "\"title\": \"Fleas\", \"text\": \"live a year\"}, {\"doc_id\": \"b\", \"text\": \"cats\"}, "
      "{\"doc_id\": \"a\", \"text\": \"duplicate\"}], \"answer_ids\": [\"a\"]}\n"
      "\n"
      "{\"query\": \"dogs\", \"query_id\": 2, \"documents\": [\"dogs run\", \"moon\", \"x\"]}\n");
  testing::write_text(tmp.file("qrels.tsv"), "q1 0 a 1\n2 0 1 2\n");
  const std::string err = tmp.file("err.txt");
  const std::string base = bin + " rerank --model " + model + " --input " + in + " --threads 1";
  ASSERT_EQ(run(base + " --output " + tmp.file("out.jsonl"), err), 0) << read_text(err);
  std::istringstream lines(read_text(tmp.file("out.jsonl")));
  std::string line;
  std::vector<std::string> got;
  while (std::getline(lines, line)) {
    got.push_back(line);
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_NE(got[0].find("\"query_id\":\"q1\""), std::string::npos) << got[0];
  EXPECT_EQ(got[0].find("duplicate"), std::string::npos);
  EXPECT_NE(got[1].find("\"query_id\":\"2\""), std::string::npos) << got[1];
  EXPECT_NE(got[1].find("\"doc_id\":\"2\""), std::string::npos) << got[1];  // string documents

  ASSERT_EQ(run(base + " --mode decode --max-new-tokens 4 --qrels " + tmp.file("qrels.tsv") +
                    " --output " + tmp.file("run.trec") + " > " + tmp.file("report.txt"),
                err),
            0)
      << read_text(err);
  const std::string trec = read_text(tmp.file("run.trec"));
  EXPECT_EQ(std::count(trec.begin(), trec.end(), '\n'), 5);  // 2 + 3 documents
  EXPECT_NE(trec.find("q1 Q0 "), std::string::npos);
  const std::string report = read_text(tmp.file("report.txt"));
  EXPECT_NE(report.find("nDCG@10"), std::string::npos) << report;
  EXPECT_NE(report.find("reranked 2 queries"), std::string::npos) << report;

  // Without qrels, answer_ids give P@1.
  ASSERT_EQ(run(base + " --candidates 1 --output " + tmp.file("o2.jsonl") + " > " +
                    tmp.file("report2.txt"),
                err),
            0);
  EXPECT_NE(read_text(tmp.file("report2.txt")).find("P@1 1.0000 (answer_ids, 1 queries)"),
            std::string::npos)
      << read_text(tmp.file("report2.txt"));
}

}  // namespace
}  // namespace blockrank
