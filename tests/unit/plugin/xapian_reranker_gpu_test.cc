// SPDX-License-Identifier: Apache-2.0
// The Xapian plugin on CUDA (label gpu): the tiny random model reranks the sample queries on
// "cuda" in float32 and must agree with the CPU: the same scores within 1e-4 (float32 kernels
// against float32 CPU code; the scores are attention masses in [0, 1]) and the same order wherever
// the CPU scores of neighbours differ by more than 3e-4 (room for both error bounds). Skips without
// CUDA or without .cache/tokenizers.
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <xapian.h>

#include "blockrank/xapian_reranker.h"
#include "test_util.h"
#include "xapian_test_util.h"

namespace blockrank {
namespace {

TEST(XapianRerankerGpuTest, CudaAgreesWithCpu) {
  if (::access(testing::tokenizer_path().c_str(), R_OK) != 0) {
    GTEST_SKIP() << "needs .cache/tokenizers (run scripts/tokenizer-reference/setup.sh)";
  }
  testing::TempDir dir;
  ASSERT_TRUE(testing::make_tiny_model(dir.file("model")));
  testing::write_index(dir.file("db"), testing::sample_corpus());
  XapianRerankerOptions options;
  options.dtype = "float32";
  std::unique_ptr<XapianReranker> cpu;
  ASSERT_OK(XapianReranker::open(dir.file("model"), options, &cpu));
  options.device = "cuda";
  std::unique_ptr<XapianReranker> gpu;
  const Status st = XapianReranker::open(dir.file("model"), options, &gpu);
  if (!st.is_ok()) {
    GTEST_SKIP() << "no usable CUDA device: " << st.to_string();
  }
  const Xapian::Database db(dir.file("db"));
  for (const std::string& query : testing::sample_queries()) {
    SCOPED_TRACE(query);
    const Xapian::MSet mset = testing::make_enquire(db, query).get_mset(0, 10);
    std::vector<XapianRerankedHit> on_cpu;
    std::vector<XapianRerankedHit> on_gpu;
    ASSERT_OK(cpu->rerank(query, mset, &on_cpu));
    ASSERT_OK(gpu->rerank(query, mset, &on_gpu));
    ASSERT_EQ(on_cpu.size(), on_gpu.size());
    std::map<Xapian::docid, double> gpu_score;
    for (const XapianRerankedHit& h : on_gpu) {
      gpu_score[h.docid] = h.rerank_score;
    }
    for (size_t i = 0; i < on_cpu.size(); ++i) {
      EXPECT_NEAR(gpu_score[on_cpu[i].docid], on_cpu[i].rerank_score, 1e-4);
      const bool separated =
          (i == 0 || on_cpu[i - 1].score - on_cpu[i].score > 3e-4) &&
          (i + 1 == on_cpu.size() || on_cpu[i].score - on_cpu[i + 1].score > 3e-4);
      if (separated) {
        EXPECT_EQ(on_gpu[i].docid, on_cpu[i].docid) << "position " << i;
      }
    }
  }
}

}  // namespace
}  // namespace blockrank
