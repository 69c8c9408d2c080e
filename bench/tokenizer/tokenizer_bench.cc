// SPDX-License-Identifier: Apache-2.0
// Tokenizer throughput: encodes every string of a JSONL file (one JSON string per line, e.g. the
// reference set from scripts/tokenizer-reference/setup.sh) with one tokenizer on one thread, and
// prints one JSON line: tokens, the cold pass (empty merge cache) and the best of the warm passes
// in tokens per CPU second (process CPU time, so that other jobs sharing the core inflate the
// result less than wall time would) and in tokens per wall second. Pin it to one core with
// taskset; bench/tokenizer/run_bench.sh does that.
//
//   tokenizer_bench TOKENIZER_JSON_OR_DIR STRINGS_JSONL [WARM_PASSES=5]
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "ranker/tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

struct Timing {
  double wall_s;
  double cpu_s;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s TOKENIZER STRINGS_JSONL [WARM_PASSES]\n", argv[0]);
    return 2;
  }
  const int warm_passes = argc > 3 ? std::max(1, std::atoi(argv[3])) : 5;
  const auto load_start = std::chrono::steady_clock::now();
  std::unique_ptr<blockrank::Tokenizer> tok;
  blockrank::Status status = blockrank::Tokenizer::load(argv[1], &tok);
  if (!status.is_ok()) {
    std::fprintf(stderr, "%s\n", status.to_string().c_str());
    return 1;
  }
  const double load_s = seconds_since(load_start);

  std::vector<std::string> texts;
  size_t bytes = 0;
  {
    std::ifstream in(argv[2]);
    std::string line;
    while (std::getline(in, line)) {
      texts.push_back(nlohmann::json::parse(line).get<std::string>());
      bytes += texts.back().size();
    }
  }
  if (texts.empty()) {
    std::fprintf(stderr, "%s: no strings\n", argv[2]);
    return 1;
  }

  std::vector<int32_t> ids;
  auto pass = [&](size_t* tokens) -> Timing {
    *tokens = 0;
    const auto start = std::chrono::steady_clock::now();
    const double cpu_start = cpu_seconds();
    for (const std::string& text : texts) {
      blockrank::Status s = tok->encode(text, &ids);
      if (!s.is_ok()) {
        std::fprintf(stderr, "%s\n", s.to_string().c_str());
        std::exit(1);
      }
      *tokens += ids.size();
    }
    return Timing{seconds_since(start), cpu_seconds() - cpu_start};
  };
  size_t tokens = 0;
  const Timing cold = pass(&tokens);
  Timing best{1e30, 1e30};
  for (int i = 0; i < warm_passes; ++i) {
    const Timing t = pass(&tokens);
    best.wall_s = std::min(best.wall_s, t.wall_s);
    best.cpu_s = std::min(best.cpu_s, t.cpu_s);
  }
  std::printf(
      "{\"impl\": \"cpp\", \"strings\": %zu, \"bytes\": %zu, \"tokens\": %zu, \"load_s\": %.3f, "
      "\"cold_tokens_per_cpu_s\": %.0f, \"warm_tokens_per_cpu_s\": %.0f, "
      "\"cold_tokens_per_wall_s\": %.0f, \"warm_tokens_per_wall_s\": %.0f}\n",
      texts.size(), bytes, tokens, load_s, tokens / cold.cpu_s, tokens / best.cpu_s,
      tokens / cold.wall_s, tokens / best.wall_s);
  return 0;
}
