// SPDX-License-Identifier: Apache-2.0
// BPE merge loop and vocabulary tables; see bpe_model.h for the contract.
#include "ranker/tokenizer/bpe_model.h"

#include <algorithm>
#include <cstdio>

#include "ranker/tokenizer/unicode_util.h"

namespace blockrank::internal {

void MergeTable::reserve(size_t n) {
  size_t capacity = 16;
  while (capacity < n * 2) {
    capacity <<= 1;
  }
  slots_.assign(capacity, Entry{});
  mask_ = capacity - 1;
  size_ = 0;
}

void MergeTable::insert(int32_t left, int32_t right, int32_t rank, int32_t id) {
  BLOCKRANK_ASSERT(size_ * 2 < slots_.size(), "MergeTable::reserve() too small");
  const uint64_t key = pack(left, right);
  size_t slot = hash(key) & mask_;
  while (slots_[slot].key != kEmpty && slots_[slot].key != key) {
    slot = (slot + 1) & mask_;
  }
  if (slots_[slot].key == kEmpty) {
    ++size_;
  }
  slots_[slot] = Entry{key, rank, id};
}

Status BpeModel::build(const BpeOptions& options,
                       std::vector<std::string> vocab,
                       const std::vector<std::pair<std::string, int32_t>>& added,
                       const std::vector<std::pair<std::string, std::string>>& merges,
                       std::unique_ptr<BpeModel>* out) {
  std::unique_ptr<BpeModel> model(new BpeModel());
  model->options_ = options;
  model->vocab_ = std::move(vocab);
  const std::vector<std::string>& tokens = model->vocab_;

  // Model-space keys: raw bytes for byte-level models, so that encoding never has to map the
  // input through the byte alphabet; the token string itself otherwise.
  std::vector<std::pair<size_t, int32_t>> key_ids;
  auto add_key = [&](const std::string& token, int32_t id) {
    if (token.empty()) {
      return;
    }
    if (options.byte_level) {
      std::string bytes;
      if (!byte_level_to_bytes(token, &bytes)) {
        return;  // Not reachable from any byte string (e.g. an added token with a raw space).
      }
      model->key_storage_.push_back(std::move(bytes));
    } else {
      model->key_storage_.push_back(token);
    }
    key_ids.emplace_back(model->key_storage_.size() - 1, id);
  };
  model->key_storage_.reserve(tokens.size() + added.size());
  for (size_t id = 0; id < tokens.size(); ++id) {
    add_key(tokens[id], static_cast<int32_t>(id));
  }
  for (const auto& [content, id] : added) {
    add_key(content, id);
  }
  model->lookup_.reserve(key_ids.size());
  for (const auto& [index, id] : key_ids) {
    model->lookup_[model->key_storage_[index]] = id;  // added tokens override, as in the reference
  }

  for (int b = 0; b < 256; ++b) {
    const char byte = static_cast<char>(b);
    model->byte_ids_[b] = options.byte_level ? model->lookup(std::string_view(&byte, 1)) : -1;
    model->byte_fallback_[b] = -1;
  }

  // Merges are stated as token strings; resolve them against the model vocabulary only.
  std::unordered_map<std::string_view, int32_t> by_token;
  by_token.reserve(tokens.size());
  for (size_t id = 0; id < tokens.size(); ++id) {
    if (!tokens[id].empty()) {
      by_token.emplace(tokens[id], static_cast<int32_t>(id));
    }
  }
  if (options.byte_fallback) {
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof(name), "<0x%02X>", b);
      auto it = by_token.find(name);
      model->byte_fallback_[b] = it == by_token.end() ? -1 : it->second;
    }
  }
  // Whether a SentencePiece-style word may be cut before each "▁" (see encode_word): "▁" must be
  // a token, and no merge may join a left part not ending in "▁" to a right part starting with it.
  static constexpr std::string_view kMeta = "\xE2\x96\x81";
  model->chunk_at_metaspace_ = !options.byte_level && by_token.count(kMeta) > 0;
  for (const auto& [left, right] : merges) {
    if (!model->chunk_at_metaspace_) {
      break;
    }
    const bool right_starts = std::string_view(right).substr(0, kMeta.size()) == kMeta;
    const bool left_ends = left.size() >= kMeta.size() &&
                           std::string_view(left).substr(left.size() - kMeta.size()) == kMeta;
    if (right_starts && !left_ends) {
      model->chunk_at_metaspace_ = false;
    }
  }
  model->merges_.reserve(merges.size());
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    auto l = by_token.find(left);
    auto r = by_token.find(right);
    joined = left + right;
    auto m = by_token.find(joined);
    const char* missing = l == by_token.end()   ? left.c_str()
                          : r == by_token.end() ? right.c_str()
                          : m == by_token.end() ? joined.c_str()
                                                : nullptr;
    if (missing != nullptr) {
      return Status::invalid_argument("model.merges[" + std::to_string(rank) + "] (\"" + left +
                                      "\", \"" + right + "\") refers to \"" + missing +
                                      "\", which is not in model.vocab");
    }
    model->merges_.insert(l->second, r->second, static_cast<int32_t>(rank), m->second);
  }
  *out = std::move(model);
  return Status::ok();
}

namespace {

struct Symbol {
  int32_t id;  // -1: a character outside the vocabulary; kDead: merged into its left neighbour
  int32_t prev;
  int32_t next;
  uint32_t begin;  // byte span in the word, used to expand unknown characters
  uint32_t end;
};
constexpr int32_t kDead = -2;

struct Candidate {
  int32_t rank;
  int32_t pos;
  int32_t left;
  int32_t right;
  int32_t merged;
  bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

}  // namespace

Status BpeModel::merge_word(std::string_view word, std::vector<int32_t>* ids) const {
  // Scratch buffers are per thread so that concurrent encoders neither share nor reallocate.
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<Candidate> heap;
  symbols.clear();
  heap.clear();
  if (options_.byte_level) {
    for (size_t i = 0; i < word.size(); ++i) {
      const int32_t n = static_cast<int32_t>(symbols.size());
      symbols.push_back(Symbol{byte_ids_[static_cast<unsigned char>(word[i])], n - 1, n + 1,
                               static_cast<uint32_t>(i), static_cast<uint32_t>(i + 1)});
    }
  } else {
    size_t pos = 0;
    while (pos < word.size()) {
      const size_t begin = pos;
      pos += utf8_char_len(static_cast<unsigned char>(word[pos]));
      pos = std::min(pos, word.size());
      const int32_t n = static_cast<int32_t>(symbols.size());
      symbols.push_back(Symbol{lookup(word.substr(begin, pos - begin)), n - 1, n + 1,
                               static_cast<uint32_t>(begin), static_cast<uint32_t>(pos)});
    }
  }
  if (symbols.empty()) {
    return Status::ok();
  }
  symbols.back().next = -1;

  auto push_candidate = [&](int32_t pos) {
    const int32_t next = symbols[pos].next;
    const MergeTable::Entry* e = merges_.find(symbols[pos].id, symbols[next].id);
    if (e != nullptr) {
      heap.push_back(Candidate{e->rank, pos, symbols[pos].id, symbols[next].id, e->id});
      std::push_heap(heap.begin(), heap.end(), std::greater<Candidate>());
    }
  };
  for (int32_t pos = 0; pos + 1 < static_cast<int32_t>(symbols.size()); ++pos) {
    push_candidate(pos);
  }
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<Candidate>());
    const Candidate c = heap.back();
    heap.pop_back();
    Symbol& left = symbols[c.pos];
    // Stale entries (either side already merged away or changed) are skipped lazily.
    if (left.id != c.left || left.next < 0 || symbols[left.next].id != c.right) {
      continue;
    }
    Symbol& right = symbols[left.next];
    left.id = c.merged;
    left.end = right.end;
    left.next = right.next;
    right.id = kDead;
    if (left.next >= 0) {
      symbols[left.next].prev = c.pos;
      push_candidate(c.pos);
    }
    if (left.prev >= 0) {
      push_candidate(left.prev);
    }
  }

  bool last_unk = false;
  for (int32_t pos = 0; pos >= 0; pos = symbols[pos].next) {
    const Symbol& s = symbols[pos];
    if (s.id >= 0) {
      ids->push_back(s.id);
      last_unk = false;
      continue;
    }
    if (options_.byte_fallback) {
      bool all = true;
      for (uint32_t i = s.begin; i < s.end; ++i) {
        all = all && byte_fallback_[static_cast<unsigned char>(word[i])] >= 0;
      }
      if (all) {
        for (uint32_t i = s.begin; i < s.end; ++i) {
          ids->push_back(byte_fallback_[static_cast<unsigned char>(word[i])]);
        }
        last_unk = false;
        continue;
      }
    }
    if (!options_.unk_id.has_value()) {
      return Status::invalid_argument(
          "text holds a character that is not in the vocabulary, and the tokenizer has neither "
          "byte fallback nor an unk_token");
    }
    // fuse_unk fuses within a word; transformers.js also fuses across the words of a section.
    // With byte fallback (Llama-2, Mistral) no unk is ever produced, so the two agree there.
    if (!(options_.fuse_unk && last_unk)) {
      ids->push_back(*options_.unk_id);
    }
    last_unk = true;
  }
  return Status::ok();
}

Status BpeModel::encode_word(std::string_view word, std::vector<int32_t>* ids) const {
  if (word.empty()) {
    return Status::ok();
  }
  if (options_.ignore_merges) {
    const int32_t id = lookup(word);
    if (id >= 0) {
      ids->push_back(id);
      return Status::ok();
    }
  }
  if (!chunk_at_metaspace_) {
    return encode_cached(word, ids);
  }
  // SentencePiece-style models see a whole section as one word. Cutting it before each "▁" that
  // follows another character gives the same ids (build() checked that no merge joins a symbol
  // ending in something else with one starting with "▁"), and turns it into short, cacheable
  // words.
  static constexpr std::string_view kMeta = "\xE2\x96\x81";
  size_t begin = 0;
  for (size_t hit = word.find(kMeta, 1); hit != std::string_view::npos;
       hit = word.find(kMeta, hit + kMeta.size())) {
    if (hit >= begin + kMeta.size() && word.substr(hit - kMeta.size(), kMeta.size()) == kMeta) {
      continue;  // inside a run of "▁": those may merge with each other
    }
    if (hit > begin) {
      BLOCKRANK_RETURN_IF_ERROR(encode_cached(word.substr(begin, hit - begin), ids));
      begin = hit;
    }
  }
  return encode_cached(word.substr(begin), ids);
}

Status BpeModel::encode_cached(std::string_view word, std::vector<int32_t>* ids) const {
  const bool cacheable = word.size() < kMaxCachedWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return Status::ok();
    }
  }
  const size_t first = ids->size();
  BLOCKRANK_RETURN_IF_ERROR(merge_word(word, ids));
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kMaxCacheEntries) {
      // Dropping everything is crude but bounded and cheap; real text re-warms it quickly.
      cache_.clear();
      cache_keys_.clear();
    }
    if (cache_.find(word) == cache_.end()) {
      cache_keys_.emplace_back(word);
      cache_.emplace(
          cache_keys_.back(),
          std::vector<int32_t>(ids->begin() + static_cast<std::ptrdiff_t>(first), ids->end()));
    }
  }
  return Status::ok();
}

}  // namespace blockrank::internal
