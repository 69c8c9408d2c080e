// SPDX-License-Identifier: Apache-2.0
// ranker_bench: milliseconds per query of BlockRank attention inference (Model::score_documents:
// layers 0..l*-1 in full, Q/K of layer l* for the signal rows and document keys) on a random model
// shaped like Qwen2.5-0.5B (24 layers, hidden 896, 14 q / 2 kv heads, head dim 64, FFN 4864, vocab
// 151936, tied, q/k/v bias). Prompt: a 64-token instruction, N documents of a fixed length and a
// 32-token query block (the shape of docs/GPU.md's baseline). Random weights do not change the
// cost. Prints a Markdown table and the command.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <ATen/Parallel.h>

#include "bench/common/model_shapes.h"
#include "ranker/core/model.h"

#include <CLI/CLI.hpp>

namespace {

struct Flags {
  int docs = 20;
  int doc_len = 128;
  int instruction_len = 64;
  int query_len = 32;
  std::vector<int> layers = {15, 23};
  std::string dtype = "float32";
  int threads = 0;
  int reps = 3;
};

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  CLI::App app{"BlockRank attention-inference latency on CPU (Qwen2.5-0.5B shape, random weights)"};
  app.add_option("--docs", f.docs, "Documents per query")->capture_default_str();
  app.add_option("--doc-len", f.doc_len, "Tokens per document")->capture_default_str();
  app.add_option("--instruction-len", f.instruction_len, "Instruction block tokens")
      ->capture_default_str();
  app.add_option("--query-len", f.query_len, "Query block tokens")->capture_default_str();
  app.add_option("--layers", f.layers, "Scoring layers l* to time (0-based)")
      ->capture_default_str();
  app.add_option("--dtype", f.dtype, "float32 or bfloat16")->capture_default_str();
  app.add_option("--threads", f.threads, "Intra-op threads (0 = all cores)")->capture_default_str();
  app.add_option("--reps", f.reps, "Timed repetitions after one warm-up (median reported)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  const int threads = f.threads > 0
                          ? f.threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);

  const blockrank::ModelConfig c = blockrank::bench::qwen25_05b_shape();
  blockrank::LoadOptions lo;
  lo.dtype = f.dtype == "bfloat16" ? c10::kBFloat16 : c10::kFloat;
  std::unique_ptr<blockrank::Model> model;
  blockrank::Status s =
      blockrank::Model::create_random(c, blockrank::BlockRankSettings{}, lo, 1, &model);
  if (!s.is_ok()) {
    std::fprintf(stderr, "ranker_bench: %s\n", s.to_string().c_str());
    return 1;
  }
  blockrank::BlockLayout layout;
  layout.block_lengths.push_back(f.instruction_len);
  for (int d = 0; d < f.docs; ++d) {
    layout.block_lengths.push_back(f.doc_len);
  }
  layout.block_lengths.push_back(f.query_len);
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < layout.num_tokens(); ++i) {
    ids.push_back((i * 7919 + 13) % c.vocab_size);
  }
  std::printf(
      "| scoring layer l* | layers run | tokens | dtype | threads | ms/query (median of %d) | min "
      "|\n",
      f.reps);
  std::printf("| --- | --- | --- | --- | --- | --- | --- |\n");
  for (int layer : f.layers) {
    std::vector<double> ms;
    for (int rep = 0; rep <= f.reps; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      auto r = model->score_documents(ids, layout, layer, 2);
      const auto t1 = std::chrono::steady_clock::now();
      if (!r.is_ok()) {
        std::fprintf(stderr, "ranker_bench: %s\n", r.status().to_string().c_str());
        return 1;
      }
      if (rep > 0) {  // rep 0 is the warm-up
        ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      }
    }
    std::sort(ms.begin(), ms.end());
    std::printf("| %d | %d + Q/K of l* | %lld | %s | %d | %.0f | %.0f |\n", layer, layer,
                static_cast<long long>(layout.num_tokens()), f.dtype.c_str(), threads,
                ms[ms.size() / 2], ms[0]);
    std::fflush(stdout);
  }
  std::printf("\ncommand:");
  for (int i = 0; i < argc; ++i) {
    std::printf(" %s", argv[i]);
  }
  std::printf("\n");
  return 0;
}
