// SPDX-License-Identifier: Apache-2.0
// Training data for BlockRank fine-tuning: reads the upstream JSONL (BLOCKRANK.md §5.1) and turns
// one line into one training sequence (§1.7 candidate sampling, §1.1-§1.4 prompt, §3.1 labels).
// The prompt pieces come from ranker/core/prompt.h, the same builder inference uses, so a model
// trained on these sequences sees at inference exactly the prompt it was trained on; training only
// adds the completion "[" + ids + "]" + EOS where inference stops at "[".
//
// Thread-safety: free functions over immutable inputs; build_training_example() may be called
// concurrently (the tokenizer is thread-safe).
#ifndef BLOCKRANK_TRAINING_EXAMPLE_H_
#define BLOCKRANK_TRAINING_EXAMPLE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "blockrank/status.h"
#include "ranker/core/prompt.h"
#include "ranker/tokenizer/tokenizer.h"

namespace blockrank::training {

/// The label value the loss ignores (HF convention).
inline constexpr int32_t kIgnoreLabel = -100;
/// Text of the filler documents added when an example has fewer than N candidates (§1.7, §9.15).
inline constexpr const char* kDummyDocumentText = "This is a dummy document.";

struct RawDocument {
  std::string doc_id, title, text;
};

/// One line of the upstream JSONL (BLOCKRANK.md §5.1): query, query_id,
/// documents[{doc_id,title,text}], answer_ids (strings). `line` is the 1-based line number in
/// `source` (for errors).
struct RawExample {
  std::string query, query_id;
  std::vector<RawDocument> documents;
  std::vector<std::string> answer_ids;
  std::string source;
  int64_t line = 0;
};

/// Reading rules. Documents repeating a doc_id keep the first occurrence (upstream stores them in
/// a dict keyed by doc_id, §5.1); answer_ids that name no document of the line are dropped; a
/// missing query_id becomes the 0-based row index, as upstream defaults it. `title` is optional.
struct ReadOptions {
  /// Skip and count bad lines instead of failing on the first one. Default: false.
  bool skip_bad = false;
};

struct ReadStats {
  int64_t read = 0;     ///< examples returned
  int64_t skipped = 0;  ///< bad lines skipped (skip_bad only)
  /// The first few skip reasons ("file:line: ..."), for the caller to report. At most 10.
  std::vector<std::string> first_errors;
};

/// Reads the JSONL (plain or gzip); bad lines (not JSON, missing or mistyped fields, an empty
/// query, empty document text, no positives among the documents) are kInvalidArgument naming
/// file:line and field, or are skipped and counted when options.skip_bad. kNotFound / kIOError when
/// the file cannot be read. Blank lines are ignored. `stats` may be null.
Status read_training_jsonl(const std::string& path,
                           const ReadOptions& options,
                           std::vector<RawExample>* out,
                           ReadStats* stats);

/// Parses one JSONL line (what read_training_jsonl does per line); `source`/`line` name it in
/// errors and are stored in *out. `row` is the 0-based row index (the default query_id).
Status parse_training_line(const std::string& json_line,
                           const std::string& source,
                           int64_t line,
                           int64_t row,
                           RawExample* out);

/// What the trainer consumes: one BlockRank training sequence.
struct TrainingExample {
  std::string query_id;
  /// Prompt + completion ("[3, 7]" + EOS) tokens.
  std::vector<int32_t> input_ids;
  /// [instruction, doc_0..doc_{N-1}, last block = query prompt + completion]; sums to input_ids.
  std::vector<int32_t> block_lengths;
  /// Same size as input_ids: kIgnoreLabel except the completion tokens ("[" included); HF
  /// convention (the loss shifts: logits at t-1 predict labels[t]).
  std::vector<int32_t> labels;
  /// Prompt ids (0..N-1, after shuffle/renumbering) of the relevant documents, ascending.
  std::vector<int32_t> positives;
  /// Absolute index of the "[" token; signal rows are {signal_row-1, signal_row}.
  int32_t signal_row = 0;
  /// Added by T2: corpus doc_id of each prompt position (dummies are ""), for evaluation/debugging
  /// (upstream's remapped_doc_ids).
  std::vector<std::string> doc_ids;
  /// H of §1.4: the length every block was truncated to.
  int32_t block_length = 0;
  /// The query text in the last block was shortened so that the completion fits in H.
  bool query_truncated = false;
};

struct ExampleOptions {
  /// Candidates per prompt N (§1.5). Default: 30.
  int32_t num_documents = 30;
  /// Longest block kept (§1.4; H = min(longest block, this) rounded up to 16). Default: 160.
  int64_t max_block_length = 160;
  /// Sampling and shuffle seed; example `index` uses seed + index (upstream's dataset_seed +
  /// index). Default: 42.
  uint64_t seed = 42;
  PromptTemplate tmpl = PromptTemplate::kMistral;
};

/// Keeps positives, samples negatives to N (pads with dummy documents), shuffles, renumbers,
/// renders the prompt with ranker/core/prompt.h's templates plus the completion, truncates per
/// §1.4, sets labels. Deterministic in (options.seed, example index). kInvalidArgument (naming
/// source:line) for an example with no positives or no documents, num_documents < 1, a tokenizer
/// without an EOS id, or a block length too small for the query block's fixed text plus the
/// completion.
Status build_training_example(const Tokenizer& tokenizer,
                              const RawExample& raw,
                              const ExampleOptions& options,
                              uint64_t index,
                              TrainingExample* out);

/// The completion text for sorted prompt ids: "[3, 7]" (the EOS token is appended as an id).
std::string completion_text(const std::vector<int32_t>& positives);

}  // namespace blockrank::training

#endif  // BLOCKRANK_TRAINING_EXAMPLE_H_
