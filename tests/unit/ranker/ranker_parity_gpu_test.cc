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
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "parity_check.h"

namespace blockrank {
namespace {

class GpuParityTest : public ::testing::TestWithParam<testing::ParityCase> {};

TEST_P(GpuParityTest, Bf16MatchesHuggingFace) {
  if (!at::hasCUDA()) {
    GTEST_SKIP() << "no CUDA device (LibTorch without CUDA or no GPU)";
  }
  LoadOptions load;
  load.device = c10::Device(c10::kCUDA, 0);
  load.dtype = c10::kBFloat16;
  testing::ParityTolerance tol;
  tol.rel_l2 = 3e-2;
  tol.score_abs = 1e-2;
  tol.fast_score_abs = 1e-2;  // the CUDA scoring kernels vs the ATen bf16 forward
  tol.label = " gpu bf16";
  testing::check_parity(GetParam(), load, tol);
}

INSTANTIATE_TEST_SUITE_P(Fixtures,
                         GpuParityTest,
                         testing::all_parity_cases(),
                         testing::parity_case_name);

}  // namespace
}  // namespace blockrank
