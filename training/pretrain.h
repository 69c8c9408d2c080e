// SPDX-License-Identifier: Apache-2.0
// Causal-LM pretraining data for a small model trained from random weights (issue #10): plain text
// from a JSONL corpus, tokenized, concatenated and cut into fixed-length chunks, each a
// next-token-prediction example the BlockRank trainer runs unchanged.
//
// Why: a model that starts from random weights does not learn BlockRank's attention scoring (no
// attention routes to the few query tokens inside the prompt's long fixed text; docs/MODEL.md),
// while BlockRank itself fine-tunes a pretrained LLM that brings such routing along. Pretraining
// the small model as a language model first gives it the same starting point.
//
// How an example is laid out: three consecutive chunks of the stream fill the three blocks the
// BlockRank layout needs, so no slot is padding: block 0 = BOS + chunk a (causal over itself at
// positions 0..), the single document block = chunk b (it sees block 0 and itself causally, at the
// positions right after block 0: a plain continuation), the query block = chunk c (it sees
// everything before it, at the query block's offset 16384). Every token after the BOS carries its
// next-token label, so the loss is a causal LM's over a, b and c; with one candidate the
// contrastive term is identically 0.
//
// Thread-safety: the functions are reentrant.
#ifndef BLOCKRANK_TRAINING_PRETRAIN_H_
#define BLOCKRANK_TRAINING_PRETRAIN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "blockrank/status.h"
#include "ranker/tokenizer/tokenizer.h"
#include "training/example.h"

namespace blockrank::training {

struct TextChunkOptions {
  /// Tokens per chunk (one block of an example). Default: 256.
  int64_t chunk_tokens = 256;
  /// JSONL fields whose texts are joined with a space to form a document (missing ones skipped).
  std::vector<std::string> text_fields = {"title", "text"};
  /// Stop after this many documents (0: all).
  int64_t max_documents = 0;
};

struct TextChunkStats {
  int64_t documents = 0;  ///< documents read (with some text)
  int64_t empty = 0;      ///< lines whose text fields were all empty or missing
  int64_t tokens = 0;     ///< tokens in the stream (EOS separators included)
};

/// Reads the JSONL corpus at `path` (plain or gzip; one object per line), tokenizes each document,
/// appends the tokenizer's EOS, concatenates everything into one stream and cuts it into chunks of
/// chunk_tokens tokens (a shorter tail is dropped). Errors: kInvalidArgument "file:line: ..." for a
/// line that is not a JSON object or a text field that is not a string, or a tokenizer without
/// EOS; the tokenizer's errors with the line's location; kNotFound / kIOError from the file.
Status read_text_chunks(const std::string& path,
                        const Tokenizer& tokenizer,
                        const TextChunkOptions& options,
                        std::vector<std::vector<int32_t>>* chunks,
                        TextChunkStats* stats);

/// The training example of three consecutive non-empty chunks (layout above).
TrainingExample make_lm_example(const std::vector<int32_t>& a,
                                const std::vector<int32_t>& b,
                                const std::vector<int32_t>& c,
                                int32_t bos_id);

}  // namespace blockrank::training

#endif  // BLOCKRANK_TRAINING_PRETRAIN_H_
