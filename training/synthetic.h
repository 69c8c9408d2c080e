// SPDX-License-Identifier: Apache-2.0
// A synthetic BlockRank task at the token level, for the trainer's tests and benchmarks (no
// tokenizer, no corpus): the query holds one rare token, and the positive document is the one that
// contains it. Documents are otherwise random common tokens, so attention from the signal rows has
// to match the rare token to rank well; chance P@1 is 1/N.
//
// Token ids (vocab_size >= 64): 0 pad, 1 "[", 2 "]", 3 EOS, 4 "Answer", 5..5+N-1 the document-id
// tokens, then common tokens up to vocab_size/2, rare tokens above. The sequence mirrors the real
// prompt: [instruction + query] [doc_0] .. [doc_{N-1}] [query block "Answer" "[" id "]" EOS],
// labels on "[" id "]" EOS, signal rows = the token before "[" and "[" itself.
//
// Thread-safety: a pure function.
#ifndef BLOCKRANK_TRAINING_SYNTHETIC_H_
#define BLOCKRANK_TRAINING_SYNTHETIC_H_

#include <cstdint>

#include "training/example.h"

namespace blockrank::training {

struct SyntheticTaskOptions {
  int32_t vocab_size = 64;         ///< >= 2·(5 + num_documents) + 8.
  int32_t num_documents = 4;       ///< N.
  int32_t instruction_tokens = 4;  ///< fixed instruction tokens before the query
  int32_t query_tokens = 3;        ///< query length (one of them is the rare token)
  int32_t min_doc_tokens = 4;      ///< document length range (the id token included)
  int32_t max_doc_tokens = 8;
  int32_t query_block_tokens = 2;  ///< filler tokens of the last block before the query
  /// Chance that a token of a negative document is a (different) rare token, so that "has a rare
  /// token" alone does not find the positive; 0 makes the task that easy.
  double distractor_rate = 0.25;
};

/// Example `index` of the task drawn from `seed` (deterministic, platform-independent).
TrainingExample make_synthetic_example(const SyntheticTaskOptions& options,
                                       uint64_t seed,
                                       uint64_t index);

}  // namespace blockrank::training

#endif  // BLOCKRANK_TRAINING_SYNTHETIC_H_
