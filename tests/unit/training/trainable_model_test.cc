// SPDX-License-Identifier: Apache-2.0
// The trainable model against the inference model: on the HF fixtures (llama: untied head; mistral:
// bf16 shards; qwen2: biases, fp16; qwen3: q/k norms) the padded, batched, differentiable forward
// gives the same LM logits and per-layer document scores as ranker/core's Model (which is itself
// checked against HF transformers), alone and in a batch with a differently shaped example; a
// checkpoint written by save_pretrained (sharded) loads into Model with the same scores; and the
// gradient of the aux loss matches central finite differences on a tiny fp64 model.
#include "training/trainable_model.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <gtest/gtest.h>

#include "ranker/core/model.h"
#include "test_util.h"
#include "training/loss.h"
#include "training/synthetic.h"

#include <nlohmann/json.hpp>

namespace blockrank::training {
namespace {

std::string fixture(const std::string& name) {
  return blockrank::testing::source_dir() + "/tests/data/fixtures/" + name;
}

// The fixture's BlockRank input as a TrainingExample: labels on the last 3 tokens, the signal row
// at the end of the sequence (where inference takes it).
TrainingExample fixture_example(const std::string& name) {
  std::ifstream f(fixture(name) + "/input_blockrank.json");
  nlohmann::json j = nlohmann::json::parse(f);
  TrainingExample e;
  e.query_id = name;
  for (int64_t id : j["input_ids"]) {
    e.input_ids.push_back(static_cast<int32_t>(id));
  }
  for (int64_t b : j["blocks"]) {
    e.block_lengths.push_back(static_cast<int32_t>(b));
  }
  e.labels.assign(e.input_ids.size(), kIgnoreLabel);
  for (size_t i = e.labels.size() - 3; i < e.labels.size(); ++i) {
    e.labels[i] = e.input_ids[i];
  }
  e.signal_row = static_cast<int32_t>(e.input_ids.size()) - 1;
  e.positives = {0};
  return e;
}

// A differently shaped example with the same number of blocks: each block one token shorter
// (where it can be), so it is padded differently inside the batch.
TrainingExample shrink(const TrainingExample& e) {
  TrainingExample s;
  s.query_id = e.query_id + "-short";
  size_t at = 0;
  for (int32_t len : e.block_lengths) {
    const int32_t keep = len > 3 ? len - 1 : len;
    s.input_ids.insert(s.input_ids.end(), e.input_ids.begin() + at,
                       e.input_ids.begin() + at + keep);
    s.block_lengths.push_back(keep);
    at += len;
  }
  s.labels.assign(s.input_ids.size(), kIgnoreLabel);
  s.labels.back() = s.input_ids.back();
  s.signal_row = static_cast<int32_t>(s.input_ids.size()) - 1;
  s.positives = {1};
  return s;
}

struct Reference {
  at::Tensor logits;               // [T, V]
  std::vector<at::Tensor> scores;  // per layer [N]
};

Reference reference(const Model& model, const TrainingExample& e) {
  BlockLayout layout;
  layout.block_lengths.assign(e.block_lengths.begin(), e.block_lengths.end());
  ForwardRequest req;
  req.logits = true;
  req.scores = true;
  auto r =
      model.forward(std::vector<int64_t>(e.input_ids.begin(), e.input_ids.end()), &layout, req);
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return {r->logits, r->scores};
}

double max_abs(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

class FixtureParityTest : public ::testing::TestWithParam<std::string> {};

TEST_P(FixtureParityTest, MatchesInferenceModel) {
  const std::string dir = fixture(GetParam());
  std::unique_ptr<Model> ref;
  ASSERT_OK(Model::load(dir, LoadOptions{}, &ref));
  std::unique_ptr<TrainableModel> model;
  ASSERT_OK(TrainableModel::load(dir, ModelOptions{}, &model));
  const TrainingExample a = fixture_example(GetParam());
  const TrainingExample b = shrink(a);
  const Reference ra = reference(*ref, a), rb = reference(*ref, b);
  const int64_t layers = model->config().num_layers;

  for (bool batched : {false, true}) {
    std::vector<const TrainingExample*> examples = {&a};
    if (batched) {
      examples.push_back(&b);
    }
    Batch batch;
    ASSERT_OK(collate(examples, CollateOptions{}, model->config().vocab_size, at::kCPU, &batch));
    for (int64_t layer = 0; layer < layers; ++layer) {
      ForwardOptions fo;
      fo.aux_layer = layer;
      auto out = model->forward(batch, fo);
      ASSERT_OK(out.status());
      const at::Tensor scores = document_scores(out->signal_logits, batch);
      const double ds = max_abs(scores[0], ra.scores[static_cast<size_t>(layer)]);
      EXPECT_LT(ds, 1e-5) << GetParam() << " layer " << layer << " batched " << batched;
      if (batched) {
        EXPECT_LT(max_abs(scores[1], rb.scores[static_cast<size_t>(layer)]), 1e-5);
      }
      // Label rows: logits at t-1 for each label t (a: the last 3 tokens; b: the last one).
      const int64_t ta = static_cast<int64_t>(a.input_ids.size());
      at::Tensor want = ra.logits.narrow(0, ta - 4, 3);
      if (batched) {
        const int64_t tb = static_cast<int64_t>(b.input_ids.size());
        want = at::cat({want, rb.logits.narrow(0, tb - 2, 1)}, 0);
      }
      const double dl = max_abs(out->label_logits, want);
      EXPECT_LT(dl, 1e-4 * (1.0 + want.abs().max().item<double>()))
          << GetParam() << " logits, batched " << batched;
      if (layer == 0 && batched) {
        std::printf("[ %s ] max |Δscore| %.2e, max |Δlogit| %.2e\n", GetParam().c_str(), ds, dl);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures,
                         FixtureParityTest,
                         ::testing::Values("llama", "mistral", "qwen2", "qwen3"));

TEST(TrainableModelTest, SavedCheckpointLoadsIntoInferenceModel) {
  std::unique_ptr<TrainableModel> model;
  ASSERT_OK(TrainableModel::load(fixture("qwen3"), ModelOptions{}, &model));
  blockrank::testing::TempDir tmp;
  const std::string out = tmp.file("ckpt");
  // 8 KB shards force the sharded layout (model.safetensors.index.json).
  ASSERT_OK(model->save_pretrained(out, at::kFloat, 8 * 1024));
  EXPECT_TRUE(std::ifstream(out + "/model.safetensors.index.json").good());
  std::unique_ptr<Model> ref;
  ASSERT_OK(Model::load(out, LoadOptions{}, &ref));
  EXPECT_EQ(ref->settings().scoring_layer, model->settings().scoring_layer);
  const TrainingExample e = fixture_example("qwen3");
  BlockLayout layout;
  layout.block_lengths.assign(e.block_lengths.begin(), e.block_lengths.end());
  const int64_t layer = model->settings().scoring_layer;
  auto want = ref->score_documents(std::vector<int64_t>(e.input_ids.begin(), e.input_ids.end()),
                                   layout, layer, 2);
  ASSERT_OK(want.status());
  Batch batch;
  ASSERT_OK(collate({&e}, CollateOptions{}, model->config().vocab_size, at::kCPU, &batch));
  ForwardOptions fo;
  fo.lm = false;
  fo.aux_layer = layer;
  auto got = model->forward(batch, fo);
  ASSERT_OK(got.status());
  const at::Tensor s = document_scores(got->signal_logits, batch)[0];
  for (size_t d = 0; d < want->size(); ++d) {
    EXPECT_NEAR(s[static_cast<int64_t>(d)].item<double>(), (*want)[d], 1e-5);
  }
  // And back into a trainable model with identical parameters.
  std::unique_ptr<TrainableModel> again;
  ASSERT_OK(TrainableModel::load(out, ModelOptions{}, &again));
  ASSERT_EQ(again->parameters().size(), model->parameters().size());
  for (size_t i = 0; i < model->parameters().size(); ++i) {
    EXPECT_TRUE(at::equal(again->parameters()[i].tensor, model->parameters()[i].tensor))
        << model->parameters()[i].name;
  }
}

TEST(TrainableModelTest, CollateRejectsInconsistentExamples) {
  TrainingExample e = make_synthetic_example(SyntheticTaskOptions{}, 1, 0);
  Batch batch;
  TrainingExample bad = e;
  bad.signal_row = 0;
  EXPECT_EQ(collate({&bad}, CollateOptions{}, 64, at::kCPU, &batch).code(),
            StatusCode::kInvalidArgument);
  bad = e;
  bad.positives = {9};
  EXPECT_EQ(collate({&bad}, CollateOptions{}, 64, at::kCPU, &batch).code(),
            StatusCode::kInvalidArgument);
  bad = e;
  bad.input_ids[0] = 64;
  EXPECT_EQ(collate({&bad}, CollateOptions{}, 64, at::kCPU, &batch).code(),
            StatusCode::kInvalidArgument);
  bad = e;
  bad.block_lengths.pop_back();
  EXPECT_EQ(collate({&e, &bad}, CollateOptions{}, 64, at::kCPU, &batch).code(),
            StatusCode::kInvalidArgument);
}

// A tiny fp64 model (GQA, q/k norms and biases so every path is differentiated).
std::unique_ptr<TrainableModel> tiny_fp64_model() {
  const std::string cfg = R"({"model_type": "qwen3", "vocab_size": 64, "hidden_size": 16,
    "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": 8, "rope_theta": 10000.0, "tie_word_embeddings": true})";
  auto config = parse_model_config(cfg, "config.json");
  EXPECT_TRUE(config.is_ok());
  BlockRankSettings settings;
  settings.scoring_layer = 1;
  ModelOptions mo;
  mo.dtype = at::kDouble;
  std::unique_ptr<TrainableModel> model;
  EXPECT_TRUE(TrainableModel::create_random(*config, cfg, settings, mo, 7, &model).is_ok());
  // Larger weights than HF's 0.02 init, so attention is far from uniform and gradients are large.
  c10::NoGradGuard no_grad;
  for (const NamedParameter& p : model->parameters()) {
    if (p.tensor.dim() == 2) {
      p.tensor.mul_(25.0 / std::sqrt(static_cast<double>(p.tensor.size(1))));
    }
  }
  return model;
}

TEST(TrainableModelTest, AuxLossGradientMatchesFiniteDifferences) {
  std::unique_ptr<TrainableModel> model = tiny_fp64_model();
  SyntheticTaskOptions so;
  so.num_documents = 3;
  const TrainingExample e0 = make_synthetic_example(so, 3, 0);
  const TrainingExample e1 = make_synthetic_example(so, 3, 1);
  Batch batch;
  ASSERT_OK(collate({&e0, &e1}, CollateOptions{}, 64, at::kCPU, &batch));
  ForwardOptions fo;
  fo.lm = false;
  fo.aux_layer = 1;
  auto aux_loss = [&]() {
    auto out = model->forward(batch, fo);
    EXPECT_TRUE(out.is_ok());
    return loss_terms(*out, batch, 0.05).aux_sum;
  };
  at::Tensor loss = aux_loss();
  loss.backward();
  // Layer 1's Q/K (directly in the logits), layer 0's value and MLP (through the residual stream),
  // the q/k norms and the embedding: a few entries of each against central differences.
  const std::vector<std::string> names = {"model.layers.1.self_attn.q_proj.weight",
                                          "model.layers.1.self_attn.k_proj.weight",
                                          "model.layers.1.self_attn.k_norm.weight",
                                          "model.layers.0.self_attn.v_proj.weight",
                                          "model.layers.0.mlp.down_proj.weight",
                                          "model.layers.0.input_layernorm.weight",
                                          "model.embed_tokens.weight"};
  int checked = 0;
  for (const NamedParameter& p : model->parameters()) {
    if (std::find(names.begin(), names.end(), p.name) == names.end()) {
      continue;
    }
    const at::Tensor grad = p.tensor.grad().clone();
    at::Tensor flat = p.tensor.view({-1});
    at::Tensor gflat = grad.view({-1});
    // The 3 entries with the largest analytic gradient and 2 fixed ones.
    at::Tensor top = std::get<1>(gflat.abs().topk(3));
    std::vector<int64_t> entries = {top[0].item<int64_t>(), top[1].item<int64_t>(),
                                    top[2].item<int64_t>(), 0, flat.numel() / 2};
    for (int64_t idx : entries) {
      const double h = 1e-6;
      double plus = 0, minus = 0;
      {
        c10::NoGradGuard no_grad;
        const double orig = flat[idx].item<double>();
        flat[idx].fill_(orig + h);
        plus = aux_loss().item<double>();
        flat[idx].fill_(orig - h);
        minus = aux_loss().item<double>();
        flat[idx].fill_(orig);
      }
      const double numeric = (plus - minus) / (2 * h);
      const double analytic = gflat[idx].item<double>();
      EXPECT_NEAR(analytic, numeric, 1e-6 + 1e-5 * std::abs(numeric))
          << p.name << "[" << idx << "]";
      ++checked;
    }
  }
  EXPECT_EQ(checked, 35);
  EXPECT_GT(loss.item<double>(), 0.0);
}

}  // namespace
}  // namespace blockrank::training
