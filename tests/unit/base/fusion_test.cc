// SPDX-License-Identifier: Apache-2.0
#include "blockrank/fusion.h"

#include <cmath>
#include <limits>

#include <gtest/gtest.h>

namespace blockrank {
namespace {

TEST(FusionTest, ParseAndName) {
  auto rerank = parse_fusion("rerank");
  ASSERT_TRUE(rerank.is_ok());
  EXPECT_EQ(rerank->method, FusionMethod::kRerank);
  auto plain = parse_fusion("interpolate");
  ASSERT_TRUE(plain.is_ok());
  EXPECT_EQ(plain->method, FusionMethod::kInterpolate);
  EXPECT_DOUBLE_EQ(plain->alpha, 0.5);
  auto weighted = parse_fusion("interpolate:0.3");
  ASSERT_TRUE(weighted.is_ok());
  EXPECT_DOUBLE_EQ(weighted->alpha, 0.3);
  EXPECT_EQ(fusion_name(*weighted), "interpolate:0.3");
  EXPECT_EQ(fusion_name(*rerank), "rerank");
  for (const char* bad : {"", "bm25", "interpolate:", "interpolate:x", "interpolate:1.5",
                          "interpolate:-0.1", "interpolate0.3", "interpolate:nan"}) {
    EXPECT_FALSE(parse_fusion(bad).is_ok()) << bad;
  }
}

TEST(FusionTest, InterpolatesNormalisedScores) {
  const std::vector<double> bm25 = {10, 20, 30};
  const std::vector<double> model = {0.5, 0.3, 0.2};
  FusionOptions options;
  auto pure = fuse_scores(bm25, model, options);
  ASSERT_TRUE(pure.is_ok());
  EXPECT_EQ(*pure, model);
  options.method = FusionMethod::kInterpolate;
  options.alpha = 0.25;
  auto fused = fuse_scores(bm25, model, options);
  ASSERT_TRUE(fused.is_ok());
  // bm25 -> {0, 0.5, 1}; model -> {1, 1/3, 0}.
  EXPECT_NEAR((*fused)[0], 0.75, 1e-12);
  EXPECT_NEAR((*fused)[1], 0.25 * 0.5 + 0.75 / 3, 1e-12);
  EXPECT_NEAR((*fused)[2], 0.25, 1e-12);
  options.alpha = 1;
  fused = fuse_scores(bm25, model, options);
  ASSERT_TRUE(fused.is_ok());
  EXPECT_LT((*fused)[0], (*fused)[2]);  // BM25 order
  // A constant list normalises to 0 instead of dividing by zero.
  fused = fuse_scores({1, 1}, {2, 2}, options);
  ASSERT_TRUE(fused.is_ok());
  EXPECT_EQ(*fused, (std::vector<double>{0, 0}));
}

TEST(FusionTest, RejectsMismatchedOrNonFiniteInput) {
  FusionOptions options;
  EXPECT_FALSE(fuse_scores({1, 2}, {1}, options).is_ok());
  EXPECT_FALSE(fuse_scores({1, std::nan("")}, {1, 2}, options).is_ok());
  EXPECT_FALSE(fuse_scores({1, 2}, {1, std::numeric_limits<double>::infinity()}, options).is_ok());
}

}  // namespace
}  // namespace blockrank
