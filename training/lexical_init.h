// SPDX-License-Identifier: Apache-2.0
// A "lexical prior" initialisation for training a small BlockRank ranker from scratch (issue #10,
// docs/MODEL.md).
//
// From random weights the InfoNCE loss on the scoring layer's attention does not find token
// matching (docs/MODEL.md, runs 1-5 and the H = 128 sweep): nothing routes a query token's
// attention to the same token in a document. A pretrained LLM brings that routing with it; this
// initialisation builds the simplest form of it into the weights before training starts:
//  - every layer below the scoring layer l* starts as the identity (o_proj and down_proj zero, the
//    "zero-init residual branch" of Fixup/ReZero; their other matrices keep the random init, so
//    gradients reach them once the output projections move), so at l* every token's residual is
//    its embedding;
//  - at l*, each KV head's k_proj maps the normalised embedding onto a random orthonormal basis in
//    the RoPE pairs that rotate slowly (at most `max_phase` radians over the spread of
//    query-row/document distances), and the q_proj rows of its query heads do the same,
//    pre-rotated by the mean query-to-document distance of the BlockRank layout (query block at
//    `query_position_offset`, documents right after block 0, BLOCKRANK.md §2.2). The rotations
//    then cancel, and q·k/sqrt(D) is about `match_logit` when a signal row and a document slot
//    hold the same token, zero-mean noise of about match_logit/sqrt(2·pairs) otherwise.
// With enough signal rows to cover the query (BlockRankSettings::signal_rows, the last rows of the
// query block, §1.6), the doc-only softmax at l* then splits each query token's attention among
// the documents containing it: a lexical ranker at step 0, which training refines.
//
// Thread-safety: none; call before training starts.
#ifndef BLOCKRANK_TRAINING_LEXICAL_INIT_H_
#define BLOCKRANK_TRAINING_LEXICAL_INIT_H_

#include <cstdint>
#include <vector>

#include "blockrank/status.h"
#include "training/trainable_model.h"

namespace blockrank::training {

struct LexicalInitOptions {
  /// The scoring layer l* (0-based).
  int64_t layer = 0;
  /// Longest block H of the prompts the model will see (bounds the distance spread).
  int64_t block_length = 128;
  /// First position of the query block (BLOCKRANK.md §2.2).
  int64_t query_position_offset = 16384;
  /// Expected q·k/sqrt(D) of a token with itself. Default: 8.
  double match_logit = 8.0;
  /// Largest residual rotation (radians) a RoPE pair may have over the distance spread to be used.
  double max_phase = 0.35;
  uint64_t seed = 42;
  /// Optional: token ids whose signal rows should not vote for any document (the query block's
  /// fixed text). They get a shared direction u in their embeddings (every other embedding has its
  /// u component removed, and k_proj at l* ignores u), and q_proj at l* maps u onto the query of
  /// `anchor_token`, a token every document holds once (the document id line's "CONTENT"): such a
  /// row attends to the documents' anchors and splits its mass evenly, instead of favouring
  /// documents full of the template's common words. Empty: not done.
  std::vector<int32_t> neutral_tokens;
  int32_t anchor_token = -1;
  /// q·k/sqrt(D) of a neutral row with an anchor. Default: 20.
  double anchor_logit = 20.0;
};

/// Rewrites `model`'s weights in place as described above. kInvalidArgument when the layer is out
/// of range, the model has Qwen3's q/k norms (not supported), or no RoPE pair is slow enough.
Status apply_lexical_init(const LexicalInitOptions& options, TrainableModel* model);

}  // namespace blockrank::training

#endif  // BLOCKRANK_TRAINING_LEXICAL_INIT_H_
