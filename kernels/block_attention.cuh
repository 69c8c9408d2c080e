// SPDX-License-Identifier: Apache-2.0
// Ragged BlockRank attention forward (BLOCKRANK.md §2.1) on packed, unpadded tokens:
// [instruction | doc_1 | ... | doc_N | query block]. Row r of block b sees
//   - instruction (b = 0) and query block (b = M-1): keys [0, r] (the query block's "everything
//     before it, then itself causally" is exactly the causal prefix);
//   - document b: the whole instruction [0, L0) and its own keys [start_b, r].
// So every row sees at most two contiguous key ranges: [0, a_end) and [b_start, r]. The host
// describes the work as a list of tiles (at most 64 rows of one block, a range of those keys); a
// tile whose key range is long (the query block sees the whole sequence) is split across several
// items writing fp32 partials (flash-decoding split-K), merged by a combine step. One launch covers
// every document, so the cost does not grow with launches per document.
//
// Online softmax in fp32 (base 2), bf16 Q/K/V/O, tensor cores (mma.sync m16n8k16). GQA indexes KV
// head h / (Hq / Hkv). A row that sees no key gets zeros, never NaN. Head dims 64 and 128.
//
// Host launchers only; kernels are private to block_attention.cu. No torch headers (STYLE rule 9).
#ifndef BLOCKRANK_KERNELS_BLOCK_ATTENTION_CUH_
#define BLOCKRANK_KERNELS_BLOCK_ATTENTION_CUH_

#include <cstdint>

#include <cuda_runtime.h>

namespace blockrank {
namespace kernels {

/// Rows per tile (one CTA of 4 warps, 16 rows each).
constexpr int kAttentionTileRows = 64;
/// Key tiles (64 keys each) an item may span and still keep all of its K/V in shared memory while
/// one CTA runs every query head of its KV group over them.
constexpr int kAttentionResidentTiles = 3;

/// One unit of work: rows [row_begin, row_end) of one block (at most kAttentionTileRows rows),
/// against the "virtual" keys [key_begin, key_end) of the row set's visible list, where virtual key
/// v < a_end is token v and v >= a_end is token b_start + (v - a_end) (masked causally: key <=
/// row). partial < 0: the item covers all keys and writes the output; else it writes partial slot
/// `partial` (fp32 unnormalised output plus max and sum per row) for the combine step.
struct AttentionWorkItem {
  int32_t row_begin;
  int32_t row_end;
  int32_t a_end;
  int32_t b_start;
  int32_t key_begin;
  int32_t key_end;
  int32_t partial;
  int32_t pad_;
};

/// Rows [row_begin, row_end) whose output is the merge of partial slots [first_partial,
/// first_partial + num_partials).
struct AttentionCombineItem {
  int32_t row_begin;
  int32_t row_end;
  int32_t first_partial;
  int32_t num_partials;
};

/// Builds the work list of a layout on the host. `block_lengths` = [L0, len_1, ..., len_N, Lq]
/// (num_blocks >= 2, all >= 1). Keys per item are capped at `split_keys` (a multiple of 64) for
/// rows whose visible range is longer. Writes up to the returned counts into the output arrays when
/// they are non-null; call once with nullptr to size them. Returns the number of work items;
/// `num_combine` and `num_partials` receive the other two counts.
int64_t build_attention_work(const int64_t* block_lengths,
                             int64_t num_blocks,
                             int64_t split_keys,
                             AttentionWorkItem* items,
                             AttentionCombineItem* combine,
                             int64_t* num_combine,
                             int64_t* num_partials);

/// Moves the items whose key range spans more than kAttentionResidentTiles tiles (long documents)
/// and every split-K piece (the query block's, long documents') to the front, keeping their order,
/// and returns their count: the value for BlockAttentionParams::num_streamed_items. With
/// `longest_first` the rest are sorted by key count, longest first (stable); without, they keep
/// their order (A/B runs).
int64_t partition_streamed_items(AttentionWorkItem* items,
                                 int64_t num_items,
                                 bool longest_first = true);

struct BlockAttentionParams {
  const void*
      q;  ///< bf16 [T, Hq, D]; element (t, h, d) at q + t*q_row_stride + h*q_head_stride + d
  const void* k;  ///< bf16 [T, Hkv, D]
  const void* v;  ///< bf16 [T, Hkv, D]
  void* out;      ///< bf16 [T, Hq, D]
  int64_t q_row_stride, q_head_stride;
  int64_t k_row_stride, k_head_stride;
  int64_t v_row_stride, v_head_stride;
  int64_t out_row_stride, out_head_stride;
  int32_t num_tokens;
  int32_t num_heads;               ///< Hq
  int32_t num_kv_heads;            ///< Hkv; divides Hq
  int32_t head_dim;                ///< 64 or 128
  float scale;                     ///< > 0; usually 1/sqrt(head_dim)
  const AttentionWorkItem* items;  ///< device, num_items
  int32_t num_items;
  /// Items [0, num_streamed_items) run one CTA per query head (long key ranges: more CTAs, less
  /// serial work each); the rest one CTA per KV head, every query head of the group over K/V
  /// tiles loaded once. Any value in [0, num_items] gives the same result; only the speed differs.
  int32_t num_streamed_items;
  const AttentionCombineItem* combine;  ///< device, num_combine
  int32_t num_combine;
  float* partial_out;  ///< device fp32 [num_partials, Hq, 64, D] (null when num_partials == 0)
  float* partial_ml;   ///< device fp32 [num_partials, Hq, 64, 2] (running max in log2 units, sum)
  /// 0: every item on the mma.sync kernel. 3: the grouped items on the persistent TMA/wgmma
  /// kernel of block_attention_sm90.cuh, which needs head_dim 128, an sm_90 device, contiguous
  /// heads (head strides == head_dim), and for every grouped item: whole (partial < 0), at most
  /// kAttentionTileRows rows, and ceil(a_end / 64) + ceil((row_end - b_start) / 64) <=
  /// kAttentionResidentTiles (the caller's guarantee; CudaBlockPlan::max_split_tiles). Other
  /// values: cudaErrorInvalidValue.
  int32_t wgmma_grouped;
  /// With wgmma_grouped 3, non-zero: the streamed items on block_attention_sm90.cuh's pieces
  /// kernel instead of mma.sync, which needs every streamed item a split-K piece (partial >= 0) of
  /// token keys (a_end 0) with at most 32 rows, 4 query heads per KV head and head_dim 128 (the
  /// caller's guarantee: CudaBlockPlan::streamed_token_pieces).
  int32_t wgmma_pieces;
  /// With wgmma_grouped 3, non-zero: a K/V buffer of the persistent kernel whose previous unit had
  /// the same KV head and a_end keeps its instruction tiles instead of loading them again
  /// (identical keys [0, a_end) within one launch). 0 loads every unit's tiles.
  int32_t resident_instruction;
  /// 0: out holds each head's columns in order. 1 (head_dim 128 only): the lane order, a fixed
  /// permutation of each head's 128 columns, column c = 32 a + 8 b + 2 m + e (a, b, m < 4, e < 2)
  /// stored at 32 a + 8 m + 2 b + e (lane_order_column(); it is its own inverse). That is the
  /// order the wgmma accumulator leaves in a lane (columns 8 dt + 2 t4 + e), so the persistent
  /// kernel stores 16 bytes per lane with no shuffles; the caller undoes it, e.g. with W_o's
  /// columns in the same order (y = out W_oᵀ is then unchanged). cudaErrorInvalidValue with
  /// another head_dim.
  int32_t out_lane_order;
  /// Optional, persistent kernel only (wgmma_grouped 3): the grouped items' Q rows are not yet
  /// rotated; the kernel applies RoPE to each Q tile in shared memory, bit for bit as
  /// layer_ops' rope() with a table, from this (cos, sin) table ([rows, head_dim / 2] bf16x2
  /// words as rope_table() writes them; token row r at table row r - q_rope_row0). Rows of other
  /// items are read as they are. nullptr: Q is rotated.
  const void* q_rope_cos_sin;
  int32_t q_rope_row0;
};

/// Where the lane order (BlockAttentionParams::out_lane_order) stores column `c` of a 128-column
/// head: bits 1-2 and 3-4 of c swapped. Its own inverse.
__host__ __device__ constexpr int lane_order_column(int c) {
  return (c & ~0x1E) | ((c >> 2) & 0x6) | ((c << 2) & 0x18);
}

/// A second stream for block_attention_forward with the persistent kernel (wgmma_grouped 3): the
/// grouped items' persistent kernel goes on `stream`, the streamed items' per-head CTAs on the
/// caller's stream at the same time, so they take the SMs the persistent CTAs leave as they finish
/// (no drain between the two launches). Give `stream` a higher priority than the caller's, so the
/// block scheduler places the persistent CTAs first. Not owned; the events must not be recorded
/// by another thread meanwhile.
struct AttentionSideStream {
  cudaStream_t stream;
  cudaEvent_t fork;  ///< recorded on the caller's stream, awaited on `stream`
  cudaEvent_t join;  ///< recorded on `stream`, awaited on the caller's stream
};

/// Launches the attention (and the combine when there are partials) on `stream`. Pointers and
/// strides must be 16-byte aligned (strides multiples of 8 elements). Returns cudaErrorInvalidValue
/// for an unsupported head_dim, inconsistent sizes or scale <= 0, else the launch error. With
/// `side` (may be null; used only where both the persistent kernel and streamed items run) the
/// work forks onto side->stream and joins back: everything after the call on `stream` still
/// waits for all of it.
cudaError_t block_attention_forward(const BlockAttentionParams& params,
                                    cudaStream_t stream,
                                    const AttentionSideStream* side = nullptr);

}  // namespace kernels
}  // namespace blockrank

#endif  // BLOCKRANK_KERNELS_BLOCK_ATTENTION_CUH_
