// SPDX-License-Identifier: Apache-2.0
// What the instruction-prefix KV cache buys per query (issue 6): score_documents() on a random
// model of the Qwen2.5-0.5B or Mistral-7B shape, driven exactly as Ranker::score drives it
// (PrefixCache lookup, the model with the cached past, background put), for
//  - uncached:     no cache (row groups as the cached runs use, so the scores are comparable);
//  - cold (miss):  lookup misses, block 0 computed and queued for storing;
//  - warm memory:  the whole block 0 (instruction + query) hits the memory tier: the same prompt
//                  again;
//  - warm disk:    the same from the disk tier (memory tier off, so every lookup reads RocksDB;
//                  the blob files are in the OS page cache);
//  - partial:      a new query: only the block-aligned instruction part hits (memory), the query
//                  tail of block 0 is computed.
// plus the store-only costs: a disk-tier lookup vs recomputing block 0 (cold minus warm memory).
// Prints a markdown table and checks that every cached run's scores equal the uncached ones
// (bitwise on CPU fp32; max |diff| is printed for bf16).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#ifdef BLOCKRANK_TORCH_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif

#include "bench/common/model_shapes.h"
#include "plugin/base/file_util.h"
#include "ranker/core/model.h"
#include "ranker/core/prefix_cache.h"

#include <CLI/CLI.hpp>

namespace blockrank {
namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string model = "qwen";
  std::string device = "cpu";
  std::string dtype = "auto";
  int docs = 4;
  int doc_tokens = 64;
  int instruction_tokens = 64;  // the fixed instruction text (block-aligned part: 64)
  int query_tokens = 16;        // the query inside block 0
  int query_block = 32;
  int reps = 3;
  int threads = 0;
  std::string dir = "/tmp/kv_prefix_bench";
};

ModelConfig shape(const std::string& name, int64_t* layer) {
  const ModelConfig c = name == "mistral" ? bench::mistral7b_shape() : bench::qwen25_05b_shape();
  // blockrank.json's default l* (model_config.cc): min(L - 1, 5L/8).
  *layer = std::min<int64_t>(c.num_layers - 1, c.num_layers * 5 / 8);
  return c;
}

void sync(const c10::Device& d) {
#ifdef BLOCKRANK_TORCH_CUDA
  if (d.is_cuda()) {
    at::cuda::getCurrentCUDAStream(d.index()).synchronize();
  }
#else
  (void)d;
#endif
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double fastest(const std::vector<double>& v) {
  return *std::min_element(v.begin(), v.end());
}

// One query: ids and layout; `variant` changes the query text (block 0's tail and the query block).
void make_prompt(
    const Args& a, int64_t vocab, int variant, std::vector<int64_t>* ids, BlockLayout* layout) {
  ids->clear();
  layout->block_lengths.clear();
  for (int i = 0; i < a.instruction_tokens; ++i) {
    ids->push_back((i * 31 + 7) % vocab);
  }
  for (int i = 0; i < a.query_tokens; ++i) {
    ids->push_back((i * 17 + variant * 1009 + 3) % vocab);
  }
  layout->block_lengths.push_back(a.instruction_tokens + a.query_tokens);
  for (int d = 0; d < a.docs; ++d) {
    for (int i = 0; i < a.doc_tokens; ++i) {
      ids->push_back((d * 7919 + i * 29 + 5) % vocab);
    }
    layout->block_lengths.push_back(a.doc_tokens);
  }
  for (int i = 0; i < a.query_block; ++i) {
    ids->push_back((i * 43 + variant * 101 + 1) % vocab);
  }
  layout->block_lengths.push_back(a.query_block);
}

int run(const Args& a) {
  c10::InferenceMode guard;
  if (a.threads > 0) {
    at::set_num_threads(a.threads);
  }
  int64_t layer = 0;
  const ModelConfig config = shape(a.model, &layer);
  LoadOptions lo;
  lo.device = c10::Device(a.device);
  lo.dtype = a.dtype == "auto"       ? (lo.device.is_cpu() ? at::kFloat : at::kBFloat16)
             : a.dtype == "bfloat16" ? at::kBFloat16
                                     : at::kFloat;
  BlockRankSettings settings;
  settings.scoring_layer = layer;
  std::unique_ptr<Model> model;
  const auto t_load = Clock::now();
  Status st = Model::create_random(config, settings, lo, 1, &model);
  if (!st.is_ok()) {
    std::fprintf(stderr, "create_random: %s\n", st.to_string().c_str());
    return 1;
  }
  std::fprintf(stderr, "model %s (%s, %s) ready in %.1f s; l* = %lld\n", a.model.c_str(),
               a.device.c_str(), c10::toString(lo.dtype),
               std::chrono::duration<double>(Clock::now() - t_load).count(),
               static_cast<long long>(layer));
  const int64_t split = a.instruction_tokens / 16 * 16;
  const KvModelFingerprint fp =
      internal::make_kv_fingerprint(*model, layer, "bench", model->uses_fused_layers());
  (void)blockrank::remove_tree(a.dir);

  auto open_cache = [&](const std::string& path, uint64_t memory_bytes,
                        std::unique_ptr<internal::PrefixCache>* out) {
    KvCacheOptions ko;
    ko.disk_path = path;
    ko.memory_budget_bytes = memory_bytes;
    Status s = internal::PrefixCache::open(ko, fp, lo.device, lo.dtype, 8, out);
    if (!s.is_ok()) {
      std::fprintf(stderr, "cache: %s\n", s.to_string().c_str());
      std::exit(1);
    }
  };

  std::vector<int64_t> ids;
  BlockLayout layout;
  make_prompt(a, config.vocab_size, 0, &ids, &layout);
  const int64_t l0 = layout.block_lengths.front();
  std::fprintf(stderr,
               "prompt: %lld tokens (block 0: %lld = %d instruction + %d query; %d docs x %d; "
               "query block %d)\n",
               static_cast<long long>(layout.num_tokens()), static_cast<long long>(l0),
               a.instruction_tokens, a.query_tokens, a.docs, a.doc_tokens, a.query_block);

  bool single_pass = false;  // score without PrefixKv: one row group (the pre-cache forward)
  // One scored query through the cache, as Ranker::score does it. Returns seconds.
  auto query = [&](internal::PrefixCache* cache, const std::vector<int64_t>& q_ids,
                   const BlockLayout& q_layout, std::vector<float>* scores,
                   double* lookup_seconds) {
    sync(lo.device);
    const auto t0 = Clock::now();
    PrefixKv prefix;
    prefix.split = split;
    at::Tensor present;
    internal::PrefixLookup hit;
    std::vector<int32_t> tokens(q_ids.begin(), q_ids.begin() + q_layout.block_lengths.front());
    if (cache != nullptr) {
      Status s = cache->lookup(tokens, split, &hit);
      if (!s.is_ok()) {
        std::fprintf(stderr, "lookup: %s\n", s.to_string().c_str());
        std::exit(1);
      }
      prefix.past = hit.past;
      prefix.present = &present;
    }
    sync(lo.device);
    const auto t1 = Clock::now();
    auto r = model->score_documents(q_ids, q_layout, layer, 2, single_pass ? nullptr : &prefix);
    if (!r.is_ok()) {
      std::fprintf(stderr, "score: %s\n", r.status().to_string().c_str());
      std::exit(1);
    }
    *scores = *r;
    if (cache != nullptr && present.defined()) {
      const int64_t cached = hit.past.defined() ? hit.past.size(3) : 0;
      if (cached < split) {
        cache->put_async(std::vector<int32_t>(tokens.begin(), tokens.begin() + split),
                         present.narrow(3, 0, split).contiguous());
      }
      cache->put_async(tokens, present);
    }
    sync(lo.device);
    const auto t2 = Clock::now();
    if (lookup_seconds != nullptr) {
      *lookup_seconds = std::chrono::duration<double>(t1 - t0).count();
    }
    return std::chrono::duration<double>(t2 - t0).count();
  };
  auto max_diff = [](const std::vector<float>& x, const std::vector<float>& y) {
    double m = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      m = std::max(m, std::fabs(static_cast<double>(x[i]) - y[i]));
    }
    return m;
  };

  std::vector<float> want, got;
  query(nullptr, ids, layout, &want, nullptr);  // warm-up (allocator, threads, kernels)
  std::vector<double> t_single, t_uncached, t_cold, t_mem, t_disk, t_partial, t_lookup_disk,
      t_lookup_mem;
  double diff_cold = 0, diff_mem = 0, diff_disk = 0, diff_partial = 0;
  // Two stores: M (memory tier on) and D (memory tier off, so every lookup reads RocksDB). The
  // rows are measured round-robin, one of each per rep, so load from other processes on a shared
  // machine spreads over all of them alike.
  std::unique_ptr<internal::PrefixCache> mem_cache, disk_cache;
  open_cache(a.dir + "/memory", uint64_t{4} << 30, &mem_cache);
  open_cache(a.dir + "/disk", /*memory_bytes=*/0, &disk_cache);
  query(disk_cache.get(), ids, layout, &got, nullptr);  // populate D
  disk_cache->flush();
  double lk = 0;
  for (int r = 0; r < a.reps; ++r) {
    single_pass = true;
    std::vector<float> single_scores;
    t_single.push_back(query(nullptr, ids, layout, &single_scores, nullptr));
    single_pass = false;
    t_uncached.push_back(query(nullptr, ids, layout, &want, nullptr));
    if (!mem_cache->clear().is_ok()) {  // a miss
      std::fprintf(stderr, "cache clear failed\n");
      return 1;
    }
    t_cold.push_back(query(mem_cache.get(), ids, layout, &got, nullptr));
    diff_cold = std::max(diff_cold, max_diff(got, want));
    mem_cache->flush();
    t_mem.push_back(query(mem_cache.get(), ids, layout, &got, &lk));
    t_lookup_mem.push_back(lk);
    diff_mem = std::max(diff_mem, max_diff(got, want));
    t_disk.push_back(query(disk_cache.get(), ids, layout, &got, &lk));
    t_lookup_disk.push_back(lk);
    diff_disk = std::max(diff_disk, max_diff(got, want));
    std::vector<int64_t> q_ids;
    BlockLayout q_layout;
    make_prompt(a, config.vocab_size, r + 1, &q_ids, &q_layout);
    std::vector<float> q_want;
    query(nullptr, q_ids, q_layout, &q_want, nullptr);
    t_partial.push_back(query(mem_cache.get(), q_ids, q_layout, &got, nullptr));
    diff_partial = std::max(diff_partial, max_diff(got, q_want));
    mem_cache->flush();
  }
  const KvCacheStats sm = mem_cache->store_stats(), sd = disk_cache->store_stats();
  std::fprintf(stderr,
               "store M: %llu memory hits, %llu misses, %llu puts; store D: %llu disk hits, "
               "%llu bytes read\n",
               static_cast<unsigned long long>(sm.memory_hits),
               static_cast<unsigned long long>(sm.misses), static_cast<unsigned long long>(sm.puts),
               static_cast<unsigned long long>(sd.disk_hits),
               static_cast<unsigned long long>(sd.bytes_read));
  const double u = median(t_uncached), c = median(t_cold), m = median(t_mem), d = median(t_disk),
               p = median(t_partial);
  const double entry_mb = static_cast<double>(fp.bytes_per_token()) * l0 / 1e6;
  std::printf(
      "\n%s shape, %s %s, T = %lld tokens (block 0: %lld = %d instruction + %d query; %d "
      "docs x %d; query block %d), l* = %lld, block-0 entry %.2f MB, median of %d\n\n",
      a.model.c_str(), a.device.c_str(), c10::toString(lo.dtype),
      static_cast<long long>(layout.num_tokens()), static_cast<long long>(l0), a.instruction_tokens,
      a.query_tokens, a.docs, a.doc_tokens, a.query_block, static_cast<long long>(layer), entry_mb,
      a.reps);
  // Minimum too: on a shared machine the median carries other processes' load.
  const double um = fastest(t_uncached);
  std::printf("| run | median ms | vs uncached | min ms | vs uncached | max abs diff |\n");
  std::printf("| --- | ---: | ---: | ---: | ---: | ---: |\n");
  auto row = [&](const char* name, const std::vector<double>& t, double diff, bool base) {
    std::printf("| %s | %.2f | %.3f | %.2f | %.3f | %s |\n", name, 1e3 * median(t), median(t) / u,
                1e3 * fastest(t), fastest(t) / um, base ? "-" : std::to_string(diff).c_str());
  };
  row("uncached, one row group (no PrefixKv: the forward before this change)", t_single, 0, true);
  row("uncached (row groups [0,64), [64,L0), [L0,T))", t_uncached, 0, true);
  row("cold (miss + put queued)", t_cold, diff_cold, false);
  row("warm, memory hit (whole block 0)", t_mem, diff_mem, false);
  row("warm, disk hit (whole block 0)", t_disk, diff_disk, false);
  row("partial, new query (instruction part hit)", t_partial, diff_partial, false);
  (void)d;
  (void)p;
  std::printf(
      "\nblock 0 recompute (cold - warm memory): %.2f ms; disk-tier lookup: %.2f ms "
      "(memory-tier lookup %.3f ms); block 0 is %.1f%% of the prompt's tokens\n",
      1e3 * (c - m), 1e3 * median(t_lookup_disk), 1e3 * median(t_lookup_mem),
      100.0 * static_cast<double>(l0) / static_cast<double>(layout.num_tokens()));
  const bool exact = lo.dtype == at::kFloat && lo.device.is_cpu();
  if (exact && (diff_cold != 0 || diff_mem != 0 || diff_disk != 0 || diff_partial != 0)) {
    std::printf("FAIL: cached scores differ from uncached on CPU fp32\n");
    return 2;
  }
  // The tables are out before the caches close: on CUDA, closing a cache that holds device payloads
  // crashed on the H200 (issue #6, docs/BENCHMARKS.md), and the measurements should survive that.
  std::fflush(stdout);
  mem_cache.reset();
  disk_cache.reset();
  (void)blockrank::remove_tree(a.dir);
  return 0;
}

}  // namespace
}  // namespace blockrank

int main(int argc, char** argv) {
  blockrank::Args a;
  CLI::App app("Instruction-prefix KV cache: per-query latency cold vs warm");
  app.add_option("--model", a.model, "qwen (Qwen2.5-0.5B shape) or mistral (Mistral-7B shape)")
      ->capture_default_str();
  app.add_option("--device", a.device, "cpu, cuda, cuda:N")->capture_default_str();
  app.add_option("--dtype", a.dtype, "auto, float32, bfloat16")->capture_default_str();
  app.add_option("--docs", a.docs, "Documents per prompt")->capture_default_str();
  app.add_option("--doc-tokens", a.doc_tokens, "Tokens per document")->capture_default_str();
  app.add_option("--instruction-tokens", a.instruction_tokens, "Fixed instruction tokens")
      ->capture_default_str();
  app.add_option("--query-tokens", a.query_tokens, "Query tokens inside block 0")
      ->capture_default_str();
  app.add_option("--query-block", a.query_block, "Query block tokens")->capture_default_str();
  app.add_option("--reps", a.reps, "Repetitions per row (median)")->capture_default_str();
  app.add_option("--threads", a.threads, "CPU threads (0: LibTorch default)")
      ->capture_default_str();
  app.add_option("--dir", a.dir, "Scratch directory of the disk tier (removed)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  return blockrank::run(a);
}
