// SPDX-License-Identifier: Apache-2.0
// The synthetic rare-token task. See synthetic.h.
#include "training/synthetic.h"

#include <algorithm>
#include <string>
#include <vector>

namespace blockrank::training {

namespace {

// splitmix64: a tiny generator whose output is the same on every platform (unlike the
// distributions of <random>).
struct SplitMix {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  int32_t uniform(int32_t lo, int32_t hi) {                                // [lo, hi]
    return lo + static_cast<int32_t>(next() % static_cast<uint64_t>(hi - lo + 1));
  }
};

}  // namespace

TrainingExample make_synthetic_example(const SyntheticTaskOptions& o,
                                       uint64_t seed,
                                       uint64_t index) {
  SplitMix rng{seed * 0x100000001B3ull + index * 0x9E3779B97F4A7C15ull + 1};
  const int32_t n = o.num_documents;
  const int32_t common_lo = 5 + n, common_hi = o.vocab_size / 2 - 1;
  const int32_t rare_lo = o.vocab_size / 2, rare_hi = o.vocab_size - 1;
  TrainingExample e;
  e.query_id = "synthetic-" + std::to_string(index);
  const int32_t rare = rng.uniform(rare_lo, rare_hi);
  std::vector<int32_t> query;
  for (int32_t i = 0; i < o.query_tokens - 1; ++i) {
    query.push_back(rng.uniform(common_lo, common_hi));
  }
  query.insert(query.begin() + rng.uniform(0, o.query_tokens - 1), rare);
  auto push_block = [&](const std::vector<int32_t>& ids) {
    e.input_ids.insert(e.input_ids.end(), ids.begin(), ids.end());
    e.block_lengths.push_back(static_cast<int32_t>(ids.size()));
  };
  // Instruction (fixed tokens) + query.
  std::vector<int32_t> block;
  for (int32_t i = 0; i < o.instruction_tokens; ++i) {
    block.push_back(common_lo + i % (common_hi - common_lo + 1));
  }
  block.insert(block.end(), query.begin(), query.end());
  push_block(block);
  const int32_t positive = rng.uniform(0, n - 1);
  for (int32_t d = 0; d < n; ++d) {
    block.assign(1, 5 + d);  // the document's id token
    const int32_t len = rng.uniform(o.min_doc_tokens, o.max_doc_tokens);
    while (static_cast<int32_t>(block.size()) < len) {
      // Negatives get rare tokens too (never the query's), so "has a rare token" is not enough.
      int32_t tok = rng.unit() < o.distractor_rate ? rng.uniform(rare_lo, rare_hi)
                                                   : rng.uniform(common_lo, common_hi);
      if (tok == rare) {
        tok = common_lo;
      }
      block.push_back(tok);
    }
    if (d == positive) {
      block[static_cast<size_t>(rng.uniform(1, len - 1))] = rare;
    }
    push_block(block);
  }
  // Query block: filler, the query, "Answer", then the completion "[" id "]" EOS.
  block.clear();
  for (int32_t i = 0; i < o.query_block_tokens; ++i) {
    block.push_back(common_lo + (i + 3) % (common_hi - common_lo + 1));
  }
  block.insert(block.end(), query.begin(), query.end());
  block.push_back(4);
  const int32_t prompt_len = static_cast<int32_t>(e.input_ids.size() + block.size());
  block.insert(block.end(), {1, 5 + positive, 2, 3});
  push_block(block);
  e.labels.assign(e.input_ids.size(), kIgnoreLabel);
  for (size_t i = static_cast<size_t>(prompt_len); i < e.input_ids.size(); ++i) {
    e.labels[i] = e.input_ids[i];
  }
  e.signal_row = prompt_len;  // the "[" token
  e.positives = {positive};
  return e;
}

}  // namespace blockrank::training
