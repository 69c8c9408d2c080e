// SPDX-License-Identifier: Apache-2.0
// Instruction-prefix KV cache on CUDA in bf16 (label gpu; skips without a device): a cached past
// of block 0 (whole, or only the block-aligned instruction part) through the fused layer loop
// (Qwen2-style, head_dim 64; Mistral-style, head_dim 128) and through the ATen fallback (Qwen3's
// q/k norms keep the fused loop off), plus the PrefixCache on the device: memory-tier values are
// device tensors, and a disk hit after reopening is uploaded through the memory allocator.
//
// Tolerance: with a cached past the QKV GEMM runs over T - c rows instead of T, so cuBLAS may pick
// another kernel and the bf16 residual stream rounds differently; the scores (a distribution over
// the documents) must stay within 1e-2 absolute of the uncached ones, the bound the bf16 parity
// test (ranker_parity_gpu_test.cc) uses for the CUDA scoring path against the ATen bf16 forward.
// Cold runs (nothing cached) compute exactly what an uncached run computes and must be equal.
#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "ranker/core/model.h"
#include "ranker/core/prefix_cache.h"
#include "test_util.h"

namespace blockrank {
namespace {

constexpr double kScoreTolerance = 1e-2;

struct Case {
  const char* name;
  Architecture arch;
  int64_t hidden, ffn, heads, kv_heads, head_dim;
  bool qkv_bias, qk_norm;
};

ModelConfig config_of(const Case& c) {
  ModelConfig m;
  m.arch = c.arch;
  m.vocab_size = 2000;
  m.hidden_size = c.hidden;
  m.intermediate_size = c.ffn;
  m.num_layers = 4;
  m.num_heads = c.heads;
  m.num_kv_heads = c.kv_heads;
  m.head_dim = c.head_dim;
  m.qkv_bias = c.qkv_bias;
  m.qk_norm = c.qk_norm;
  m.rope_theta = 1e6;
  return m;
}

void prompt(int variant, std::vector<int64_t>* ids, BlockLayout* layout) {
  ids->clear();
  // Block 0: 70 instruction tokens + 13 query tokens (tiles of 64 rows straddle both cut points).
  layout->block_lengths = {83};
  for (int i = 0; i < 70; ++i) {
    ids->push_back((i * 31 + 7) % 2000);
  }
  for (int i = 0; i < 13; ++i) {
    ids->push_back((i * 17 + variant * 101 + 3) % 2000);
  }
  for (int d = 0; d < 12; ++d) {
    const int64_t len = 40 + (d * 23) % 90;
    for (int64_t i = 0; i < len; ++i) {
      ids->push_back((d * 211 + i * 29 + 5) % 2000);
    }
    layout->block_lengths.push_back(len);
  }
  for (int i = 0; i < 24; ++i) {
    ids->push_back((i * 43 + variant * 7 + 1) % 2000);
  }
  layout->block_lengths.push_back(24);
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]));
  }
  return m;
}

class KvPrefixGpuTest : public ::testing::TestWithParam<Case> {};

TEST_P(KvPrefixGpuTest, CachedPastScoresWithinBf16Rounding) {
  if (!at::hasCUDA()) {
    GTEST_SKIP() << "no CUDA device (LibTorch without CUDA or no GPU)";
  }
  const Case& c = GetParam();
  LoadOptions lo;
  lo.device = c10::Device(c10::kCUDA, 0);
  lo.dtype = at::kBFloat16;
  BlockRankSettings settings;
  settings.scoring_layer = 3;
  std::unique_ptr<Model> m;
  ASSERT_OK(Model::create_random(config_of(c), settings, lo, 9, &m));
  EXPECT_EQ(m->uses_fused_layers(), !c.qk_norm) << c.name;
  std::vector<int64_t> ids;
  BlockLayout layout;
  prompt(0, &ids, &layout);
  const int64_t split = 64;

  PrefixKv plain;
  plain.split = split;
  auto uncached = m->score_documents(ids, layout, 3, 2, &plain);
  ASSERT_OK(uncached.status());
  PrefixKv cold = plain;
  at::Tensor present;
  cold.present = &present;
  auto cold_scores = m->score_documents(ids, layout, 3, 2, &cold);
  ASSERT_OK(cold_scores.status());
  ASSERT_TRUE(present.defined());
  EXPECT_TRUE(present.is_cuda());
  EXPECT_EQ(present.sizes().vec(), (std::vector<int64_t>{3, 2, c.kv_heads, 83, c.head_dim}));
  EXPECT_LE(max_abs_diff(*cold_scores, *uncached), c.qk_norm ? kScoreTolerance : 0.0) << c.name;

  for (int64_t cached : {split, int64_t{83}}) {
    PrefixKv warm = plain;
    warm.past = present.narrow(3, 0, cached);
    auto s = m->score_documents(ids, layout, 3, 2, &warm);
    ASSERT_OK(s.status());
    const double diff = max_abs_diff(*s, *uncached);
    EXPECT_LE(diff, kScoreTolerance) << c.name << " cached " << cached;
    std::printf("%s: cached %lld of 83 block-0 tokens: max |score diff| %.3g\n", c.name,
                static_cast<long long>(cached), diff);
  }

  // Through the PrefixCache: memory tier on the device, then a disk hit after reopening.
  testing::TempDir dir;
  const KvModelFingerprint fp =
      internal::make_kv_fingerprint(*m, 3, "test", m->uses_fused_layers());
  KvCacheOptions ko;
  ko.disk_path = dir.file("kv");
  {
    std::unique_ptr<internal::PrefixCache> cache;
    ASSERT_OK(internal::PrefixCache::open(ko, fp, lo.device, lo.dtype, 4, &cache));
    const std::vector<int32_t> tokens(ids.begin(), ids.begin() + 83);
    cache->put_async(tokens, present);
    cache->flush();
    internal::PrefixLookup hit;
    ASSERT_OK(cache->lookup(tokens, split, &hit));
    ASSERT_TRUE(hit.past.defined());
    EXPECT_TRUE(hit.past.is_cuda());
    EXPECT_EQ(cache->store_stats().memory_hits, 1u);
  }
  std::unique_ptr<internal::PrefixCache> reopened;
  ASSERT_OK(internal::PrefixCache::open(ko, fp, lo.device, lo.dtype, 4, &reopened));
  std::vector<int64_t> ids2;
  BlockLayout layout2;
  prompt(1, &ids2, &layout2);  // a new query: the 64-token instruction part is not stored here
  internal::PrefixLookup hit;
  ASSERT_OK(reopened->lookup(std::vector<int32_t>(ids.begin(), ids.begin() + 83), split, &hit));
  EXPECT_EQ(reopened->store_stats().disk_hits, 1u);
  ASSERT_TRUE(hit.past.defined());
  EXPECT_TRUE(hit.past.is_cuda());
  EXPECT_EQ(hit.past.size(3), 83);
  PrefixKv from_disk = plain;
  from_disk.past = hit.past;
  auto s = m->score_documents(ids, layout, 3, 2, &from_disk);
  ASSERT_OK(s.status());
  EXPECT_LE(max_abs_diff(*s, *uncached), kScoreTolerance);
  // The bytes survived the round trip: the uploaded past equals what was stored.
  EXPECT_TRUE(at::equal(hit.past, present));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes,
    KvPrefixGpuTest,
    ::testing::Values(
        Case{"qwen2_fused", Architecture::kQwen2, 256, 512, 4, 2, 64, true, false},
        Case{"mistral_fused", Architecture::kMistral, 512, 1024, 8, 2, 128, false, false},
        Case{"qwen3_aten_fallback", Architecture::kQwen3, 256, 512, 4, 2, 64, false, true}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace blockrank
