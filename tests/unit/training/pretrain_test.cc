// SPDX-License-Identifier: Apache-2.0
// Causal-LM pretraining data (training/pretrain.h): the corpus stream and its chunks (with the
// llama2 reference vocabulary; skips without it), file:line errors, the three-block example layout,
// and the loop learning a periodic token stream from random weights (the held-out LM loss falls far
// below ln V) with the contrastive term identically 0.
#include "training/pretrain.h"

#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "llama2_tokenizer.h"
#include "test_util.h"
#include "training/trainable_model.h"
#include "training/trainer.h"

namespace blockrank::training {
namespace {

TEST(PretrainTest, ChunksAreTheDocumentStreamWithEosSeparators) {
  std::unique_ptr<Tokenizer> tok = llama2_tokenizer();
  if (tok == nullptr) {
    GTEST_SKIP()
        << "needs .cache/tokenizers/llama2/tokenizer.json (scripts/tokenizer-reference/setup.sh)";
  }
  blockrank::testing::TempDir tmp;
  const std::string path = tmp.file("corpus.jsonl");
  blockrank::testing::write_text(
      path,
      "{\"_id\": \"a\", \"title\": \"Fleas\", \"text\": \"Fleas live for "
      "months.\"}\n"
      "{\"_id\": \"b\", \"text\": \"Cats sleep.\"}\n"
      "\n"
      "{\"_id\": \"c\", \"title\": \"\", \"text\": \"\"}\n"
      "{\"_id\": \"d\", \"title\": null, \"text\": \"Dogs bark at night.\"}\n");
  const int32_t eos = *tok->eos_id();
  std::vector<int32_t> stream;
  for (const char* doc : {"Fleas Fleas live for months.", "Cats sleep.", "Dogs bark at night."}) {
    const std::vector<int32_t> ids = encode(*tok, doc);
    stream.insert(stream.end(), ids.begin(), ids.end());
    stream.push_back(eos);
  }
  TextChunkOptions o;
  o.chunk_tokens = 4;
  std::vector<std::vector<int32_t>> chunks;
  TextChunkStats st;
  ASSERT_OK(read_text_chunks(path, *tok, o, &chunks, &st));
  EXPECT_EQ(st.documents, 3);
  EXPECT_EQ(st.empty, 1);
  EXPECT_EQ(st.tokens, static_cast<int64_t>(stream.size()));
  ASSERT_EQ(chunks.size(), stream.size() / 4);  // the short tail is dropped
  std::vector<int32_t> joined;
  for (const auto& c : chunks) {
    ASSERT_EQ(c.size(), 4u);
    joined.insert(joined.end(), c.begin(), c.end());
  }
  EXPECT_EQ(joined, std::vector<int32_t>(stream.begin(), stream.begin() + joined.size()));

  // Errors name the file, the line and the field.
  blockrank::testing::write_text(path, "{\"text\": \"ok\"}\n[1, 2]\n");
  Status s = read_text_chunks(path, *tok, o, &chunks, &st);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("corpus.jsonl:2"), std::string::npos) << s.message();
  blockrank::testing::write_text(path, "{\"text\": 5}\n");
  s = read_text_chunks(path, *tok, o, &chunks, &st);
  EXPECT_NE(s.message().find("corpus.jsonl:1: field 'text'"), std::string::npos) << s.message();
  EXPECT_EQ(read_text_chunks(tmp.file("missing.jsonl"), *tok, o, &chunks, &st).code(),
            StatusCode::kNotFound);
}

TEST(PretrainTest, ExampleFillsTheThreeBlocksWithLabelsOnEveryTokenButBos) {
  const TrainingExample e = make_lm_example({10, 11, 12}, {13, 14}, {15, 16, 17, 18}, 1);
  EXPECT_EQ(e.input_ids, (std::vector<int32_t>{1, 10, 11, 12, 13, 14, 15, 16, 17, 18}));
  EXPECT_EQ(e.block_lengths, (std::vector<int32_t>{4, 2, 4}));
  EXPECT_EQ(e.labels, (std::vector<int32_t>{kIgnoreLabel, 10, 11, 12, 13, 14, 15, 16, 17, 18}));
  EXPECT_EQ(e.positives, (std::vector<int32_t>{0}));
  EXPECT_EQ(e.signal_row, 9);
  Batch b;
  ASSERT_OK(collate({&e}, CollateOptions(), 64, c10::Device(c10::kCPU), &b));
  EXPECT_EQ(b.label_rows.size(0), 9);  // every token after the BOS is a target
  EXPECT_EQ(b.num_blocks, 3);
}

// A periodic stream (period 7 over ids 3..9) cut into 8-token chunks: learnable from the previous
// token alone, so a tiny model must get far below the uniform ln 64.
class PeriodicSource final : public ExampleSource {
 public:
  explicit PeriodicSource(int64_t n, int64_t offset) : n_(n), offset_(offset) {}
  int64_t size() const override { return n_; }
  Status get(int64_t index, TrainingExample* out) const override {
    std::vector<int32_t> c[3];
    int64_t t = (offset_ + index) * 24;
    for (auto& chunk : c) {
      for (int k = 0; k < 8; ++k, ++t) {
        chunk.push_back(static_cast<int32_t>(3 + t % 7));
      }
    }
    *out = make_lm_example(c[0], c[1], c[2], 1);
    return Status::ok();
  }

 private:
  int64_t n_, offset_;
};

TEST(PretrainTest, LoopLearnsAPeriodicStreamFromRandomWeights) {
  blockrank::testing::TempDir tmp;
  blockrank::testing::write_text(
      tmp.file("config.json"),
      R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 64,
  "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
  "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0})");
  TrainConfig c;
  c.model_config = tmp.file("config.json");
  c.output_dir = tmp.file("out");
  c.pretrain_file = "unused-by-train()";
  c.aux_layer = 1;
  c.aux_weight = 0.0;
  c.batch_size = 8;
  c.lr = 3e-3;
  c.warmup_steps = 5;
  c.max_steps = 40;
  c.log_interval = 10;
  c.eval_interval = 40;
  c.save_interval = 0;
  c.save_final = false;
  std::unique_ptr<TrainableModel> model;
  ASSERT_OK(create_model(c, &model));
  PeriodicSource train_data(512, 0), eval_data(32, 10000);
  EvalStats before;
  ASSERT_OK(evaluate(c, *model, eval_data, &before));
  std::vector<EvalStats> evals;
  std::vector<StepStats> steps;
  TrainHooks hooks;
  hooks.on_step = [&](const StepStats& s) { steps.push_back(s); };
  hooks.on_eval = [&](const EvalStats& e) { evals.push_back(e); };
  TrainResult result;
  ASSERT_OK(train(c, *model, train_data, &eval_data, "", hooks, &result));
  ASSERT_EQ(evals.size(), 1u);
  std::printf("held-out LM loss %.3f -> %.3f (ln 64 = %.3f); aux %.3g\n", before.lm_loss,
              evals[0].lm_loss, std::log(64.0), steps.back().aux_loss);
  EXPECT_GT(before.lm_loss, 3.5);
  EXPECT_LT(evals[0].lm_loss, 1.0);
  EXPECT_EQ(steps.back().aux_loss, 0.0);  // one candidate: the contrastive term is exactly 0
}

TEST(PretrainTest, ConfigExcludesFineTuningData) {
  TrainConfig c;
  const std::string both =
      R"({"model_config": "c.json", "output_dir": "o", "pretrain_file": "p.jsonl",
    "train_file": "t.jsonl"})";
  Status s = parse_train_config(both, "train.json", &c);
  if (s.is_ok()) {
    s = c.validate();
  }
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("'pretrain_file'"), std::string::npos) << s.message();
  TrainConfig ok;
  ASSERT_OK(parse_train_config(
      R"({"model_config": "c.json", "output_dir": "o", "pretrain_file": "p.jsonl"})", "train.json",
      &ok));
  EXPECT_OK(ok.validate());
  EXPECT_EQ(ok.pretrain_chunk_tokens, 256);
}

}  // namespace
}  // namespace blockrank::training
