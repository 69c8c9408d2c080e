// SPDX-License-Identifier: Apache-2.0
// Hugging Face `tokenizer.json` loading, encoding and decoding, exact to the reference tokenizers.
// Supports byte-level BPE with a regex pre-tokenizer (Qwen2/Qwen3, Llama-3) and SentencePiece-style
// BPE with Prepend/Replace normalizers, byte fallback and "▁" (Mistral, Llama-2). Added and special
// tokens are matched in the text before BPE, as the reference does.
//
// Thread-safety: a loaded Tokenizer is immutable from the caller's view; encode()/decode() may be
// called concurrently from several threads (internal caches are synchronised).
#ifndef BLOCKRANK_RANKER_TOKENIZER_TOKENIZER_H_
#define BLOCKRANK_RANKER_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "blockrank/status.h"

namespace blockrank {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  /// Loads `path`: a tokenizer.json file, or a model directory holding one. Malformed or
  /// unsupported files give kInvalidArgument/kUnimplemented with the file name and the offending
  /// field.
  static Status load(const std::string& path, std::unique_ptr<Tokenizer>* out);

  /// Encodes `text` (must be valid UTF-8, else kInvalidArgument with the byte offset) into token
  /// ids. No special tokens are added (HF `add_special_tokens=False`); added/special tokens that
  /// appear in the text (e.g. "<s>", "[INST]", "<|im_start|>") are matched as the reference does.
  virtual Status encode(std::string_view text, std::vector<int32_t>* ids) const = 0;

  /// Decodes ids back to text (HF `decode(ids, skip_special_tokens=False)`). Unknown ids give
  /// kInvalidArgument.
  virtual Status decode(const std::vector<int32_t>& ids, std::string* text) const = 0;

  /// Id of a vocabulary or added token, or std::nullopt.
  virtual std::optional<int32_t> token_to_id(std::string_view token) const = 0;
  /// The token string of an id (empty if out of range).
  virtual std::string id_to_token(int32_t id) const = 0;
  /// Number of ids (vocabulary plus added tokens; max id + 1).
  virtual int32_t vocab_size() const = 0;

  /// Special ids, when the tokenizer defines them (read from added_tokens / the model section).
  virtual std::optional<int32_t> bos_id() const = 0;
  virtual std::optional<int32_t> eos_id() const = 0;
  virtual std::optional<int32_t> unk_id() const = 0;
  virtual std::optional<int32_t> pad_id() const = 0;

  /// A stable hex digest of the tokenizer.json content (for cache fingerprints).
  virtual const std::string& digest() const = 0;
};

}  // namespace blockrank

#endif  // BLOCKRANK_RANKER_TOKENIZER_TOKENIZER_H_
