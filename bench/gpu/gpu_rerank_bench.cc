// SPDX-License-Identifier: Apache-2.0
// gpu_rerank_bench: end-to-end BlockRank attention inference on one GPU (Model::score_documents
// with the CUDA kernels: layers 0..l*-1 in full, Q/K of layer l*, fused scoring), for a
// random-weight model of Mistral-7B or Qwen2.5-0.5B shape in bf16, drawn directly on the GPU.
// Prompt: a 64-token instruction, N documents x 128 tokens, a 32-token query block (docs/GPU.md's
// peer prompt). Prints per N: ms/query (median after warm-ups; score_documents returns host scores,
// so each call ends synchronised), FLOPs of the pass, achieved TFLOP/s and the share of the 790
// TFLOP/s measured bf16 GEMM ceiling, and ms/query with the instruction's K/V from the prefix cache
// (the product's steady state for a repeated instruction); then the attention kernel alone vs
// LibTorch's scaled_dot_product_attention with a dense causal mask over the same sequence (flash
// backend), timed with CUDA events.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>

#if __has_include(<ATen/ops/scaled_dot_product_attention.h>)
#define BLOCKRANK_HAVE_SDPA 1
#endif

#include "bench/common/model_shapes.h"
#include "bench/gpu/nvml_energy.h"
#include "ranker/core/cuda_attention.h"
#include "ranker/core/model.h"

#include <CLI/CLI.hpp>

namespace {

constexpr double kCeilingTflops = 790.0;  // measured bf16 GEMM ceiling (docs/GPU.md)

struct Flags {
  std::string model = "mistral";
  std::vector<int> docs = {20, 50, 100, 200, 500};
  int doc_len = 128;
  int instruction_len = 64;
  int query_len = 32;
  int layer = -1;
  int warmup = 2;
  int reps = 5;
  bool kernel_bench = true;
  bool energy = false;
};

blockrank::ModelConfig shape(const std::string& name) {
  return name == "qwen" ? blockrank::bench::qwen25_05b_shape()
                        : blockrank::bench::mistral7b_shape();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// FLOPs of score_documents: linear layers of layers 0..l*-1 over all T tokens, BlockRank attention
// (QKᵀ and PV over the visible pairs only), and layer l*'s Q (R rows) / K (document rows) plus the
// scoring dot products.
double pass_flops(const blockrank::ModelConfig& c,
                  const blockrank::BlockLayout& layout,
                  int layer) {
  const double h = c.hidden_size, qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
  const double t = static_cast<double>(layout.num_tokens());
  const double per_token = 2.0 * (h * (qd + 2 * kvd) + qd * h + 3.0 * h * c.intermediate_size);
  const auto& bl = layout.block_lengths;
  const double l0 = bl.front(), lq = bl.back();
  double pairs = l0 * (l0 + 1) / 2 + lq * (t - lq) + lq * (lq + 1) / 2;
  for (size_t i = 1; i + 1 < bl.size(); ++i) {
    pairs += bl[i] * l0 + bl[i] * (bl[i] + 1.0) / 2;
  }
  const double attn = 4.0 * c.head_dim * c.num_heads * pairs;
  const double tdoc = t - l0 - lq;
  const double last = 2.0 * h * (qd * 2 + kvd * tdoc) + 2.0 * 2 * c.num_heads * c.head_dim * tdoc;
  return layer * (per_token * t + attn) + last;
}

template <typename F>
double time_cuda_ms(F&& fn, int warmup, int reps) {
  for (int i = 0; i < warmup; ++i) {
    fn();
  }
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    cudaEventRecord(a, c10::cuda::getCurrentCUDAStream().stream());
    fn();
    cudaEventRecord(b, c10::cuda::getCurrentCUDAStream().stream());
    const cudaError_t err = cudaEventSynchronize(b);
    if (err != cudaSuccess) {  // a fault in fn(), reported here rather than at a later call
      std::fprintf(stderr, "gpu_rerank_bench: %s\n", cudaGetErrorString(err));
      std::exit(1);
    }
    float m = 0.f;
    cudaEventElapsedTime(&m, a, b);
    ms.push_back(m);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return median(ms);
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  CLI::App app{"BlockRank rerank latency on one GPU (random weights, bf16)"};
  app.add_option("--model", f.model, "mistral (Mistral-7B shape) or qwen (Qwen2.5-0.5B shape)")
      ->capture_default_str();
  app.add_option("--docs", f.docs, "Documents per query")->capture_default_str();
  app.add_option("--doc-len", f.doc_len, "Tokens per document")->capture_default_str();
  app.add_option("--instruction-len", f.instruction_len, "Instruction tokens")
      ->capture_default_str();
  app.add_option("--query-len", f.query_len, "Query block tokens")->capture_default_str();
  app.add_option("--layer", f.layer, "Scoring layer l* (default 20 Mistral, 15 Qwen)");
  app.add_option("--warmup", f.warmup, "Warm-up calls")->capture_default_str();
  app.add_option("--reps", f.reps, "Timed calls (median reported)")->capture_default_str();
  app.add_option("--kernel-bench", f.kernel_bench, "Also time attention kernel vs SDPA")
      ->capture_default_str();
  app.add_option("--energy", f.energy,
                 "Also report joules per call, mean power and SM clock over the timed calls "
                 "(NVML)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  const blockrank::ModelConfig c = shape(f.model);
  const int layer = f.layer >= 0 ? f.layer : (f.model == "qwen" ? 15 : 20);
  blockrank::BlockRankSettings settings;
  settings.scoring_layer = layer;
  blockrank::LoadOptions lo;
  lo.device = c10::Device(c10::kCUDA, 0);
  lo.dtype = c10::kBFloat16;
  std::unique_ptr<blockrank::Model> model;
  const auto t0 = std::chrono::steady_clock::now();
  blockrank::Status s = blockrank::Model::create_random(c, settings, lo, 1, &model);
  if (!s.is_ok()) {
    std::fprintf(stderr, "gpu_rerank_bench: %s\n", s.to_string().c_str());
    return 1;
  }
  cudaDeviceSynchronize();
  std::printf("model %s: random weights on the GPU in %.1f s; kernels usable: %s\n",
              f.model.c_str(),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
              blockrank::internal::cuda_kernels_usable(lo.device, lo.dtype, c.head_dim, c.num_heads,
                                                       c.num_kv_heads)
                  ? "yes"
                  : "no");
  std::printf(
      "\n| model | l* | N | tokens | ms/query (median of %d) | min | TFLOP | TFLOP/s | %% of %.0f "
      "| ms/query, instruction K/V cached |\n",
      f.reps, kCeilingTflops);
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (int n : f.docs) {
    blockrank::BlockLayout layout;
    layout.block_lengths.push_back(f.instruction_len);
    for (int d = 0; d < n; ++d) {
      layout.block_lengths.push_back(f.doc_len);
    }
    layout.block_lengths.push_back(f.query_len);
    std::vector<int64_t> ids;
    for (int64_t i = 0; i < layout.num_tokens(); ++i) {
      ids.push_back((i * 7919 + 13) % c.vocab_size);
    }
    // Cold calls (the whole prompt) alternate with the product's steady state for a repeated
    // instruction: block 0's K/V from the prefix cache (ranker/core/prefix_cache), captured once
    // with `present` and passed as `past`. Alternating keeps both at the same clocks (a long run
    // heats the GPU: measured back to back, the later series reads ~5% slower).
    at::Tensor kv;
    {
      blockrank::PrefixKv capture;
      capture.present = &kv;
      auto r = model->score_documents(ids, layout, layer, 2, &capture);
      if (!r.is_ok() || !kv.defined()) {
        std::fprintf(stderr, "gpu_rerank_bench: prefix capture failed\n");
        return 1;
      }
    }
    blockrank::PrefixKv cached;
    cached.past = kv;
    std::vector<double> ms, warm_ms;
    std::unique_ptr<blockrank::bench::GpuEnergyMeter> meter;
    if (f.energy) {
      meter = std::make_unique<blockrank::bench::GpuEnergyMeter>(lo.device.index());
    }
    for (int rep = 0; rep < f.warmup + f.reps; ++rep) {
      if (meter != nullptr && rep == f.warmup) {
        meter->start();
      }
      for (const blockrank::PrefixKv* prefix :
           {static_cast<blockrank::PrefixKv*>(nullptr), &cached}) {
        const auto a = std::chrono::steady_clock::now();
        auto r = model->score_documents(ids, layout, layer, 2, prefix);
        const auto b = std::chrono::steady_clock::now();
        if (!r.is_ok()) {
          std::fprintf(stderr, "gpu_rerank_bench: %s\n", r.status().to_string().c_str());
          return 1;
        }
        if (rep >= f.warmup) {
          (prefix == nullptr ? ms : warm_ms)
              .push_back(std::chrono::duration<double, std::milli>(b - a).count());
        }
      }
    }
    if (meter != nullptr) {
      const auto e = meter->stop();
      // Cold and cached calls alternate (their times differ by < 1%), so this is the mean of both.
      std::fprintf(stderr,
                   "energy %s N=%d: %.1f J per call, %.0f W mean, SM clock %.0f MHz mean (NVML "
                   "over %d timed calls, %.2f s)%s\n",
                   f.model.c_str(), n, e.joules / (2.0 * f.reps), e.mean_watts, e.mean_sm_mhz,
                   2 * f.reps, e.seconds, meter->ok() ? "" : ": no NVML");
    }
    const double flops = pass_flops(c, layout, layer);
    const double med = median(ms);
    std::printf("| %s | %d | %d | %lld | %.1f | %.1f | %.1f | %.0f | %.0f%% | %.1f |\n",
                f.model.c_str(), layer, n, static_cast<long long>(layout.num_tokens()), med,
                *std::min_element(ms.begin(), ms.end()), flops / 1e12, flops / med / 1e9,
                100.0 * flops / med / 1e9 / kCeilingTflops, median(warm_ms));
    std::fflush(stdout);
  }
  model.reset();

  if (f.kernel_bench) {
    c10::InferenceMode guard;
    std::printf(
        "\n| model | N | tokens | BlockRank kernel ms | long items only | short items only | "
        "grouped items on mma.sync ms | same kernel, one CTA per query head ms | SDPA causal "
        "(dense) ms | speed-up |\n");
    std::printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for (int n : f.docs) {
      blockrank::BlockLayout layout;
      layout.block_lengths.push_back(f.instruction_len);
      for (int d = 0; d < n; ++d) {
        layout.block_lengths.push_back(f.doc_len);
      }
      layout.block_lengths.push_back(f.query_len);
      const int64_t t = layout.num_tokens();
      const auto opt = at::TensorOptions().dtype(at::kBFloat16).device(lo.device);
      const at::Tensor q = at::randn({t, c.num_heads, c.head_dim}, opt);
      const at::Tensor k = at::randn({t, c.num_kv_heads, c.head_dim}, opt);
      const at::Tensor v = at::randn({t, c.num_kv_heads, c.head_dim}, opt);
      blockrank::internal::CudaBlockPlan plan;
      // The split the model's pass would choose (persistent_kv_heads and persistent_heads as
      // Model::score_documents).
      const int64_t persistent_kv_heads = c.head_dim == 128 ? c.num_kv_heads : 0;
      s = blockrank::internal::make_cuda_block_plan(layout, lo.device,
                                                    blockrank::internal::kDefaultSplitKeys, &plan,
                                                    0, true, persistent_kv_heads, c.num_heads);
      if (!s.is_ok()) {
        std::fprintf(stderr, "gpu_rerank_bench: %s\n", s.to_string().c_str());
        return 1;
      }
      at::Tensor out;
      const auto time_plan = [&](const blockrank::internal::CudaBlockPlan& p) {
        return time_cuda_ms(
            [&] {
              blockrank::internal::throw_if_error(
                  blockrank::internal::cuda_block_attention(q, k, v, p, &out));
            },
            3, 20);
      };
      const double ours = time_plan(plan);
      // A/B in the same run: every item on the per-query-head path (no K/V reuse across the GQA
      // group).
      blockrank::internal::CudaBlockPlan per_head = plan;
      per_head.num_streamed_items = per_head.num_items;
      const double ours_per_head = time_plan(per_head);
      // The two parts of the same launch timed apart: the long (split-K, query block) items with
      // their combine, and the short (document) items alone. Timing only: each leaves the other's
      // rows unwritten.
      blockrank::internal::CudaBlockPlan long_only = plan;
      long_only.num_items = plan.num_long_items;
      const double ours_long = time_plan(long_only);
      blockrank::internal::CudaBlockPlan short_only = plan;
      short_only.items = plan.items.slice(0, plan.num_long_items * 8);  // flat int32 [items * 8]
      short_only.num_items = plan.num_items - plan.num_long_items;
      short_only.num_long_items = 0;
      // No merge: every split-K piece is a long item (partition_streamed_items).
      short_only.num_combine = 0;
      const double ours_short = time_plan(short_only);
      // The grouped (document) items on the mma.sync kernel instead of the persistent one (the
      // same launch again where that one does not apply: head_dim 64, not Hopper).
      blockrank::internal::CudaBlockPlan mma_sync = plan;
      mma_sync.wgmma_grouped = 0;
      const double ours_mma_sync = time_plan(mma_sync);
      // A/B of plan choices, round-robin in one process (single timings drift by 5-10% with the
      // GPU's state): the grouped items on the mma.sync kernel or the persistent TMA kernel
      // (wgmma_grouped 3, where it fits), in the whole launch and in the short items alone; the
      // persistent kernel after the streamed items or beside them (side_stream); and the grouped
      // items longest first (partition_streamed_items) or in document order.
      struct Variant {
        std::string name;
        blockrank::internal::CudaBlockPlan plan;
        std::vector<double> ms;
      };
      std::vector<Variant> variants;
      for (const int kernel : {0, 3}) {
        const std::string tag = kernel == 3 ? "TMA kernel" : "mma.sync kernel";
        blockrank::internal::CudaBlockPlan whole = plan, shorts = short_only;
        whole.wgmma_grouped = shorts.wgmma_grouped = kernel;
        whole.side_stream = 0;
        variants.push_back({"all items, grouped on " + tag, whole, {}});
        variants.push_back({"short items only, grouped on " + tag, shorts, {}});
        if (kernel == 3) {  // the persistent kernel beside the streamed items, on a second stream
          whole.side_stream = 1;
          variants.push_back({"all items, grouped on " + tag + ", two streams", whole, {}});
          // The streamed pieces on mma.sync instead of the wgmma pieces kernel (where it applies).
          whole.wgmma_pieces = 0;
          variants.push_back(
              {"all items, grouped on " + tag + ", two streams, mma.sync pieces", whole, {}});
          blockrank::internal::CudaBlockPlan longs = long_only;
          longs.wgmma_pieces = 1;
          variants.push_back({"long items only, wgmma pieces", longs, {}});
          longs.wgmma_pieces = 0;
          variants.push_back({"long items only, mma.sync pieces", longs, {}});
        }
      }
      {
        blockrank::internal::CudaBlockPlan doc_order;
        s = blockrank::internal::make_cuda_block_plan(
            layout, lo.device, blockrank::internal::kDefaultSplitKeys, &doc_order, 0, false,
            persistent_kv_heads, c.num_heads);
        if (s.is_ok()) {
          doc_order.side_stream = 0;  // against "all items, grouped on TMA kernel"
          variants.push_back({"all items, document order", doc_order, {}});
        }
      }
      for (int round = 0; round < 7; ++round) {
        for (Variant& v : variants) {
          v.ms.push_back(time_plan(v.plan));
        }
      }
      for (Variant& v : variants) {
        std::sort(v.ms.begin(), v.ms.end());
        std::printf("attention A/B N=%d %s: median %.3f ms (min %.3f, max %.3f)\n", n,
                    v.name.c_str(), v.ms[v.ms.size() / 2], v.ms.front(), v.ms.back());
      }
      double sdpa = NAN;
#ifdef BLOCKRANK_HAVE_SDPA
      // [1, Hq, T, D] with K/V expanded to Hq heads outside the timed region.
      const int64_t g = c.num_heads / c.num_kv_heads;
      const at::Tensor qs = q.permute({1, 0, 2}).unsqueeze(0).contiguous();
      const at::Tensor ks = k.repeat_interleave(g, 1).permute({1, 0, 2}).unsqueeze(0).contiguous();
      const at::Tensor vs = v.repeat_interleave(g, 1).permute({1, 0, 2}).unsqueeze(0).contiguous();
      sdpa = time_cuda_ms(
          [&] { at::scaled_dot_product_attention(qs, ks, vs, {}, 0.0, /*is_causal=*/true); }, 3,
          20);
#endif
      std::printf("| %s | %d | %lld | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.1fx |\n",
                  f.model.c_str(), n, static_cast<long long>(t), ours, ours_long, ours_short,
                  ours_mma_sync, ours_per_head, sdpa, sdpa / ours);
      std::fflush(stdout);
    }
  }
  std::printf("\ncommand:");
  for (int i = 0; i < argc; ++i) {
    std::printf(" %s", argv[i]);
  }
  std::printf("\n");
  return 0;
}
