// SPDX-License-Identifier: Apache-2.0
// The BlockRank prompt builder: renders one query and its candidate documents as the pieces the
// released checkpoint was trained on (BLOCKRANK.md §1.1-§1.3), tokenizes every piece on its own (no
// special tokens added; SentencePiece's prefix space therefore applies to each piece, §1.3/§9.8),
// merges the eval completion "[" into the query block and truncates every block to its first H
// tokens (§1.4). The result is the RankerInput the Ranker scores. No LibTorch types.
//
// Two templates, selected by name (blockrank.json "prompt_template"):
//  - "mistral": Mistral-7B-Instruct-v0.3's chat template, exactly as upstream renders it;
//  - "chatml":  a ChatML (<|im_start|>/<|im_end|>) rendering of the upstream Qwen variant (§1.8),
//               which upstream never finished; our own choice, documented in prompt.cc.
//
// Thread-safety: free functions over immutable inputs; safe to call concurrently.
#ifndef BLOCKRANK_RANKER_CORE_PROMPT_H_
#define BLOCKRANK_RANKER_CORE_PROMPT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "blockrank/status.h"
#include "ranker/core/ranker.h"
#include "ranker/tokenizer/tokenizer.h"

namespace blockrank {

enum class PromptTemplate { kMistral, kChatML };

/// "mistral" or "chatml".
const char* prompt_template_name(PromptTemplate tmpl);
/// Parses a template name; kInvalidArgument naming the accepted names otherwise.
StatusOr<PromptTemplate> parse_prompt_template(std::string_view name);

/// One candidate as the prompt sees it; its prompt id is its position in the list.
struct PromptDocument {
  std::string title;
  std::string text;
};

/// The rendered text pieces, before tokenization. Concatenated they are the prompt the reference
/// renders with its chat template; each is tokenized separately.
struct PromptPieces {
  /// Block 0: BOS, the chat preamble, the instruction sentence, the query and "Documents:".
  std::string instruction;
  /// Blocks 1..N: "\nID: k | CONTENT: <title + ' ' + text, stripped> | END ID: k" (mistral).
  std::vector<std::string> documents;
  /// The prompt part of block N+1: "\n" + the final section + the assistant preamble.
  std::string query_prompt;
  /// The eval completion merged into block N+1: "[".
  std::string completion;
};

/// Renders the pieces for `query` and `documents` (ids 0..N-1 in list order).
PromptPieces render_prompt_pieces(PromptTemplate tmpl,
                                  std::string_view query,
                                  const std::vector<PromptDocument>& documents);

/// Python's str.strip() for the whitespace that occurs in text corpora (ASCII whitespace, NBSP and
/// the other Unicode spaces encoded in UTF-8), as the reference strips "title + ' ' + text".
std::string strip_whitespace(std::string_view s);

struct PromptOptions {
  PromptTemplate tmpl = PromptTemplate::kMistral;
  /// Longest block kept (§1.4; H = min(longest block, this) rounded up to 16). Default: 384.
  int64_t max_block_length = 384;
};

struct Prompt {
  /// Ids and block lengths [instruction, doc_0..doc_{N-1}, query block]; the last id is the
  /// completion's "[" (its first token when it tokenizes to several).
  RankerInput input;
  /// H of §1.4: the length every block was truncated to.
  int64_t block_length = 0;
  /// Block lengths before truncation (same order as input.block_lengths).
  std::vector<int32_t> untruncated_lengths;
  /// True when the query text inside the query block was shortened so that the block, completion
  /// included, fits in H (the reference would have cut the completion off instead).
  bool query_truncated = false;
};

/// §1.4's H: min(longest block, max_block_length) rounded up to a multiple of 16.
int64_t truncated_block_length(int64_t longest_block, int64_t max_block_length);

/// §1.4 for the query block, shared by inference prompts and training sequences: when
/// `*query_block` (the query prompt piece followed by `completion`) is longer than `h`, keeping its
/// first H tokens would cut the completion and with it the signal rows, so the block is rebuilt
/// from the longest prefix of the query's tokens whose re-rendered block, completion included,
/// fits, and *truncated is set. The query stays whole in the instruction block. Errors start with
/// `context` (e.g. "file:line: "): the tokenizer's, or kInvalidArgument naming max_block_length
/// when the block's fixed text and the completion alone exceed `h`.
Status fit_query_block(const Tokenizer& tokenizer,
                       PromptTemplate tmpl,
                       std::string_view query,
                       const std::vector<int32_t>& completion,
                       int64_t h,
                       int64_t max_block_length,
                       const std::string& context,
                       std::vector<int32_t>* query_block,
                       bool* truncated);

/// Renders, tokenizes and truncates the prompt. kInvalidArgument for no documents, text that is
/// not valid UTF-8 (the tokenizer's message), or a block length too small for the query block's
/// fixed text (no query token would fit beside it).
Status build_prompt(const Tokenizer& tokenizer,
                    std::string_view query,
                    const std::vector<PromptDocument>& documents,
                    const PromptOptions& options,
                    Prompt* out);

}  // namespace blockrank

#endif  // BLOCKRANK_RANKER_CORE_PROMPT_H_
