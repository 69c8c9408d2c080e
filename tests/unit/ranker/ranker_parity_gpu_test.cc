// SPDX-License-Identifier: Apache-2.0
// Parity with Hugging Face transformers on the GPU in bf16: the same fixtures as
// ranker_parity_test.cc (HF eager attention, fp32 reference computed from the same weights), loaded
// on CUDA with bf16 compute. Skips without a CUDA device (label gpu: CI does not run it).
//
// Tolerance: HF transformers itself, running these fixtures in bf16 on the H200 (eager attention,
// same masks; scripts/fixtures/hf_bf16_drift.py), lands 1.0e-2 .. 2.5e-2 relative L2 from its own
// fp32 outputs (llama logits 2.0e-2, qwen2 attention 2.45e-2: tiny random models with fp32/fp16
// weights rounded to bf16, and a bf16 residual stream). Our bf16 CUDA path measured 1.0e-2 ..
// 2.4e-2 on the same fixtures (2026-11-29), i.e. the same drift as the reference implementation.
// We therefore require <= 3e-2 for logits, hidden states and attention maps, exact zeros where HF
// masks, and document scores (which sum to 1) within 1e-2 absolute (measured <= 4.1e-3).
#include <cmath>
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

namespace blockrank {
namespace {

double rel_l2(const at::Tensor& got, const at::Tensor& want) {
  const at::Tensor g = got.to(at::kCPU).to(at::kDouble);
  const at::Tensor w = want.to(at::kCPU).to(at::kDouble);
  return (g - w).norm().item<double>() / std::max(w.norm().item<double>(), 1e-30);
}

struct Case {
  std::string model;
  std::string mode;
};

class GpuParityTest : public ::testing::TestWithParam<Case> {};

TEST_P(GpuParityTest, Bf16MatchesHuggingFace) {
  if (!at::hasCUDA()) {
    GTEST_SKIP() << "no CUDA device (LibTorch without CUDA or no GPU)";
  }
  const Case c = GetParam();
  const std::string dir = testing::source_dir() + "/tests/data/fixtures/" + c.model;
  LoadOptions lo;
  lo.device = c10::Device(c10::kCUDA, 0);
  lo.dtype = c10::kBFloat16;
  std::unique_ptr<Model> model;
  ASSERT_OK(Model::load(dir, lo, &model));
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
  const double e_logits = rel_l2(r->logits, want("logits"));
  EXPECT_LE(e_logits, 3e-2) << "logits";
  double worst_hidden = 0, worst_attn = 0, worst_score = 0;
  for (int64_t l = 0; l <= layers; ++l) {
    const double e = rel_l2(r->hidden[l], want("hidden." + std::to_string(l)));
    EXPECT_LE(e, 3e-2) << "hidden." << l;
    worst_hidden = std::max(worst_hidden, e);
  }
  for (int64_t l = 0; l < layers; ++l) {
    const at::Tensor w = want("attn." + std::to_string(l));
    const at::Tensor g = r->attention[l].to(at::kCPU).to(at::kFloat);
    const double e = rel_l2(g, w);
    EXPECT_LE(e, 3e-2) << "attn." << l;
    EXPECT_TRUE(g.masked_select(w == 0).abs().max().item<float>() == 0.0f) << "attn." << l;
    worst_attn = std::max(worst_attn, e);
  }
  if (blockrank) {
    for (int64_t l = 0; l < layers; ++l) {
      const at::Tensor s = r->scores[l].to(at::kCPU).to(at::kFloat);
      const double e = (s - want("scores." + std::to_string(l))).abs().max().item<float>();
      EXPECT_LE(e, 1e-2) << "scores." << l;
      worst_score = std::max(worst_score, e);
      // The attention-inference path (CUDA kernels where the head dim allows) agrees too.
      auto fast = model->score_documents(ids, layout, l, 2);
      ASSERT_OK(fast.status());
      for (size_t d = 0; d < fast->size(); ++d) {
        EXPECT_NEAR((*fast)[d], s[static_cast<int64_t>(d)].item<float>(), 1e-2);
      }
    }
  }
  std::printf(
      "[gpu-parity bf16] %-8s %-9s rel-L2 logits %.2e hidden %.2e attn %.2e | scores %.2e\n",
      c.model.c_str(), c.mode.c_str(), e_logits, worst_hidden, worst_attn, worst_score);
}

INSTANTIATE_TEST_SUITE_P(Fixtures,
                         GpuParityTest,
                         ::testing::Values(Case{"llama", "causal"},
                                           Case{"llama", "blockrank"},
                                           Case{"mistral", "causal"},
                                           Case{"mistral", "blockrank"},
                                           Case{"qwen2", "causal"},
                                           Case{"qwen2", "blockrank"},
                                           Case{"qwen3", "causal"},
                                           Case{"qwen3", "blockrank"}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.model + "_" + info.param.mode;
                         });

}  // namespace
}  // namespace blockrank
