// SPDX-License-Identifier: Apache-2.0
// The BlockRank training objective (BLOCKRANK.md §3): next-token cross-entropy on the completion
// (§3.1) plus λ · the multi-positive InfoNCE over the layer-l* attention of the signal rows (§3.2,
// the HEAD variant: softmax over the document columns only, mean over heads and the signal rows,
// summed per document, logits = S/τ). Everything here is in fp32 (fp64 for an fp64 model).
//
// The loss terms are returned as sums with their counts, so that a step made of several
// micro-batches (gradient accumulation, groups of different shapes) normalises once over the whole
// step: the result is the same as one big batch.
//
// Thread-safety: free functions.
#ifndef BLOCKRANK_TRAINING_LOSS_H_
#define BLOCKRANK_TRAINING_LOSS_H_

#include <cstdint>

#include <ATen/core/Tensor.h>

#include "training/trainable_model.h"

namespace blockrank::training {

/// S(q, d_k) of §3.2 steps 2-4 from forward()'s signal logits [B, Hq, R, N·H]: [B, N], each row
/// summing to 1. Differentiable.
at::Tensor document_scores(const at::Tensor& signal_logits, const Batch& batch);

struct LossTerms {
  at::Tensor lm_sum;     ///< scalar: Σ over label tokens of −log p(label) (0 when no LM logits)
  at::Tensor aux_sum;    ///< scalar: Σ over examples of the InfoNCE loss (0 when no signal logits)
  int64_t lm_count = 0;  ///< label tokens
  int64_t aux_count = 0;    ///< examples
  int64_t aux_correct = 0;  ///< examples whose top-scored document is a positive
};

/// The loss terms of one forward. `temperature` is τ (§3.2; 0.05).
LossTerms loss_terms(const ForwardOutput& out, const Batch& batch, double temperature);

/// Ranking metrics of scores [B, N] against batch.positive: Σ P@1 and Σ nDCG@10 (binary gains,
/// ideal DCG from the example's positives).
struct RankingSums {
  double p1 = 0, ndcg10 = 0;
  int64_t count = 0;
};
RankingSums ranking_sums(const at::Tensor& scores, const at::Tensor& positive);

}  // namespace blockrank::training

#endif  // BLOCKRANK_TRAINING_LOSS_H_
