// SPDX-License-Identifier: Apache-2.0
// BlockRank loss terms and in-prompt ranking metrics. See loss.h.
#include "training/loss.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <ATen/ATen.h>

namespace blockrank::training {

at::Tensor document_scores(const at::Tensor& signal_logits, const Batch& batch) {
  const int64_t b = batch.batch_size, n = batch.num_blocks - 2, h = batch.block_length;
  // α' over all document slots together (pads carry a large negative, so they get exactly 0), then
  // the mean over heads and signal rows, then the sum over each document's H slots.
  at::Tensor p = at::softmax(signal_logits, -1).mean(at::IntArrayRef{1, 2});  // [B, N·H]
  return p.view({b, n, h}).sum(-1);
}

LossTerms loss_terms(const ForwardOutput& out, const Batch& batch, double temperature) {
  LossTerms t;
  const auto opts = at::TensorOptions().device(batch.input_ids.device()).dtype(at::kFloat);
  if (out.label_logits.defined() && out.label_logits.size(0) > 0) {
    t.lm_sum = at::cross_entropy_loss(out.label_logits, batch.label_ids, /*weight=*/{},
                                      at::Reduction::Sum);
    t.lm_count = out.label_logits.size(0);
  } else {
    t.lm_sum = at::zeros({}, opts);
  }
  if (out.signal_logits.defined()) {
    at::Tensor logits = document_scores(out.signal_logits, batch) / temperature;  // [B, N]
    // Multi-positive InfoNCE: −[logsumexp over positives − logsumexp over all candidates].
    at::Tensor masked_pos =
        logits.masked_fill(batch.positive.logical_not(), -std::numeric_limits<double>::infinity());
    at::Tensor per_example = at::logsumexp(logits, {-1}) - at::logsumexp(masked_pos, {-1});
    t.aux_sum = per_example.sum();
    t.aux_count = batch.batch_size;
    at::Tensor top = logits.detach().argmax(-1, /*keepdim=*/true);
    t.aux_correct = batch.positive.gather(1, top).sum().item<int64_t>();
  } else {
    t.aux_sum = at::zeros({}, opts);
  }
  return t;
}

RankingSums ranking_sums(const at::Tensor& scores, const at::Tensor& positive) {
  RankingSums r;
  at::Tensor s = scores.detach().to(at::kCPU, at::kDouble).contiguous();
  at::Tensor pos = positive.to(at::kCPU, at::kBool).contiguous();
  const int64_t b = s.size(0), n = s.size(1);
  const double* sp = s.data_ptr<double>();
  const bool* pp = pos.data_ptr<bool>();
  for (int64_t i = 0; i < b; ++i) {
    std::vector<int64_t> order(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) {
      order[static_cast<size_t>(j)] = j;
    }
    // Descending score; ties by prompt id, so the order is deterministic.
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t c) { return sp[i * n + a] > sp[i * n + c]; });
    int64_t num_pos = 0;
    for (int64_t j = 0; j < n; ++j) {
      num_pos += pp[i * n + j] ? 1 : 0;
    }
    double dcg = 0, idcg = 0;
    for (int64_t rank = 0; rank < std::min<int64_t>(10, n); ++rank) {
      if (pp[i * n + order[static_cast<size_t>(rank)]]) {
        dcg += 1.0 / std::log2(static_cast<double>(rank) + 2.0);
      }
      if (rank < num_pos) {
        idcg += 1.0 / std::log2(static_cast<double>(rank) + 2.0);
      }
    }
    r.p1 += pp[i * n + order[0]] ? 1.0 : 0.0;
    r.ndcg10 += idcg > 0 ? dcg / idcg : 0.0;
    ++r.count;
  }
  return r;
}

}  // namespace blockrank::training
