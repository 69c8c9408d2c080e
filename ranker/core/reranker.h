// SPDX-License-Identifier: Apache-2.0
// The BlockRank reranker: one query and its candidate documents in, the candidates ranked out. It
// owns a Ranker and the checkpoint's Tokenizer, builds the prompt (prompt.h) and ranks either by
// attention inference at layer l* (BLOCKRANK.md §4.1, the recommended path) or by greedy decoding
// of the bracketed id list (§4.2). No LibTorch types.
//
// Thread-safety: a Reranker is immutable after open(); rerank() may be called concurrently.
#ifndef BLOCKRANK_RANKER_CORE_RERANKER_H_
#define BLOCKRANK_RANKER_CORE_RERANKER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "blockrank/status.h"
#include "plugin/base/rerank_backend.h"
#include "ranker/core/prompt.h"
#include "ranker/core/ranker.h"
#include "ranker/tokenizer/tokenizer.h"

namespace blockrank {

enum class RerankMode {
  /// Rank by the attention of the signal rows at layer l* (§4.1).
  kAttention,
  /// Greedy-decode "[3, 7, ...]" after the prompt and rank by the generated ids (§4.2).
  kDecode,
};

/// "attention" or "decode".
const char* rerank_mode_name(RerankMode mode);
StatusOr<RerankMode> parse_rerank_mode(std::string_view name);

struct RerankerOptions {
  RankerOptions ranker;
  /// tokenizer.json or a directory holding one. Default: empty (the model directory).
  std::string tokenizer;
  /// Longest block kept (§1.4); 0 uses blockrank.json's max_block_length. Default: 0.
  int64_t max_block_length = 0;
  /// "mistral" or "chatml"; empty uses blockrank.json's prompt_template. Default: empty.
  std::string prompt_template;
  /// Decode mode: tokens generated at most. Default: 32 (room for about ten ids of two digits).
  int32_t max_new_tokens = 32;

  /// kInvalidArgument for a negative max_block_length, max_new_tokens < 1 or an unknown template.
  Status validate() const;
};

struct RerankOptions {
  RerankMode mode = RerankMode::kAttention;
  /// When set, the candidates are shuffled with this seed before they are numbered 0..N-1, as the
  /// upstream eval does (§1.7), and mapped back afterwards. The generator is std::mt19937_64 with
  /// a Fisher-Yates pass: deterministic here, not bit-compatible with Python's random.shuffle.
  /// Default: unset (prompt ids follow the candidate order).
  std::optional<uint64_t> shuffle_seed;
};

struct RankedDocument {
  std::string doc_id;
  /// Position in the candidate list given to rerank().
  size_t index = 0;
  /// The document's id in the prompt (its position after the optional shuffle).
  int32_t prompt_id = 0;
  /// Ranking score, higher is better. Attention mode: S(q, d), the scores sum to 1. Decode mode:
  /// N - rank, so that sorting by score reproduces the decoded order.
  double score = 0;
  /// S(q, d) from the attention at layer l* (computed in both modes).
  float attention = 0;
  /// Decode mode: the model generated this document's id.
  bool generated = false;
};

struct Reranking {
  /// Every candidate, best first.
  std::vector<RankedDocument> ranked;
  int64_t prompt_tokens = 0;
  /// H of §1.4.
  int64_t block_length = 0;
  /// The query text in the query block was shortened to keep the completion (prompt.h).
  bool query_truncated = false;
  /// Decode mode: the generated text after "[", and the valid distinct prompt ids parsed from it.
  std::string generated_text;
  std::vector<int32_t> generated_ids;
  /// Wall time spent building (rendering + tokenizing) the prompt and running the model.
  double prompt_seconds = 0;
  double model_seconds = 0;
};

/// Parses the generated continuation of "Final Answer: [": the integers before the first "]" (or
/// the end), keeping those in [0, num_documents) once each, in order. Anything else (words, other
/// brackets, huge numbers, negative signs) is skipped, so garbage yields an empty list.
std::vector<int32_t> parse_generated_ids(std::string_view text, int32_t num_documents);

class Reranker {
 public:
  ~Reranker();
  Reranker(const Reranker&) = delete;
  Reranker& operator=(const Reranker&) = delete;

  /// Loads the model (Ranker::open's errors) and the tokenizer (options.tokenizer or
  /// `model_dir`/tokenizer.json; kNotFound/kInvalidArgument from Tokenizer::load), resolves the
  /// prompt template and block length. kInvalidArgument when the tokenizer has more ids than the
  /// model's vocabulary, or for invalid options.
  static Status open(const std::string& model_dir,
                     const RerankerOptions& options,
                     std::unique_ptr<Reranker>* out);

  /// Ranks `documents` (doc ids, titles, texts; at least one) for `query`. Ties in attention
  /// mode keep the candidate order. In decode mode the parsed ids come first in generated order;
  /// the remaining documents follow in attention order (the prompt pass computes those scores at
  /// no extra cost). kInvalidArgument for no documents or text that is not UTF-8; errors of
  /// Ranker::score / Ranker::generate otherwise.
  Status rerank(std::string_view query,
                const std::vector<RerankDocument>& documents,
                const RerankOptions& options,
                Reranking* out) const;

  const Ranker& ranker() const;
  const Tokenizer& tokenizer() const;
  PromptTemplate prompt_template() const;
  int64_t max_block_length() const;

 private:
  Reranker();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace blockrank

#endif  // BLOCKRANK_RANKER_CORE_RERANKER_H_
