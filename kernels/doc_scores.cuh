// SPDX-License-Identifier: Apache-2.0
// Fused BlockRank document scoring at layer l* (BLOCKRANK.md §3.2 steps 2-4, §4.1): from Q of the
// R signal rows and K of the document tokens, the score of document d is
//   S(d) = mean over heads h and rows r of Σ_{j ∈ d} softmax_j(q_{h,r} · k_j / sqrt(D)),
// the softmax running over all document columns only, in fp32. The [Hq, R, T_docs] attention matrix
// is never stored: pass 1 reduces (max, sum) per (head, row) over key chunks (split-K), a combine
// gives each (head, row) its log-sum-exp, pass 2 recomputes the logits and sums the probabilities
// per (token, KV head), pass 3 sums those per document (one warp per document; deterministic, no
// atomics).
//
// Host launchers only; kernels are private to doc_scores.cu. No torch headers (STYLE rule 9).
#ifndef BLOCKRANK_KERNELS_DOC_SCORES_CUH_
#define BLOCKRANK_KERNELS_DOC_SCORES_CUH_

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

namespace blockrank {
namespace kernels {

/// At most this many (query head of one KV group) x (signal row) pairs per CTA: the R signal rows
/// run in chunks of 32 / (Hq / Hkv) rows (a grid dimension), so any R works with Hq / Hkv <= 32.
constexpr int kDocScoreMaxPairs = 32;

struct DocScoreParams {
  const void* q;  ///< bf16 [R, Hq, D]: the signal rows, after RoPE
  int64_t q_row_stride, q_head_stride;
  const void* k;  ///< bf16 [T_docs, Hkv, D]: the document tokens only, after RoPE
  int64_t k_row_stride, k_head_stride;
  const int32_t* doc_offsets;  ///< device [N + 1]: doc d owns tokens [offsets[d], offsets[d+1])
  int32_t num_docs;
  int32_t num_doc_tokens;  ///< T_docs = offsets[N]
  int32_t num_rows;        ///< R
  int32_t num_heads;       ///< Hq
  int32_t num_kv_heads;    ///< Hkv
  int32_t head_dim;        ///< 64 or 128
  float scale;             ///< 1/sqrt(head_dim)
  float* workspace;        ///< device, doc_scores_workspace_floats() floats
  float* scores;           ///< device fp32 [N]
};

/// Floats of workspace document_scores() needs.
size_t doc_scores_workspace_floats(int32_t num_doc_tokens,
                                   int32_t num_rows,
                                   int32_t num_heads,
                                   int32_t num_kv_heads);

/// Launches the three passes on `stream`. cudaErrorInvalidValue for an unsupported head_dim, more
/// than kDocScoreMaxPairs query heads per KV head, or empty inputs; else the launch error.
cudaError_t document_scores(const DocScoreParams& params, cudaStream_t stream);

}  // namespace kernels
}  // namespace blockrank

#endif  // BLOCKRANK_KERNELS_DOC_SCORES_CUH_
