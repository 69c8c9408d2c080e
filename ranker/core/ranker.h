// SPDX-License-Identifier: Apache-2.0
// The BlockRank reranker facade: load a Hugging Face checkpoint directory once, then score the
// documents of one prompt (token ids + block lengths, as the prompt builder produces them) with
// attention inference (BLOCKRANK.md §4.1). No LibTorch types: the prompt builder, the HTTP layer
// and the CLI include only this.
//
// Thread-safety: a Ranker is immutable after open(); score() may be called concurrently from
// several threads (they share the intra-op thread pool).
#ifndef BLOCKRANK_RANKER_CORE_RANKER_H_
#define BLOCKRANK_RANKER_CORE_RANKER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "blockrank/status.h"
#include "ranker/core/model_config.h"

namespace blockrank {

struct RankerOptions {
  /// "cpu", "cuda" or "cuda:N". Default: "cpu".
  std::string device = "cpu";
  /// Compute dtype: "float32", "bfloat16" or "auto" (float32 on CPU, bfloat16 on CUDA). Default:
  /// "auto".
  std::string dtype = "auto";
  /// CPU intra-op threads (LibTorch starts with 1); 0 leaves the setting alone. Default: 0.
  int num_threads = 0;
  /// Overrides blockrank.json's scoring_layer when >= 0. Default: -1.
  int64_t scoring_layer = -1;
  /// Overrides blockrank.json's signal_rows when >= 1. Default: 0.
  int64_t signal_rows = 0;
};

/// One prompt in BlockRank layout: the concatenated ids of every block and each block's length:
/// [instruction, doc_0, ..., doc_{N-1}, query block]. Documents are scored in this order.
struct RankerInput {
  std::vector<int32_t> input_ids;
  std::vector<int32_t> block_lengths;
};

/// Greedy decoding after the prompt (BLOCKRANK.md §4.2).
struct RankerGenerateOptions {
  /// Tokens generated at most. Default: 16.
  int32_t max_new_tokens = 16;
  /// Generation stops after any of these ids.
  std::vector<int32_t> stop_ids;
  /// Also compute the attention scores (§4.1) from the prompt pass. Default: true.
  bool scores = true;
};

struct RankerGeneration {
  std::vector<int32_t> tokens;  ///< generated ids, a final stop id included
  std::vector<float> scores;    ///< as score() when requested, else empty
};

class Ranker {
 public:
  ~Ranker();
  Ranker(const Ranker&) = delete;
  Ranker& operator=(const Ranker&) = delete;

  /// Loads `model_dir` (config.json, safetensors weights, optional blockrank.json). Errors as
  /// Model::load: kNotFound, kInvalidArgument, kCorruption, kUnimplemented, each naming the file
  /// and field.
  static Status open(const std::string& model_dir,
                     const RankerOptions& options,
                     std::unique_ptr<Ranker>* out);

  /// Scores the documents of `input`: `scores` gets N values (a distribution over the documents;
  /// higher is more relevant; divide by settings().temperature for logits). kInvalidArgument for
  /// ids outside the vocabulary, fewer than 3 blocks, lengths that do not sum to the ids, or a
  /// query block shorter than the signal rows. Blocks are used as given: call truncate_blocks()
  /// first to apply §1.4's truncation.
  Status score(const RankerInput& input, std::vector<float>* scores) const;

  /// Greedy decoding continuing `input` (which ends with the completion's "["): the prompt runs
  /// once with BlockRank attention and a KV cache; generated tokens belong to the query block
  /// (they see every earlier token; positions continue after it). Same errors as score().
  Status generate(const RankerInput& input,
                  const RankerGenerateOptions& options,
                  RankerGeneration* out) const;

  const ModelConfig& config() const;
  /// blockrank.json with the options' overrides applied.
  const BlockRankSettings& settings() const;

 private:
  Ranker();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// BLOCKRANK.md §1.4: H = min(longest block, max_block_length) rounded up to a multiple of 16;
/// every block (instruction and query included) keeps its first H tokens. Rewrites `input` in
/// place.
Status truncate_blocks(int64_t max_block_length, RankerInput* input);

}  // namespace blockrank

#endif  // BLOCKRANK_RANKER_CORE_RANKER_H_
