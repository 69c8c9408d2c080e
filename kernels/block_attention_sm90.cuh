// SPDX-License-Identifier: Apache-2.0
// The grouped part of block_attention_forward (items [num_streamed_items, num_items), one CTA per
// (item, KV head) running every query head of the group) on Hopper's wgmma instead of mma.sync:
// S = Q Kᵀ and O = P V as warpgroup MMAs over the item's resident K/V tiles, the exact softmax in
// between. Same results as the mma.sync path (bf16 output rounding apart), same partial-output
// format for split pieces. Two forms: one CTA per (item, KV head) with cp.async copies
// (wgmma_grouped 1), and a persistent one (wgmma_grouped 3: one CTA per SM, two warpgroups sharing
// each unit's K/V, TMA copies on mbarriers, each head's output stored under the next head's MMAs).
// Built for sm_90a only (kernels/CMakeLists.txt); block_attention_forward calls it when
// BlockAttentionParams::wgmma_grouped is set.
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

/// Runs items [num_streamed_items, num_items) x KV heads. Preconditions (not checked on the
/// device): head_dim 128 and every one of those items at most kAttentionTileRows rows and
/// kAttentionResidentTiles 64-key tiles (partition_streamed_items puts longer items first), and
/// for wgmma_grouped 3 the layout BlockAttentionParams::wgmma_grouped describes (the kernel traps
/// on an item that breaks it). cudaErrorInvalidValue for other head dims or inconsistent counts;
/// else the launch error.
cudaError_t block_attention_grouped_sm90(const BlockAttentionParams& params, cudaStream_t stream);

}  // namespace kernels
}  // namespace blockrank

#endif  // BLOCKRANK_KERNELS_BLOCK_ATTENTION_SM90_CUH_
