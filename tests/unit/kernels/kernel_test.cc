// SPDX-License-Identifier: Apache-2.0
// The CUDA kernels (kernels/block_attention, kernels/doc_scores, kernels/layer_ops through
// ranker/core/cuda_attention)
// against LibTorch references on fresh random inputs over many layouts: N = 1..500 documents
// of 1..512 tokens, GQA ratios 1/4/8, head dims 64/128, split-K forced on and off. Label gpu:
// skipped without a device.
#include <cmath>
#include <cstdio>
#include <iterator>
#include <random>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include "kernels/block_attention_sm90.cuh"
#include "ranker/core/cuda_attention.h"
#include "ranker/core/model.h"
#include "test_util.h"

namespace blockrank {
namespace {

// Tolerances. bf16 keeps 8 significant bits (unit roundoff 2^-9 ~ 2e-3). The attention output is
// rounded to bf16 once and the probabilities once more before P·V, so a correct kernel lands near
// 3e-3 relative L2 against an fp32 reference on the same bf16 inputs; 1e-2 leaves margin for
// accumulation order while an indexing or masking bug gives errors of order 1.
constexpr double kAttentionTol = 1e-2;
// Scores are computed in fp32 from the same bf16 inputs on both sides; only summation order and
// exp2f vs expf differ (~1e-6), so 1e-4 is loose for a correct kernel and tight for a wrong one.
constexpr double kScoreTol = 1e-4;

double rel_l2(const at::Tensor& out, const at::Tensor& ref) {
  const at::Tensor o = out.to(at::kDouble), r = ref.to(at::kDouble);
  return (o - r).norm().item<double>() / std::max(r.norm().item<double>(), 1e-30);
}

// fp32 reference on the device: one dense softmax per block over exactly its visible keys.
at::Tensor reference_attention(const at::Tensor& q,
                               const at::Tensor& k,
                               const at::Tensor& v,
                               const std::vector<int64_t>& lengths) {
  const int64_t hq = q.size(1), hkv = k.size(1), d = q.size(2);
  const at::Tensor qf = q.to(at::kFloat);
  const at::Tensor kf = k.to(at::kFloat).repeat_interleave(hq / hkv, 1);
  const at::Tensor vf = v.to(at::kFloat).repeat_interleave(hq / hkv, 1);
  at::Tensor out = at::empty({q.size(0), hq, d}, qf.options());
  const int64_t l0 = lengths.front();
  int64_t start = 0;
  for (size_t b = 0; b < lengths.size(); ++b) {
    const int64_t n = lengths[b];
    const bool doc = b > 0 && b + 1 < lengths.size();
    at::Tensor keys, vals, mask;
    const at::Tensor own = at::ones({n, n}, qf.options().dtype(at::kBool)).tril();
    if (doc) {
      keys = at::cat({kf.narrow(0, 0, l0), kf.narrow(0, start, n)}, 0);
      vals = at::cat({vf.narrow(0, 0, l0), vf.narrow(0, start, n)}, 0);
      mask = at::cat({at::ones({n, l0}, own.options()), own}, 1);
    } else {
      keys = kf.narrow(0, 0, start + n);
      vals = vf.narrow(0, 0, start + n);
      mask = at::cat({at::ones({n, start}, own.options()), own}, 1);
    }
    const at::Tensor qb = qf.narrow(0, start, n);
    at::Tensor s = at::einsum("qhd,khd->hqk", {qb, keys}) / std::sqrt(static_cast<double>(d));
    s = s.masked_fill(mask.logical_not().unsqueeze(0), -INFINITY);
    out.narrow(0, start, n).copy_(at::einsum("hqk,khd->qhd", {at::softmax(s, -1), vals}));
    start += n;
  }
  return out;
}

struct Shape {
  int64_t num_docs, max_doc_len, l0, lq, hkv, ratio, head_dim, split_keys;
};

class KernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!at::hasCUDA()) {
      GTEST_SKIP() << "no CUDA device";
    }
  }
  at::Device device_{at::kCUDA, 0};
};

// `tma_runs`, when given, counts the variants whose grouped items ran on the persistent TMA kernel.
// `pieces_runs`, when given, counts those whose streamed pieces ran on the wgmma pieces kernel.
void run_attention_case(const Shape& sh,
                        std::mt19937& rng,
                        const at::Device& device,
                        int* tma_runs = nullptr,
                        int* pieces_runs = nullptr) {
  c10::InferenceMode guard;
  std::uniform_int_distribution<int64_t> len(1, sh.max_doc_len);
  BlockLayout layout;
  layout.block_lengths.push_back(sh.l0);
  for (int64_t i = 0; i < sh.num_docs; ++i) {
    layout.block_lengths.push_back(len(rng));
  }
  layout.block_lengths.push_back(sh.lq);
  const int64_t t = layout.num_tokens(), hq = sh.hkv * sh.ratio, d = sh.head_dim;
  const auto bf = at::TensorOptions().dtype(at::kBFloat16).device(device);
  // Fresh inputs per case; non-trivial scale so softmax is neither flat nor one-hot.
  const at::Tensor q = (at::randn({t, hq, d}, bf.dtype(at::kFloat)) * 1.5).to(at::kBFloat16);
  const at::Tensor k = (at::randn({t, sh.hkv, d}, bf.dtype(at::kFloat)) * 1.5).to(at::kBFloat16);
  const at::Tensor v = at::randn({t, sh.hkv, d}, bf);
  internal::CudaBlockPlan plan;
  ASSERT_OK(internal::make_cuda_block_plan(layout, device, sh.split_keys, &plan));
  const at::Tensor ref = reference_attention(q, k, v, layout.block_lengths);
  // The automatic split between per-query-head and per-KV-group CTAs, the long items alone, then
  // every item one way and every item the other, all on the mma.sync kernel: the result must not
  // depend on it. Then the automatic split and the long items alone again with the grouped items on
  // the persistent TMA kernel (head_dim 128 on Hopper where the layout fits; else mma.sync again),
  // beside the streamed items on a second stream; last the automatic split on the persistent kernel
  // after them on one stream.
  // The last: the automatic split on the persistent kernel with the streamed items on mma.sync
  // instead of the wgmma pieces kernel (used before it where the plan allows).
  const int64_t splits[] = {-1, plan.num_long_items, plan.num_items, 0, -1, plan.num_long_items, -1,
                            -1};
  for (size_t vi = 0; vi < std::size(splits); ++vi) {
    const int64_t streamed = splits[vi];
    internal::CudaBlockPlan variant = plan;
    variant.num_streamed_items = streamed;
    variant.wgmma_grouped = vi >= 4 ? 3 : 0;
    variant.side_stream = vi == 6 ? 0 : 1;
    variant.wgmma_pieces = vi == 7 ? 0 : 1;
    // Poison: the caching allocator hands the adapter's output this freed block back, so an
    // unwritten element shows up as NaN.
    { at::Tensor poison = at::full({t, hq, d}, NAN, bf); }
    at::Tensor out;
    int kernel = -1;
    ASSERT_OK(internal::cuda_block_attention(q, k, v, variant, &out, &kernel));
    if (tma_runs != nullptr && kernel == 3) {
      ++*tma_runs;
    }
    if (pieces_runs != nullptr && kernel == 3 && variant.wgmma_pieces != 0 &&
        plan.streamed_token_pieces && sh.ratio == 4 && d == 128) {
      ++*pieces_runs;  // the streamed pieces ran on the wgmma pieces kernel
    }
    const at::Tensor o = out.view({t, hq, d});
    ASSERT_FALSE(o.isnan().any().item<bool>())
        << "NaN in output (unwritten or masked row), streamed items " << streamed;
    const double err = rel_l2(o, ref);
    std::printf(
        "attention N=%lld T=%lld Hq=%lld Hkv=%lld D=%lld split=%lld items=%lld streamed=%lld "
        "partials=%lld grouped_kernel=%d side_stream=%d rel_l2=%.2e\n",
        static_cast<long long>(sh.num_docs), static_cast<long long>(t), static_cast<long long>(hq),
        static_cast<long long>(sh.hkv), static_cast<long long>(d),
        static_cast<long long>(sh.split_keys), static_cast<long long>(plan.num_items),
        static_cast<long long>(streamed), static_cast<long long>(plan.num_partials), kernel,
        variant.side_stream, err);
    EXPECT_LT(err, kAttentionTol) << "N=" << sh.num_docs << " D=" << d << " ratio=" << sh.ratio
                                  << " streamed=" << streamed << " wgmma=" << variant.wgmma_grouped;
  }
  if (d == 128) {
    // The persistent kernel with and without the resident instruction tiles: the same tiles reach
    // the same MMAs, so the same bits (a stale tile of another KV head would not be).
    {
      internal::CudaBlockPlan variant = plan;
      variant.wgmma_grouped = 3;
      at::Tensor with, without;
      variant.resident_instruction = 1;
      ASSERT_OK(internal::cuda_block_attention(q, k, v, variant, &with));
      { at::Tensor poison = at::full({t, hq, d}, NAN, bf); }
      variant.resident_instruction = 0;
      ASSERT_OK(internal::cuda_block_attention(q, k, v, variant, &without));
      EXPECT_TRUE(at::equal(with, without)) << "resident instruction tiles N=" << sh.num_docs;
    }
    // The lane order (every kernel of the launch, automatic split): the same values, each head's
    // columns permuted by lane_order_index (its own inverse), so mapping back is bit-equal to the
    // natural run's output.
    for (const int wgmma : {3, 0}) {
      internal::CudaBlockPlan variant = plan;
      variant.wgmma_grouped = wgmma;
      at::Tensor natural, lane;
      ASSERT_OK(internal::cuda_block_attention(q, k, v, variant, &natural));
      { at::Tensor poison = at::full({t, hq, d}, NAN, bf); }
      ASSERT_OK(internal::cuda_block_attention(q, k, v, variant, &lane, nullptr, true));
      const at::Tensor back = lane.index_select(-1, internal::lane_order_index(hq, device));
      EXPECT_TRUE(at::equal(back, natural))
          << "lane order N=" << sh.num_docs << " wgmma=" << wgmma << " max diff "
          << (back.to(at::kFloat) - natural.to(at::kFloat)).abs().max().item<float>();
    }
    // Q's RoPE inside the call (q_rope: the persistent kernel's warps rotate the grouped items'
    // tiles, the RoPE kernel the rest), against Q rotated first by the RoPE kernel: the same
    // bits, on both kernels, from row 0 and with the rows below row0 left out (a cached prefix,
    // whose output rows are then not compared).
    const auto lopt = at::TensorOptions().dtype(at::kLong).device(device);
    const at::Tensor positions = at::arange(t, lopt) * 3 + 5;
    const at::Tensor inv_freq =
        at::pow(10000.0, -at::arange(0, d, 2, lopt).to(at::kFloat) / static_cast<double>(d));
    for (const int64_t row0 : {int64_t{0}, std::min<int64_t>(sh.l0 / 2, t)}) {
      const at::Tensor pos = positions.narrow(0, row0, t - row0);
      at::Tensor table;
      ASSERT_OK(internal::cuda_rope_table(pos, inv_freq, &table));
      at::Tensor qr = q.clone();
      ASSERT_OK(internal::cuda_rope_inplace(qr.narrow(0, row0, t - row0), pos, inv_freq, table));
      for (const int wgmma : {3, 0}) {
        internal::CudaBlockPlan variant = plan;
        variant.wgmma_grouped = wgmma;
        at::Tensor natural, rotated;
        int kernel = -1;
        ASSERT_OK(internal::cuda_block_attention(qr, k, v, variant, &natural));
        internal::CudaQRope rope;
        rope.cos_sin = table;
        rope.positions = pos;
        rope.inv_freq = inv_freq;
        rope.row0 = row0;
        const at::Tensor qu = q.clone();
        { at::Tensor poison = at::full({t, hq, d}, NAN, bf); }
        ASSERT_OK(
            internal::cuda_block_attention(qu, k, v, variant, &rotated, &kernel, false, &rope));
        EXPECT_TRUE(at::equal(rotated.narrow(0, row0, t - row0), natural.narrow(0, row0, t - row0)))
            << "q_rope N=" << sh.num_docs << " row0=" << row0 << " wgmma=" << wgmma
            << " kernel=" << kernel;
      }
    }
  }
}

// The host's column map is the kernels' (lane_order_column), a permutation, its own inverse.
TEST_F(KernelTest, LaneOrderIndexMatchesTheKernels) {
  const at::Tensor index = internal::lane_order_index(3, at::kCPU);
  ASSERT_EQ(index.numel(), 3 * 128);
  const int64_t* p = index.data_ptr<int64_t>();
  for (int j = 0; j < 3 * 128; ++j) {
    EXPECT_EQ(p[j], j - j % 128 + kernels::lane_order_column(j % 128)) << j;
    EXPECT_EQ(p[p[j]], j) << j;
  }
  const at::Tensor q = at::randn({5, 4, 128}, at::TensorOptions().device(device_));
  BlockLayout layout;
  layout.block_lengths = {2, 2, 1};
  internal::CudaBlockPlan plan;
  ASSERT_OK(internal::make_cuda_block_plan(layout, device_, 0, &plan));
  at::Tensor out;
  ASSERT_OK(internal::cuda_block_attention(q.to(at::kBFloat16), q.to(at::kBFloat16),
                                           q.to(at::kBFloat16), plan, &out, nullptr, true));
  EXPECT_EQ(internal::cuda_block_attention(
                q.to(at::kBFloat16).narrow(2, 0, 64), q.to(at::kBFloat16).narrow(2, 0, 64),
                q.to(at::kBFloat16).narrow(2, 0, 64), plan, &out, nullptr, true)
                .code(),
            StatusCode::kInvalidArgument);  // D = 64 has no lane order
}

TEST_F(KernelTest, AttentionSmall) {
  std::mt19937 rng(1);
  run_attention_case({1, 1, 1, 2, 1, 1, 64, 1024}, rng, device_);
  run_attention_case({3, 20, 5, 3, 2, 4, 128, 64}, rng, device_);
}

TEST_F(KernelTest, AttentionRandomShapes) {
  std::mt19937 rng(20261129);
  const int64_t docs[] = {1, 2, 7, 20, 50, 100, 200, 500};
  const int64_t ratios[] = {1, 4, 8};
  const int64_t dims[] = {64, 128};
  const int64_t splits[] = {64, 256, 1024};
  for (int i = 0; i < 16; ++i) {
    Shape sh;
    sh.num_docs = docs[rng() % 8];
    sh.max_doc_len = 1 + static_cast<int64_t>(rng() % 512);
    sh.l0 = 1 + static_cast<int64_t>(rng() % 300);
    sh.lq = 1 + static_cast<int64_t>(rng() % 150);
    sh.hkv = 1 + static_cast<int64_t>(rng() % 2);
    sh.ratio = ratios[rng() % 3];
    sh.head_dim = dims[rng() % 2];
    sh.split_keys = splits[rng() % 3];
    run_attention_case(sh, rng, device_);
  }
  // The extremes named in the brief: 500 documents of up to 512 tokens, GQA 8, both head dims.
  run_attention_case({500, 512, 64, 32, 1, 8, 128, 1024}, rng, device_);
  run_attention_case({500, 512, 64, 32, 2, 4, 64, 1024}, rng, device_);
  // Short blocks run 2 or 4 query heads per CTA when the GQA group allows it: groups of 2 (packs
  // of 2 only), 7 (Qwen2.5-0.5B's 14 / 2: no packing) and 8, query blocks of 16 and 32 rows.
  run_attention_case({40, 40, 20, 16, 4, 2, 128, 256}, rng, device_);
  run_attention_case({30, 40, 64, 32, 2, 7, 64, 256}, rng, device_);
  run_attention_case({60, 20, 9, 16, 1, 8, 64, 64}, rng, device_);
}

// The persistent TMA kernel (wgmma_grouped 3) takes the grouped items when each fits in
// kAttentionResidentTiles tiles with the instruction's and its own keys apart: the benchmark's
// layout (64-token instruction, 128-token documents, Mistral's GQA 32 / 8), an odd group (7), a
// group of 1 (the second warpgroup idle), instructions not a multiple of 64 and short documents,
// more units than SMs (several per CTA, both K/V buffers reused) and fewer. With GQA 4 and a query
// block of at most 32 rows the streamed pieces run on the wgmma pieces kernel too: 1,024-key
// pieces through its ring, 192 and 256 keys, a 16-row query block (pieces only where no document
// is split: the kernel takes token-key pieces).
TEST_F(KernelTest, AttentionPersistentTma) {
  std::mt19937 rng(5);
  const bool hopper = kernels::block_attention_sm90_supported(device_.index());
  for (const Shape& sh :
       {Shape{100, 128, 64, 32, 8, 4, 128, 1024}, Shape{200, 128, 40, 16, 2, 7, 128, 1024},
        Shape{50, 100, 1, 8, 3, 1, 128, 256}, Shape{7, 64, 63, 33, 1, 8, 128, 64},
        Shape{500, 70, 17, 32, 8, 4, 128, 1024}, Shape{60, 128, 64, 16, 8, 4, 128, 192},
        Shape{30, 100, 64, 32, 2, 4, 128, 256}}) {
    int tma_runs = 0, pieces_runs = 0;
    run_attention_case(sh, rng, device_, &tma_runs, &pieces_runs);
    if (hopper) {
      EXPECT_GE(tma_runs, 1) << "the TMA kernel did not take N=" << sh.num_docs
                             << ", which it fits";
      if (sh.ratio == 4 && sh.lq <= 32) {
        EXPECT_GE(pieces_runs, 1) << "the wgmma pieces kernel did not take N=" << sh.num_docs;
      }
    }
  }
}

// The plan's automatic piece length: 512 keys where the persistent kernel will run (Hopper, enough
// grouped units: 200 items x 8 KV heads at the Mistral-7B shape, N = 100), the automatic rule
// otherwise (no hint, too few units, or past 32,768 tokens).
TEST_F(KernelTest, PlanPiecesBesideThePersistentKernel) {
  const auto layout_of = [](int64_t n) {
    BlockLayout layout;
    layout.block_lengths.push_back(64);
    for (int64_t i = 0; i < n; ++i) {
      layout.block_lengths.push_back(128);
    }
    layout.block_lengths.push_back(32);
    return layout;
  };
  const bool hopper = kernels::block_attention_sm90_supported(device_.index());
  internal::CudaBlockPlan plan;
  ASSERT_OK(internal::make_cuda_block_plan(layout_of(100), device_, 0, &plan, 0, true, 8, 32));
  EXPECT_EQ(plan.split_keys, hopper ? 832 : 1024);
  ASSERT_OK(internal::make_cuda_block_plan(layout_of(100), device_, 0, &plan));
  EXPECT_EQ(plan.split_keys, 1024);
  ASSERT_OK(internal::make_cuda_block_plan(layout_of(100), device_, 0, &plan, 0, true, 1, 4));
  EXPECT_EQ(plan.split_keys, 1024);  // 200 units: under 4 per SM
  ASSERT_OK(internal::make_cuda_block_plan(layout_of(500), device_, 0, &plan, 0, true, 8, 32));
  EXPECT_EQ(plan.split_keys, 4096);
  ASSERT_OK(internal::make_cuda_block_plan(layout_of(100), device_, 768, &plan, 0, true, 8, 32));
  EXPECT_EQ(plan.split_keys, 768);  // an explicit length wins
}

void run_score_case(int64_t num_docs,
                    int64_t max_len,
                    int64_t rows,
                    int64_t hkv,
                    int64_t ratio,
                    int64_t d,
                    std::mt19937& rng,
                    const at::Device& device) {
  c10::InferenceMode guard;
  std::uniform_int_distribution<int64_t> len(1, max_len);
  BlockLayout layout;
  layout.block_lengths.push_back(7);
  std::vector<int64_t> docs;
  for (int64_t i = 0; i < num_docs; ++i) {
    docs.push_back(len(rng));
    layout.block_lengths.push_back(docs.back());
  }
  layout.block_lengths.push_back(rows + 3);
  const int64_t tdoc = layout.num_tokens() - 7 - (rows + 3), hq = hkv * ratio;
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(device);
  const at::Tensor q = (at::randn({rows, hq, d}, f32) * 2.0).to(at::kBFloat16);
  const at::Tensor k = (at::randn({tdoc, hkv, d}, f32) * 2.0).to(at::kBFloat16);
  internal::CudaBlockPlan plan;
  ASSERT_OK(internal::make_cuda_block_plan(layout, device, internal::kDefaultSplitKeys, &plan));
  at::Tensor scores;
  ASSERT_OK(internal::cuda_document_scores(q, k, plan, &scores));
  const at::Tensor kf = k.to(at::kFloat).repeat_interleave(ratio, 1);
  const at::Tensor logits =
      at::einsum("rhd,khd->hrk", {q.to(at::kFloat), kf}) / std::sqrt(static_cast<double>(d));
  const at::Tensor ref = document_scores_from_logits(logits, docs);
  const double err = rel_l2(scores, ref);
  std::printf("scores N=%lld T_docs=%lld R=%lld Hq=%lld Hkv=%lld D=%lld rel_l2=%.2e sum=%.6f\n",
              static_cast<long long>(num_docs), static_cast<long long>(tdoc),
              static_cast<long long>(rows), static_cast<long long>(hq), static_cast<long long>(hkv),
              static_cast<long long>(d), err, scores.sum().item<double>());
  EXPECT_LT(err, kScoreTol);
  EXPECT_NEAR(scores.sum().item<double>(), 1.0, 1e-4);  // a distribution over the documents
}

TEST_F(KernelTest, ScoresSmall) {
  std::mt19937 rng(2);
  run_score_case(1, 1, 2, 1, 1, 64, rng, device_);
  run_score_case(3, 40, 2, 8, 4, 128, rng, device_);
  // Each register-array size of passes 1 and 2 (pairs per CTA <= 8, <= 16, <= 32).
  run_score_case(30, 100, 2, 4, 4, 128, rng, device_);  // 8
  run_score_case(30, 100, 3, 2, 4, 64, rng, device_);   // 12
  run_score_case(30, 100, 2, 4, 8, 128, rng, device_);  // 16
  run_score_case(30, 100, 5, 2, 4, 128, rng, device_);  // 20
}

TEST_F(KernelTest, ScoresRandomShapes) {
  std::mt19937 rng(7);
  const int64_t docs[] = {1, 5, 20, 100, 500};
  const int64_t ratios[] = {1, 4, 8};
  for (int i = 0; i < 12; ++i) {
    const int64_t rows = 1 + static_cast<int64_t>(rng() % 2);
    run_score_case(docs[rng() % 5], 1 + static_cast<int64_t>(rng() % 512), rows,
                   1 + static_cast<int64_t>(rng() % 8), ratios[rng() % 3], i % 2 ? 128 : 64, rng,
                   device_);
  }
  run_score_case(500, 512, 2, 8, 4, 128, rng, device_);  // Mistral-7B shape, longest case
  run_score_case(100, 128, 2, 2, 7, 64, rng, device_);   // Qwen2.5-0.5B shape
}

// More (head, row) pairs per KV group than one CTA holds (32): the rows run in chunks, and the
// chunks' sums must add up to the one softmax per pair.
TEST_F(KernelTest, ScoresManySignalRows) {
  std::mt19937 rng(11);
  run_score_case(100, 128, 56, 2, 2, 64, rng, device_);  // the shipped model: 56 rows x 2 heads
  run_score_case(20, 200, 33, 1, 1, 64, rng, device_);   // one row past a chunk of 32
  run_score_case(50, 128, 17, 8, 4, 128, rng, device_);  // 68 pairs, last chunk 1 row
  run_score_case(5, 300, 40, 2, 8, 128, rng, device_);   // 320 pairs, chunks of 4 rows
  run_score_case(3, 64, 3, 1, 32, 64, rng, device_);     // 32 heads per KV head, 1-row chunks
}

// The fused layer kernels (kernels/layer_ops through cuda_attention.h) against the ATen bf16 ops
// they replace, on the same bf16 inputs. Both sides do fp32 math with the same bf16 rounding
// points, so they differ only where an fp32 result lands within an ulp of a bf16 rounding boundary
// (summation order in the norm, expf/cosf last bits): a few elements off by one bf16 ulp (2^-8
// relative) give relative L2 well under 1e-3; 4e-3 (about two unit roundoffs) still flags any
// indexing, stride or formula error, which gives errors of order 1.
constexpr double kElementwiseTol = 4e-3;

TEST_F(KernelTest, RmsNormMatchesAten) {
  c10::InferenceMode guard;
  const auto bf = at::TensorOptions().dtype(at::kBFloat16).device(device_);
  // 2,048-8,192 (multiples of 2,048) take the CTA-per-row kernel, the others a warp per row.
  for (const int64_t c : {896, 4096, 264, 2048, 6144, 8192, 8200}) {
    for (const bool with_residual : {false, true}) {
      const int64_t t = 1037;
      at::Tensor x = (at::randn({t, c}, bf.dtype(at::kFloat)) * 3).to(at::kBFloat16);
      const at::Tensor r = at::randn({t, c}, bf);
      const at::Tensor w = (at::rand({c}, bf.dtype(at::kFloat)) + 0.5).to(at::kBFloat16);
      const at::Tensor sum_ref = with_residual ? x + r : x.clone();  // bf16 add, as the model
      const at::Tensor xf = sum_ref.to(at::kFloat);
      const at::Tensor ref =
          w * (xf * at::rsqrt(xf.pow(2).mean({-1}, true) + 1e-6)).to(at::kBFloat16);
      at::Tensor out;
      ASSERT_OK(internal::cuda_rms_norm(x, with_residual ? r : at::Tensor(), w, 1e-6, &out));
      EXPECT_TRUE(at::equal(x, sum_ref)) << "residual sum written back differs";
      const double err = rel_l2(out, ref);
      // The statistic alone (the SwiGLU GEMM's row scale), from the same kernels.
      at::Tensor rstd;
      ASSERT_OK(internal::cuda_rms_rstd(x, 1e-6, &rstd));
      const double err_rstd = rel_l2(rstd, at::rsqrt(xf.pow(2).mean({-1}) + 1e-6));
      std::printf("rms_norm C=%lld residual=%d rel_l2=%.2e rstd rel_l2=%.2e\n",
                  static_cast<long long>(c), with_residual ? 1 : 0, err, err_rstd);
      EXPECT_LT(err, kElementwiseTol);
      EXPECT_LT(err_rstd, 1e-5);
    }
  }
}

TEST_F(KernelTest, SiluMulMatchesAten) {
  c10::InferenceMode guard;
  const auto bf = at::TensorOptions().dtype(at::kBFloat16).device(device_);
  for (const int64_t f : {4864, 14336, 8}) {
    const int64_t t = 333;
    const at::Tensor gu = (at::randn({t, 2 * f}, bf.dtype(at::kFloat)) * 4).to(at::kBFloat16);
    const at::Tensor ref = at::silu(gu.narrow(1, 0, f)) * gu.narrow(1, f, f);
    at::Tensor out;
    ASSERT_OK(internal::cuda_silu_mul(gu, &out));
    const double err = rel_l2(out, ref);
    std::printf("silu_mul F=%lld rel_l2=%.2e\n", static_cast<long long>(f), err);
    EXPECT_LT(err, kElementwiseTol);
  }
}

// The gate|up GEMM with SiLU·up in its epilogue against fp32 ATen on the same bf16 operands (rows
// that are not a multiple of the 128-row tile, one k-block and many, one column tile and many).
TEST_F(KernelTest, SwigluGemmMatchesAten) {
  c10::InferenceMode guard;
  const auto bf = at::TensorOptions().dtype(at::kBFloat16).device(device_);
  struct Case {
    int64_t t, k, f;
  };
  for (const Case& cs :
       {Case{1, 64, 128}, Case{300, 128, 256}, Case{1000, 896, 4864}, Case{129, 4096, 14336}}) {
    const at::Tensor x = (at::randn({cs.t, cs.k}, bf.dtype(at::kFloat))).to(at::kBFloat16);
    const at::Tensor w =
        (at::randn({2 * cs.f, cs.k}, bf.dtype(at::kFloat)) / std::sqrt(static_cast<double>(cs.k)))
            .to(at::kBFloat16);
    if (!internal::cuda_swiglu_gemm_usable(x, w)) {
      GTEST_SKIP() << "the SwiGLU GEMM needs an sm_90 (Hopper) device";
    }
    const at::Tensor gu = at::matmul(x.to(at::kFloat), w.to(at::kFloat).t());
    const at::Tensor ref = at::silu(gu.narrow(1, 0, cs.f)) * gu.narrow(1, cs.f, cs.f);
    { at::Tensor poison = at::full({cs.t, cs.f}, NAN, bf); }  // unwritten elements show as NaN
    at::Tensor out;
    ASSERT_OK(internal::cuda_swiglu_gemm(x, w, &out));
    ASSERT_FALSE(out.isnan().any().item<bool>()) << "unwritten output, T=" << cs.t;
    const double err = rel_l2(out, ref);
    std::printf("swiglu_gemm T=%lld K=%lld F=%lld rel_l2=%.2e\n", static_cast<long long>(cs.t),
                static_cast<long long>(cs.k), static_cast<long long>(cs.f), err);
    EXPECT_LT(err, 1e-2);
  }
}

// The MLP norm folded into the SwiGLU GEMM as fused_layers runs it: rstd from the norm kernel and
// the norm weight in gate|up's columns, against fp32 ATen of silu(n Wgᵀ) (n Wuᵀ), n = RMSNorm(x)
// with its weight, and against the two-kernel bf16 path (norm kernel, then the GEMM on its output).
// Rows with scales spread over e^±3, and rows past a tile boundary.
TEST_F(KernelTest, SwigluGemmRowScaleEqualsFoldedNorm) {
  c10::InferenceMode guard;
  const auto bf = at::TensorOptions().dtype(at::kBFloat16).device(device_);
  const auto f32 = bf.dtype(at::kFloat);
  struct Case {
    int64_t t, k, f;
  };
  for (const Case& cs : {Case{1, 64, 128}, Case{333, 256, 512}, Case{1029, 4096, 14336}}) {
    const at::Tensor x =
        (at::randn({cs.t, cs.k}, f32) * at::exp(3 * (2 * at::rand({cs.t, 1}, f32) - 1)))
            .to(at::kBFloat16);
    const at::Tensor norm_w = (1 + 0.2 * at::randn({cs.k}, f32)).to(at::kBFloat16);
    const at::Tensor w =
        (at::randn({2 * cs.f, cs.k}, f32) / std::sqrt(static_cast<double>(cs.k))).to(at::kBFloat16);
    if (!internal::cuda_swiglu_gemm_usable(x, w)) {
      GTEST_SKIP() << "the SwiGLU GEMM needs an sm_90 (Hopper) device";
    }
    const at::Tensor xf = x.to(at::kFloat);
    const at::Tensor n = xf * at::rsqrt(xf.pow(2).mean({-1}, true) + 1e-5) * norm_w.to(at::kFloat);
    const at::Tensor gu = at::matmul(n, w.to(at::kFloat).t());
    const at::Tensor ref = at::silu(gu.narrow(1, 0, cs.f)) * gu.narrow(1, cs.f, cs.f);
    const at::Tensor folded = w * norm_w.unsqueeze(0);  // merge_for_cuda's fold (bf16)
    at::Tensor rstd, out, h, two_step;
    ASSERT_OK(internal::cuda_rms_rstd(x, 1e-5, &rstd));
    { at::Tensor poison = at::full({cs.t, cs.f}, NAN, bf); }  // unwritten elements show as NaN
    ASSERT_OK(internal::cuda_swiglu_gemm(x, folded, &out, rstd));
    ASSERT_FALSE(out.isnan().any().item<bool>()) << "unwritten output, T=" << cs.t;
    ASSERT_OK(internal::cuda_rms_norm(x, at::Tensor(), norm_w, 1e-5, &h));
    ASSERT_OK(internal::cuda_swiglu_gemm(h, w, &two_step));
    const double err = rel_l2(out, ref), err_two = rel_l2(two_step, ref);
    std::printf("swiglu_gemm row scale T=%lld K=%lld F=%lld rel_l2=%.2e (norm + GEMM %.2e)\n",
                static_cast<long long>(cs.t), static_cast<long long>(cs.k),
                static_cast<long long>(cs.f), err, err_two);
    EXPECT_LT(err, 1e-2);
    EXPECT_LT(err, 2 * err_two + 1e-3);  // no worse than the path it replaces
  }
  // A malformed scale is an error, not a launch.
  const at::Tensor x = at::randn({4, 64}, bf), w = at::randn({256, 64}, bf);
  at::Tensor out;
  EXPECT_FALSE(internal::cuda_swiglu_gemm(x, w, &out, at::ones({3}, f32)).is_ok());
  EXPECT_FALSE(internal::cuda_swiglu_gemm(x, w, &out, at::ones({4}, bf)).is_ok());
}

// The Q|K|V GEMM with RoPE in its epilogue: the product against fp32 ATen (GEMM rounding), and
// the rotation bit for bit against the RoPE kernel applied to the same kernel's unrotated output
// (rope_cols = 0 runs the identical main loop). Also the in-place form into a row range of a
// larger buffer (the cached-prefix layout of fused_layers), whose other rows must stay untouched.
TEST_F(KernelTest, RopeGemmMatchesRopeKernel) {
  c10::InferenceMode guard;
  const auto bf = at::TensorOptions().dtype(at::kBFloat16).device(device_);
  struct Case {
    int64_t t, k, n, rope_cols;
  };
  for (const Case& cs : {Case{1, 64, 256, 256}, Case{1037, 256, 768, 512},
                         Case{300, 4096, 6144, 5120}, Case{129, 128, 512, 0}}) {
    const at::Tensor x = at::randn({cs.t, cs.k}, bf);
    const at::Tensor w =
        (at::randn({cs.n, cs.k}, bf.dtype(at::kFloat)) / std::sqrt(static_cast<double>(cs.k)))
            .to(at::kBFloat16);
    if (!internal::cuda_rope_gemm_usable(x, w, cs.rope_cols, 128)) {
      GTEST_SKIP() << "the RoPE GEMM needs an sm_90 (Hopper) device";
    }
    // Positions: an instruction 0..63, documents restarting at 64, a far query block (large
    // angles).
    std::vector<int64_t> pv(static_cast<size_t>(cs.t));
    for (int64_t i = 0; i < cs.t; ++i) {
      pv[static_cast<size_t>(i)] = i < 64 ? i : (i < cs.t - 32 ? 64 + (i - 64) % 128 : 16384 + i);
    }
    const at::Tensor pos = at::tensor(pv, at::kLong).to(device_);
    std::vector<float> f(64);
    for (int64_t i = 0; i < 64; ++i) {
      f[static_cast<size_t>(i)] =
          1.0f /
          static_cast<float>(std::pow(1e6, static_cast<double>(static_cast<float>(2 * i) / 128)));
    }
    const at::Tensor inv_freq = at::tensor(f, at::kFloat).to(device_);
    at::Tensor cos_sin;
    ASSERT_OK(internal::cuda_rope_table(pos, inv_freq, &cos_sin));
    { at::Tensor poison = at::full({cs.t, cs.n}, NAN, bf); }  // unwritten elements show as NaN
    at::Tensor plain, rotated;
    ASSERT_OK(internal::cuda_rope_gemm(x, w, cos_sin, 0, &plain));
    ASSERT_OK(internal::cuda_rope_gemm(x, w, cos_sin, cs.rope_cols, &rotated));
    ASSERT_FALSE(rotated.isnan().any().item<bool>()) << "unwritten output, T=" << cs.t;
    const double err = rel_l2(plain, at::matmul(x.to(at::kFloat), w.to(at::kFloat).t()));
    std::printf("rope_gemm T=%lld K=%lld N=%lld product rel_l2=%.2e\n",
                static_cast<long long>(cs.t), static_cast<long long>(cs.k),
                static_cast<long long>(cs.n), err);
    EXPECT_LT(err, 1e-2);
    at::Tensor expect = plain.clone();
    if (cs.rope_cols > 0) {
      ASSERT_OK(internal::cuda_rope_inplace(
          expect.narrow(1, 0, cs.rope_cols).view({cs.t, cs.rope_cols / 128, 128}), pos, inv_freq));
    }
    EXPECT_TRUE(at::equal(rotated, expect)) << "rotation differs from the RoPE kernel, T=" << cs.t;
    // In place into rows [5, 5 + T) of a buffer with 7 extra rows.
    at::Tensor buf = at::full({cs.t + 7, cs.n}, 3.0, bf);
    at::Tensor rows = buf.narrow(0, 5, cs.t);
    ASSERT_OK(internal::cuda_rope_gemm(x, w, cos_sin, cs.rope_cols, &rows));
    EXPECT_TRUE(at::equal(buf.narrow(0, 5, cs.t), expect));
    EXPECT_TRUE(at::equal(buf.narrow(0, 0, 5), at::full({5, cs.n}, 3.0, bf)));
    EXPECT_TRUE(at::equal(buf.narrow(0, 5 + cs.t, 2), at::full({2, cs.n}, 3.0, bf)));
  }
}

TEST_F(KernelTest, RopeMatchesAten) {
  c10::InferenceMode guard;
  const auto bf = at::TensorOptions().dtype(at::kBFloat16).device(device_);
  struct Case {
    int64_t hq, hkv, d;
    double theta;
  };
  for (const Case& cs : {Case{14, 2, 64, 1e6}, Case{32, 8, 128, 1e6}, Case{4, 4, 64, 1e4}}) {
    // Positions as a BlockRank layout gives them: instruction 0.., documents from L0, query block
    // from 16384 (large angles exercise cosf/sinf range reduction).
    BlockLayout layout;
    layout.block_lengths = {64, 128, 77, 128, 32};
    const int64_t t = layout.num_tokens(), d = cs.d, qd = cs.hq * d, kvd = cs.hkv * d;
    const at::Tensor pos = at::tensor(layout.positions(), at::kLong).to(device_);
    std::vector<float> f(static_cast<size_t>(d / 2));
    for (int64_t i = 0; i < d / 2; ++i) {
      f[static_cast<size_t>(i)] =
          1.0f / static_cast<float>(
                     std::pow(cs.theta, static_cast<double>(static_cast<float>(2 * i) / d)));
    }
    const at::Tensor inv_freq = at::tensor(f, at::kFloat).to(device_);
    // A merged QKV output: rotate the Q and K heads in place, leave V alone.
    // Elements spread over 2^-40 .. 2^40: the rotation's products then differ by more than the 16
    // binary orders where a sum of two bf16 stops being exact in fp32 (rope_rotate8's packed bf16
    // ops must still give HF's bits).
    at::Tensor qkv = (at::randn({t, qd + 2 * kvd}, bf.dtype(at::kFloat)) *
                      at::exp2(at::randint(-40, 41, {t, qd + 2 * kvd}, bf.dtype(at::kFloat))))
                         .to(at::kBFloat16);
    const at::Tensor before = qkv.clone();
    ASSERT_OK(internal::cuda_rope_inplace(qkv.narrow(1, 0, qd + kvd).view({t, cs.hq + cs.hkv, d}),
                                          pos, inv_freq));
    // The ATen path of model.cc (rope_tables + apply_rope).
    const at::Tensor freqs = pos.to(at::kFloat).unsqueeze(1) * inv_freq.unsqueeze(0);
    const at::Tensor emb = at::cat({freqs, freqs}, -1);
    const at::Tensor cos = emb.cos().to(at::kBFloat16).unsqueeze(1);
    const at::Tensor sin = emb.sin().to(at::kBFloat16).unsqueeze(1);
    const at::Tensor x = before.narrow(1, 0, qd + kvd).reshape({t, cs.hq + cs.hkv, d});
    const at::Tensor rot = at::cat({-x.narrow(-1, d / 2, d / 2), x.narrow(-1, 0, d / 2)}, -1);
    const at::Tensor ref = x * cos + rot * sin;
    const double err = rel_l2(qkv.narrow(1, 0, qd + kvd).reshape({t, cs.hq + cs.hkv, d}), ref);
    std::printf("rope Hq=%lld Hkv=%lld D=%lld rel_l2=%.2e\n", static_cast<long long>(cs.hq),
                static_cast<long long>(cs.hkv), static_cast<long long>(d), err);
    EXPECT_LT(err, kElementwiseTol);
    EXPECT_TRUE(at::equal(qkv.narrow(1, 0, qd + kvd).reshape({t, cs.hq + cs.hkv, d}), ref))
        << "not HF's bits";
    EXPECT_TRUE(at::equal(qkv.narrow(1, qd + kvd, kvd), before.narrow(1, qd + kvd, kvd)))
        << "V columns touched";
    // The 16-byte kernel reading a precomputed (cos, sin) table gives the same bits.
    at::Tensor cos_sin, other = before.clone();
    ASSERT_OK(internal::cuda_rope_table(pos, inv_freq, &cos_sin));
    ASSERT_OK(internal::cuda_rope_inplace(other.narrow(1, 0, qd + kvd).view({t, cs.hq + cs.hkv, d}),
                                          pos, inv_freq, cos_sin));
    EXPECT_TRUE(at::equal(other, qkv)) << "table kernel";
  }
}

// End to end: a small random model scored on CUDA in bf16 (merged QKV / gate|up GEMMs, fused
// norm/RoPE/SwiGLU kernels, attention and scoring kernels) against (a) the ATen path on the same
// weights in fp32 on the same device and (b) the ATen bf16 path (forward() with per-layer scores,
// which never uses the kernels). Scores drift through two bf16 layers, so the checks are loose
// (relative L2 < 0.1; a broken kernel gives a different distribution entirely). Two shapes: Qwen2
// style (biases, D 64) and Mistral style (no biases, D 128).
TEST_F(KernelTest, ScoreDocumentsMatchesAtenPath) {
  for (const bool qwen : {true, false}) {
    ModelConfig c;
    c.arch = qwen ? Architecture::kQwen2 : Architecture::kMistral;
    c.vocab_size = 512;
    c.hidden_size = 256;
    c.intermediate_size = 512;
    c.num_layers = 3;
    c.num_heads = qwen ? 8 : 4;
    c.num_kv_heads = 2;
    c.head_dim = qwen ? 64 : 128;
    c.rope_theta = qwen ? 10000.0 : 1e6;
    c.qkv_bias = qwen;
    BlockRankSettings settings;
    settings.scoring_layer = 2;
    LoadOptions bf, fp;
    bf.device = fp.device = device_;
    bf.dtype = at::kBFloat16;
    fp.dtype = at::kFloat;
    std::unique_ptr<Model> mb, mf;
    ASSERT_OK(Model::create_random(c, settings, bf, 5, &mb));
    ASSERT_OK(Model::create_random(c, settings, fp, 5, &mf));
    BlockLayout layout;
    layout.block_lengths = {30, 64, 17, 128, 1, 90, 40};
    std::vector<int64_t> ids;
    for (int64_t i = 0; i < layout.num_tokens(); ++i) {
      ids.push_back((i * 131 + 7) % c.vocab_size);
    }
    auto sb = mb->score_documents(ids, layout, 2, 2);
    auto sf = mf->score_documents(ids, layout, 2, 2);
    ForwardRequest req;
    req.scores = true;
    auto fb = mb->forward(ids, &layout, req);
    ASSERT_OK(sb.status());
    ASSERT_OK(sf.status());
    ASSERT_OK(fb.status());
    const at::Tensor a = at::tensor(sb.value()), b = at::tensor(sf.value());
    const at::Tensor ab = fb.value().scores[2].to(at::kCPU, at::kFloat);
    const double err = rel_l2(a, b), err_bf = rel_l2(a, ab);
    std::printf("score_documents %s bf16 kernels vs fp32 ATen: rel_l2=%.2e; vs bf16 ATen: %.2e\n",
                qwen ? "qwen2" : "mistral", err, err_bf);
    EXPECT_LT(err, 0.1);
    EXPECT_LT(err_bf, 0.1);
    // All 40 rows of the query block as signal rows: 80 / 160 (head, row) pairs per KV group, so
    // the scoring kernel runs them in row chunks (it used to refuse more than 32 pairs, and the
    // model then left the fused path altogether).
    {
      ForwardRequest wide;
      wide.scores = true;
      wide.signal_rows = 40;
      auto wb = mb->score_documents(ids, layout, 2, 40);
      auto wf = mf->score_documents(ids, layout, 2, 40);
      auto wfb = mb->forward(ids, &layout, wide);
      ASSERT_OK(wb.status());
      ASSERT_OK(wf.status());
      ASSERT_OK(wfb.status());
      EXPECT_TRUE(mb->uses_fused_layers());
      const at::Tensor w = at::tensor(wb.value());
      const double werr = rel_l2(w, at::tensor(wf.value()));
      const double werr_bf = rel_l2(w, wfb.value().scores[2].to(at::kCPU, at::kFloat));
      std::printf(
          "score_documents %s, 40 signal rows: vs fp32 ATen rel_l2=%.2e; vs bf16 ATen %.2e\n",
          qwen ? "qwen2" : "mistral", werr, werr_bf);
      EXPECT_LT(werr, 0.1);
      EXPECT_LT(werr_bf, 0.1);
      EXPECT_NEAR(w.sum().item<double>(), 1.0, 1e-3);
    }
    // The other bf16 paths against fp32 ATen: forward()'s ATen attention and generate()'s prompt
    // pass and decoding steps. On Hopper the Mistral-style model (D 128) has W_o's columns in the
    // attention's lane order (merge_for_cuda), so each of these paths must hand the O projection
    // its output in that order (Model::Impl::o_input).
    ForwardRequest hreq;
    hreq.hidden = true;
    auto hb = mb->forward(ids, &layout, hreq), hf = mf->forward(ids, &layout, hreq);
    ASSERT_OK(hb.status());
    ASSERT_OK(hf.status());
    const double err_hidden =
        rel_l2(hb.value().hidden.back().to(at::kCPU), hf.value().hidden.back().to(at::kCPU));
    GenerateRequest greq;
    greq.max_new_tokens = 4;
    greq.scoring_layer = 2;
    auto gb = mb->generate(ids, layout, greq), gf = mf->generate(ids, layout, greq);
    ASSERT_OK(gb.status());
    ASSERT_OK(gf.status());
    const double err_gen = rel_l2(at::tensor(gb.value().scores), at::tensor(gf.value().scores));
    std::printf("%s bf16 vs fp32: last hidden rel_l2=%.2e, generate scores %.2e, tokens %s\n",
                qwen ? "qwen2" : "mistral", err_hidden, err_gen,
                gb.value().tokens == gf.value().tokens ? "equal" : "differ");
    EXPECT_LT(err_hidden, 0.05);
    EXPECT_LT(err_gen, 0.1);
    EXPECT_EQ(gb.value().tokens, gf.value().tokens);
  }
}

}  // namespace
}  // namespace blockrank
