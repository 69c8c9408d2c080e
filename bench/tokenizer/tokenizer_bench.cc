// SPDX-License-Identifier: Apache-2.0
// Tokenizer throughput: encodes every string of a JSONL file (one JSON string per line, e.g. the
// reference set from scripts/tokenizer-reference/setup.sh) with one tokenizer on one thread, and
// prints one JSON line: tokens, the cold pass (empty merge cache) and the best of the warm passes
// in tokens/s. Pin it to one core with taskset; bench/tokenizer/run_bench.sh does that.
//
//   tokenizer_bench TOKENIZER_JSON_OR_DIR STRINGS_JSONL [WARM_PASSES=5]
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
  auto pass = [&](size_t* tokens) -> double {
    *tokens = 0;
    const auto start = std::chrono::steady_clock::now();
    for (const std::string& text : texts) {
      blockrank::Status s = tok->encode(text, &ids);
      if (!s.is_ok()) {
        std::fprintf(stderr, "%s\n", s.to_string().c_str());
        std::exit(1);
      }
      *tokens += ids.size();
    }
    return seconds_since(start);
  };
  size_t tokens = 0;
  const double cold_s = pass(&tokens);
  double best_s = 1e30;
  for (int i = 0; i < warm_passes; ++i) {
    best_s = std::min(best_s, pass(&tokens));
  }
  std::printf(
      "{\"impl\": \"cpp\", \"strings\": %zu, \"bytes\": %zu, \"tokens\": %zu, \"load_s\": %.3f, "
      "\"cold_tokens_per_s\": %.0f, \"warm_tokens_per_s\": %.0f}\n",
      texts.size(), bytes, tokens, load_s, tokens / cold_s, tokens / best_s);
  return 0;
}
