// SPDX-License-Identifier: Apache-2.0
// The comparison shared by the CPU (fp32) and GPU (bf16) parity tests: load a fixture of
// tests/data/fixtures with the given device/dtype, run the forward pass the HF reference ran, and
// compare logits, every hidden state, every attention map (exact zeros where HF masks) and, in
// BlockRank mode, the document scores of every layer, plus the fast scoring path against the full
// forward. Tolerances come from the caller, which explains them.
#ifndef BLOCKRANK_TESTS_UNIT_RANKER_PARITY_CHECK_H_
#define BLOCKRANK_TESTS_UNIT_RANKER_PARITY_CHECK_H_

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "ranker/core/model.h"
#include "ranker/core/safetensors.h"
#include "test_util.h"

#include <nlohmann/json.hpp>

namespace blockrank::testing {

struct ParityCase {
  std::string model;
  std::string mode;  // "causal" or "blockrank"
};

struct ParityTolerance {
  double rel_l2 = 1e-4;          ///< logits, hidden states, attention maps
  double score_abs = 1e-5;       ///< document scores vs HF
  double fast_score_abs = 1e-6;  ///< score_documents() vs the full forward's scores
  const char* label = "";
};

inline double parity_rel_l2(const at::Tensor& got, const at::Tensor& want) {
  const at::Tensor g = got.to(at::kCPU).to(at::kDouble);
  const at::Tensor w = want.to(at::kCPU).to(at::kDouble);
  return (g - w).norm().item<double>() / std::max(w.norm().item<double>(), 1e-30);
}

inline void check_parity(const ParityCase& c, const LoadOptions& load, const ParityTolerance& tol) {
  const std::string dir = source_dir() + "/tests/data/fixtures/" + c.model;
  std::unique_ptr<Model> model;
  ASSERT_OK(Model::load(dir, load, &model));
  std::ifstream f(dir + "/input_" + c.mode + ".json");
  ASSERT_TRUE(f.good());
  nlohmann::json in;
  f >> in;
  const std::vector<int64_t> ids = in["input_ids"].get<std::vector<int64_t>>();
  BlockLayout layout;
  const bool blockrank = c.mode == "blockrank";
  if (blockrank) {
    layout.block_lengths = in["blocks"].get<std::vector<int64_t>>();
  }
  ForwardRequest req;
  req.logits = req.hidden = req.attention = true;
  req.scores = blockrank;
  auto r = model->forward(ids, blockrank ? &layout : nullptr, req);
  ASSERT_OK(r.status());
  std::shared_ptr<SafetensorsFile> expected;
  ASSERT_OK(SafetensorsFile::open(dir + "/expected_" + c.mode + ".safetensors", &expected));
  auto want = [&](const std::string& name) {
    auto v = expected->view(name);
    EXPECT_TRUE(v.is_ok()) << name;
    return v.is_ok() ? *v : at::Tensor();
  };
  const int64_t layers = model->config().num_layers;
  const double worst_logits = parity_rel_l2(r->logits, want("logits"));
  EXPECT_LE(worst_logits, tol.rel_l2) << "logits";
  double worst_hidden = 0, worst_attn = 0, worst_score = 0;
  ASSERT_EQ(static_cast<int64_t>(r->hidden.size()), layers + 1);
  for (int64_t l = 0; l <= layers; ++l) {
    const double e = parity_rel_l2(r->hidden[l], want("hidden." + std::to_string(l)));
    EXPECT_LE(e, tol.rel_l2) << "hidden." << l;
    worst_hidden = std::max(worst_hidden, e);
  }
  ASSERT_EQ(static_cast<int64_t>(r->attention.size()), layers);
  for (int64_t l = 0; l < layers; ++l) {
    const at::Tensor w = want("attn." + std::to_string(l));
    const at::Tensor g = r->attention[l].to(at::kCPU).to(at::kFloat);
    const double e = parity_rel_l2(g, w);
    EXPECT_LE(e, tol.rel_l2) << "attn." << l;
    // Masked entries must be exact zeros on both sides.
    EXPECT_TRUE(g.masked_select(w == 0).abs().max().item<float>() == 0.0f) << "attn." << l;
    worst_attn = std::max(worst_attn, e);
  }
  if (blockrank) {
    ASSERT_EQ(static_cast<int64_t>(r->scores.size()), layers);
    for (int64_t l = 0; l < layers; ++l) {
      const at::Tensor s = r->scores[l].to(at::kCPU).to(at::kFloat);
      const double e = (s - want("scores." + std::to_string(l))).abs().max().item<float>();
      EXPECT_LE(e, tol.score_abs) << "scores." << l;
      worst_score = std::max(worst_score, e);
      // The minimal attention-inference path gives the same scores as the full forward.
      auto fast = model->score_documents(ids, layout, l, 2);
      ASSERT_OK(fast.status());
      for (size_t d = 0; d < fast->size(); ++d) {
        EXPECT_NEAR((*fast)[d], s[static_cast<int64_t>(d)].item<float>(), tol.fast_score_abs);
      }
    }
    // Every row of the query block as a signal row: on CUDA more (head, row) pairs per KV group
    // than the scoring kernel's CTA holds, so its row chunks must add up to the full forward's.
    ForwardRequest all_rows;
    all_rows.scores = true;
    all_rows.signal_rows = layout.block_lengths.back();
    auto wide = model->forward(ids, &layout, all_rows);
    ASSERT_OK(wide.status());
    for (int64_t l = 0; l < layers; ++l) {
      auto fast = model->score_documents(ids, layout, l, all_rows.signal_rows);
      ASSERT_OK(fast.status());
      const at::Tensor s = wide->scores[l].to(at::kCPU).to(at::kFloat);
      for (size_t d = 0; d < fast->size(); ++d) {
        EXPECT_NEAR((*fast)[d], s[static_cast<int64_t>(d)].item<float>(), tol.fast_score_abs)
            << "scores." << l << " with " << all_rows.signal_rows << " signal rows";
      }
    }
  }
  std::printf(
      "[parity%s] %-8s %-9s rel-L2 logits %.2e hidden %.2e attn %.2e | scores max|diff| %.2e\n",
      tol.label, c.model.c_str(), c.mode.c_str(), worst_logits, worst_hidden, worst_attn,
      worst_score);
}

inline auto all_parity_cases() {
  return ::testing::Values(ParityCase{"llama", "causal"}, ParityCase{"llama", "blockrank"},
                           ParityCase{"mistral", "causal"}, ParityCase{"mistral", "blockrank"},
                           ParityCase{"qwen2", "causal"}, ParityCase{"qwen2", "blockrank"},
                           ParityCase{"qwen3", "causal"}, ParityCase{"qwen3", "blockrank"});
}

inline std::string parity_case_name(const ::testing::TestParamInfo<ParityCase>& info) {
  return info.param.model + "_" + info.param.mode;
}

}  // namespace blockrank::testing

#endif  // BLOCKRANK_TESTS_UNIT_RANKER_PARITY_CHECK_H_
