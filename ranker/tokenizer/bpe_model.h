// SPDX-License-Identifier: Apache-2.0
// The BPE model of a Hugging Face tokenizer.json: vocabulary, ranked merges, and the merge loop,
// in the two flavours BlockRank needs. Byte-level models (Qwen, Llama-3) take raw bytes and start
// from one symbol per byte; SentencePiece-style models (Llama-2, Mistral) start from one symbol per
// code point and fall back to <0xNN> byte tokens for characters outside the vocabulary.
//
// Merge order is "lowest rank first, leftmost first on ties", which is what both the Rust
// `tokenizers` crate (a heap on (rank, position)) and transformers.js (rank + position/length)
// compute. Results of words shorter than kMaxCachedWordBytes are memoised in a bounded cache.
//
// Thread-safety: immutable after build(); encode_word() may run concurrently (the cache is
// guarded by a mutex).
#ifndef BLOCKRANK_RANKER_TOKENIZER_BPE_MODEL_H_
#define BLOCKRANK_RANKER_TOKENIZER_BPE_MODEL_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "blockrank/status.h"

namespace blockrank::internal {

/// Open-addressing map from a packed (left id, right id) pair to the merge's rank and result id.
/// std::unordered_map costs a node allocation and a pointer chase per lookup; this is the hot
/// loop of BPE.
class MergeTable {
 public:
  struct Entry {
    uint64_t key = kEmpty;
    int32_t rank = 0;
    int32_t id = 0;
  };
  static constexpr uint64_t kEmpty = ~uint64_t{0};

  void reserve(size_t n);
  /// Inserts or overwrites (a repeated merge keeps its last rank, as both references do).
  void insert(int32_t left, int32_t right, int32_t rank, int32_t id);
  const Entry* find(int32_t left, int32_t right) const {
    if (left < 0 || right < 0) {
      return nullptr;
    }
    const uint64_t key = pack(left, right);
    size_t slot = hash(key) & mask_;
    while (true) {
      const Entry& e = slots_[slot];
      if (e.key == key) {
        return &e;
      }
      if (e.key == kEmpty) {
        return nullptr;
      }
      slot = (slot + 1) & mask_;
    }
  }

 private:
  static uint64_t pack(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }
  static size_t hash(uint64_t key) {
    return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> 20);
  }
  std::vector<Entry> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

struct BpeOptions {
  /// Input words are raw bytes mapped through the GPT-2 byte alphabet (ByteLevel pre-tokenizer).
  bool byte_level = false;
  /// Unknown characters become <0xNN> tokens when all of them are in the vocabulary.
  bool byte_fallback = false;
  /// A word that is itself a vocabulary entry is emitted whole, without merging (Llama-3).
  bool ignore_merges = false;
  /// Consecutive unknown tokens collapse into one.
  bool fuse_unk = false;
  std::optional<int32_t> unk_id;
};

class BpeModel {
 public:
  static constexpr size_t kMaxCachedWordBytes = 256;
  static constexpr size_t kMaxCacheEntries = 1 << 18;

  /// `vocab[id]` is the token string of id (empty for ids without a token); `lookup` additionally
  /// holds the added tokens (transformers.js puts them into the same map, which matters for
  /// ignore_merges). `merges` are (left, right) token strings in rank order.
  static Status build(const BpeOptions& options,
                      std::vector<std::string> vocab,
                      const std::vector<std::pair<std::string, int32_t>>& added,
                      const std::vector<std::pair<std::string, std::string>>& merges,
                      std::unique_ptr<BpeModel>* out);

  /// Appends the ids of one pre-tokenized word. For byte-level models `word` is raw bytes.
  Status encode_word(std::string_view word, std::vector<int32_t>* ids) const;

  const BpeOptions& options() const { return options_; }

 private:
  BpeModel() = default;
  /// Token id of a model-space string (raw bytes for byte-level models), or -1.
  int32_t lookup(std::string_view key) const {
    auto it = lookup_.find(key);
    return it == lookup_.end() ? -1 : it->second;
  }
  Status merge_word(std::string_view word, std::vector<int32_t>* ids) const;
  Status encode_cached(std::string_view word, std::vector<int32_t>* ids) const;

  BpeOptions options_;
  std::vector<std::string> vocab_;
  // Keys of lookup_ point into key_storage_, which is filled before the map and never resized.
  std::vector<std::string> key_storage_;
  std::unordered_map<std::string_view, int32_t> lookup_;
  MergeTable merges_;
  bool chunk_at_metaspace_ = false;
  int32_t byte_ids_[256];       // byte-level: the id of each byte's alphabet character
  int32_t byte_fallback_[256];  // SentencePiece: the id of <0xNN>, or -1

  mutable std::mutex cache_mutex_;
  mutable std::deque<std::string> cache_keys_;
  mutable std::unordered_map<std::string_view, std::vector<int32_t>> cache_;
};

}  // namespace blockrank::internal

#endif  // BLOCKRANK_RANKER_TOKENIZER_BPE_MODEL_H_
