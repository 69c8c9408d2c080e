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
#include "plugin/base/logging.h"
#include "ranker/core/model_config.h"
#include "ranker/kv_cache/kv_cache.h"

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

  /// Instruction-prefix KV cache (issue 6) for score(): block 0's K/V of layers 0..l*-1 is looked
  /// up before and stored after each prompt. generate() bypasses it (decoding needs every layer's
  /// K/V; they would need their own entries). Default: false.
  bool kv_cache = false;
  /// RocksDB directory of the disk tier; empty: memory tier only. Default: "".
  std::string kv_cache_dir;
  /// Memory-tier budget (device memory on CUDA, RAM on CPU). Default: 1 GiB.
  uint64_t kv_cache_memory_bytes = uint64_t{1} << 30;
  /// Disk-tier budget. Default: 16 GiB.
  uint64_t kv_cache_disk_bytes = uint64_t{16} << 30;
  /// Puts waiting for the background writer at most; more are dropped (and counted). Default: 8.
  int kv_cache_put_queue = 8;
  /// Part of the cache fingerprint (Reranker fills it with the tokenizer's digest). Default: "".
  std::string tokenizer_digest;
  /// Receives the cache's warnings (corrupt entries, disk failures). Default: none.
  std::shared_ptr<Logger> logger;
};

/// The cache's counters: the store's (lookups, hits per tier, misses, bytes, evictions,
/// corruptions) and the ranker's (tokens reused, puts dropped).
struct RankerCacheStats {
  bool enabled = false;
  KvCacheStats store;
  uint64_t prefix_tokens = 0;  ///< Block-0 tokens of the scored prompts.
  uint64_t reused_tokens = 0;  ///< Of those, tokens whose K/V came from the cache.
  uint64_t puts_queued = 0;
  uint64_t puts_dropped = 0;  ///< Writer queue full: not stored.
  uint64_t put_errors = 0;
  /// "ok", or why the disk tier is off.
  std::string disk_status;
};

/// One prompt in BlockRank layout: the concatenated ids of every block and each block's length:
/// [instruction, doc_0, ..., doc_{N-1}, query block]. Documents are scored in this order.
struct RankerInput {
  std::vector<int32_t> input_ids;
  std::vector<int32_t> block_lengths;
  /// Tokens at the start of block 0 that do not depend on the query (the instruction text); the
  /// KV cache stores their block-aligned part on its own so that new queries reuse it. 0: unknown.
  int32_t instruction_length = 0;
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

  /// The KV cache's counters (enabled = false without one).
  RankerCacheStats cache_stats() const;
  /// Waits until the cache's background writer has stored every queued entry (tests, benchmarks).
  void flush_cache() const;

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
