// SPDX-License-Identifier: Apache-2.0
// The grouped part of block_attention_forward (items [num_streamed_items, num_items), every query
// head of a KV group over the item's shared K/V) on Hopper instead of mma.sync: a persistent kernel
// (one CTA per SM, two warpgroups sharing each (item, KV head) unit's K/V, TMA copies on
// mbarriers), S = Q Kᵀ and O = P V as warpgroup MMAs over the item's resident K/V tiles, the exact
// softmax in between, each head's output stored under the next head's MMAs. Same results as the
// mma.sync path (bf16 output rounding apart). Built for sm_90a only (kernels/CMakeLists.txt);
// block_attention_forward calls it when BlockAttentionParams::wgmma_grouped is 3. (A
// one-CTA-per-item wgmma form with cp.async copies was here until session 11; it was never faster
// end to end: docs/BENCHMARKS.md, session 8.) Also the streamed split-K pieces of the query block
// on wgmma (block_attention_pieces_sm90, BlockAttentionParams::wgmma_pieces; session 19).
//
// Host launchers only; no torch headers (STYLE rule 9).
#ifndef BLOCKRANK_KERNELS_BLOCK_ATTENTION_SM90_CUH_
#define BLOCKRANK_KERNELS_BLOCK_ATTENTION_SM90_CUH_

#include <cuda_runtime.h>

#include "kernels/block_attention.cuh"

namespace blockrank {
namespace kernels {

/// True when `device` can run the kernel (compute capability 9.0) and this build has it.
bool block_attention_sm90_supported(int device);

/// Runs items [num_streamed_items, num_items) x KV heads. Preconditions: those of
/// BlockAttentionParams::wgmma_grouped 3 (the kernel traps on an item whose tiles do not fit).
/// cudaErrorInvalidValue for another wgmma_grouped, head dim or head stride, row strides that are
/// not multiples of 8 elements, an output not 16-byte aligned, or inconsistent counts; else the
/// launch error.
cudaError_t block_attention_grouped_sm90(const BlockAttentionParams& params, cudaStream_t stream);

/// Runs the streamed items [0, num_streamed_items) x KV heads on wgmma (BlockAttentionParams::
/// wgmma_pieces): every one a split-K piece (partial >= 0) of token keys (a_end 0) of at most 32
/// rows, four query heads per KV head, head_dim 128 (the caller's guarantee). Writes their partial
/// slots; the combine is the caller's. cudaErrorInvalidValue for another shape or strides, else
/// the launch error.
cudaError_t block_attention_pieces_sm90(const BlockAttentionParams& params, cudaStream_t stream);

}  // namespace kernels
}  // namespace blockrank

#endif  // BLOCKRANK_KERNELS_BLOCK_ATTENTION_SM90_CUH_
