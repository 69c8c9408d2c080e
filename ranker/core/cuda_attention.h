// SPDX-License-Identifier: Apache-2.0
// Adapter between ATen tensors and the CUDA kernels of kernels/ (block_attention, doc_scores,
// layer_ops): checks devices, dtypes, shapes and strides, builds the per-prompt work list once, and
// launches on the current CUDA stream. Compiled to stubs (cuda_kernels_usable() == false) unless
// the build has the kernels and a CUDA LibTorch (BLOCKRANK_TORCH_CUDA). Internal header (ATen
// types).
//
// Thread-safety: the functions are reentrant; a CudaBlockPlan is immutable once built.
#ifndef BLOCKRANK_RANKER_CORE_CUDA_ATTENTION_H_
#define BLOCKRANK_RANKER_CORE_CUDA_ATTENTION_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include "blockrank/status.h"
#include "ranker/core/model.h"

namespace blockrank::internal {

/// A developer switch of the GPU path read from the environment (A/B runs of the benchmarks):
/// unset or empty gives `default_on`, "0" turns it off, anything else on.
bool env_switch(const char* name, bool default_on);

/// The kernels' view of one BlockRank layout, on the device: built once per prompt and reused by
/// every layer (one host-to-device copy instead of per-layer or per-document work).
struct CudaBlockPlan {
  at::Tensor items;        ///< int32 [num_items, 8] (kernels::AttentionWorkItem)
  at::Tensor combine;      ///< int32 [num_combine, 4] (kernels::AttentionCombineItem)
  at::Tensor doc_offsets;  ///< int32 [N + 1], relative to the first document token
  int64_t num_items = 0;
  /// Items [0, num_long_items) span more than kernels::kAttentionResidentTiles key tiles (they come
  /// first in `items`).
  int64_t num_long_items = 0;
  /// The most tiles a grouped item needs with the instruction's keys and its own keys in separate
  /// 64-key tiles (the persistent kernel takes at most kernels::kAttentionResidentTiles).
  int64_t max_split_tiles = 0;
  /// Items [0, this) run one CTA per query head, the rest one CTA per KV group (the kernel's
  /// num_streamed_items). -1 (default): the long items, or every item when the grouped (item, KV
  /// head) units would not give each SM two (four for the persistent kernel). Any value in [0,
  /// num_items] gives the same output.
  int64_t num_streamed_items = -1;
  /// The grouped items' kernel: non-zero the persistent TMA kernel
  /// (kernels/block_attention_sm90.cuh) where it applies (head_dim 128, Hopper, contiguous heads,
  /// the long items streamed, max_split_tiles <= kAttentionResidentTiles), else mma.sync; 0
  /// mma.sync; -1 (default) as BLOCKRANK_ATTENTION_WGMMA says (on unless it is 0). Same output
  /// either way (bf16 rounding apart).
  int wgmma_grouped = -1;
  /// With the persistent kernel and streamed items both in a launch: non-zero runs the persistent
  /// kernel on a second, high-priority stream, concurrently with the streamed items' CTAs
  /// (kernels::AttentionSideStream); 0 one stream, one launch after the other; -1 (default) as
  /// BLOCKRANK_ATTENTION_SIDE_STREAM says (0 off, another value on), else auto_side_stream().
  /// Same output either way.
  int side_stream = -1;
  /// Items [0, num_long_items) are all split-K pieces of token keys (a_end 0: the query block's)
  /// of at most 32 rows: what the wgmma pieces kernel takes (with 4 query heads per KV head and
  /// head_dim 128).
  bool streamed_token_pieces = false;
  /// With the persistent kernel: non-zero runs the streamed items on the wgmma pieces kernel
  /// (kernels::block_attention_pieces_sm90) where streamed_token_pieces and the shapes allow, 0 on
  /// mma.sync, -1 (default) as BLOCKRANK_ATTENTION_WGMMA_PIECES says (on unless 0). Same output
  /// either way (fp32 summation order apart).
  int wgmma_pieces = -1;
  /// The persistent kernel keeps a K/V buffer's instruction tiles for its next unit of the same
  /// KV head (kernels::BlockAttentionParams::resident_instruction): non-zero on, 0 off, -1
  /// (default) as BLOCKRANK_ATTENTION_RESIDENT_INSTR says (on unless 0). Bit-identical output.
  int resident_instruction = -1;
  /// The query block's split-K piece length the plan was built with (keys).
  int64_t split_keys = 0;
  /// The token rows of items [0, num_long_items) as sorted, disjoint [begin, end) ranges (host):
  /// the rows cuda_block_attention's q_rope rotates with the RoPE kernel when the grouped items
  /// run on the persistent kernel.
  std::vector<std::pair<int64_t, int64_t>> long_item_rows;
  int64_t num_combine = 0;
  int64_t num_partials = 0;
  int64_t num_tokens = 0;
  int64_t num_docs = 0;
  int64_t first_doc_token = 0;  ///< L0
  int64_t num_doc_tokens = 0;
};

/// Keys per split-K item for rows whose visible range is longer (the query block): 0 asks
/// make_cuda_block_plan() for auto_split_keys() of the layout. Its default.
constexpr int64_t kDefaultSplitKeys = 0;

/// The automatic split-K piece length for a prompt of `num_tokens` tokens: a multiple of 1,024
/// keys, at least 1,024, giving the query block about 16 pieces per head. Measured on the H200
/// (docs/BENCHMARKS.md, session 12: the pass's attention stage over piece lengths of 512-4,096),
/// the best length grows with the prompt: Mistral-7B shape 1,024 at N = 100 (12,896 tokens), 2,048
/// at N = 200, 4,096 at N = 500; Qwen2.5-0.5B shape 2,048-4,096 at N = 500. Pure arithmetic
/// (also in the CPU build).
int64_t auto_split_keys(int64_t num_tokens);

/// The split-K piece length when the grouped items will run on the persistent kernel with the
/// query block's pieces beside it on a second stream (make_cuda_block_plan's
/// `persistent_kv_heads`), for a prompt of `num_tokens` tokens whose query block has `query_rows`
/// rows, a model of `num_heads` query and `num_kv_heads` KV heads and a GPU of `sms` SMs: 0 above
/// 32,768 tokens (auto_split_keys() and one stream: N = 500 16.7 ms with 4,096-key pieces against
/// 17.7-18.5 with 512-2,048 beside the persistent kernel, session 17). Up to there, the piece
/// length of 4-16 tiles (256-1,024 keys) whose streamed CTAs (one per piece and pack of heads, two
/// per SM) take the fewest rounds x (tiles + 2): a partly filled last round of pieces costs as much
/// as a full one. Measured on the H200 (docs/BENCHMARKS.md; the pass's attention stage, Mistral-7B
/// shape): session 17, N = 100, 384 / 512 / 640 / 768 keys 4.43 / 4.32 / 4.41 / 4.58 ms (this
/// rule's costs 24 / 20 / 24 / 28); session 19, N = 100 448 / 512 / 832 keys 4.69-4.74 / 4.79-4.82
/// / 4.59-4.65 ms (18 / 20 / 15), N = 200 512 / 832 / 896 keys 8.58-8.60 / 8.17-8.24 / 8.23-8.24
/// ms (40 / 30 / 32). It gives 448 keys at N = 50, 832 at N = 100 and N = 200. 512 where the
/// shapes make no sense (no pieces to count). The wgmma pieces kernel (one CTA per piece and KV
/// head, one per SM) has the same rounds as the mma.sync kernel's two-head packs at two per SM
/// for GQA 4 and a query block of 17-32 rows (with 16 rows or fewer it takes twice the rounds
/// this counts). Pure arithmetic (also in the CPU build).
int64_t split_keys_beside_persistent(
    int64_t num_tokens, int64_t query_rows, int64_t num_heads, int64_t num_kv_heads, int64_t sms);

/// Grouped (item, KV head) units per SM below which every item runs one CTA per query head
/// instead (CudaBlockPlan::num_streamed_items -1): 2 for the mma.sync kernel, this for the
/// persistent one, which wants more units per SM to even out its last round.
constexpr int64_t kPersistentUnitsPerSm = 4;

/// Whether the persistent attention kernel should run beside the streamed items (the query block's
/// split-K pieces) on a second stream, for pieces of `split_keys` keys: yes up to 2,048. The
/// streamed CTAs then fill the SMs the persistent CTAs leave; longer pieces start too late and
/// end after it. Measured on the H200 (docs/BENCHMARKS.md, session 13: the pass's attention stage,
/// Mistral-7B shape): N = 50 3.49 -> 3.28 ms, N = 100 5.38 -> 5.18, N = 200 (2,048-key pieces)
/// 10.11 -> 9.90, N = 20 the same; N = 500 (4,096-key pieces) 23.1-23.4 -> 24.1-24.8.
bool auto_side_stream(int64_t split_keys);

/// True when this build has the kernels and a model computing in `dtype` on `device` with these
/// head shapes can use them: CUDA, bf16, head_dim 64 or 128, at most 32 query heads per KV head
/// (any number of signal rows: the scoring kernel takes them in chunks). Never with
/// BLOCKRANK_CUDA_KERNELS=0 in the environment (read once).
bool cuda_kernels_usable(c10::Device device,
                         c10::ScalarType dtype,
                         int64_t head_dim,
                         int64_t num_heads,
                         int64_t num_kv_heads);

/// Builds the plan of `layout` on `device`, the query block's keys split into pieces of
/// `split_keys` (auto_split_keys() of the layout's length when <= 0). `skip_rows` > 0 leaves out
/// the work of rows below it (block 0's rows whose K/V came from the prefix cache: their output is
/// not needed, only their keys); tiles straddling it are kept whole. `longest_first` orders the
/// grouped items as kernels::partition_streamed_items does (false: document order, for A/B runs;
/// same output). `persistent_kv_heads`: the KV heads of the model that will run the plan when its
/// head_dim is 128, else 0, and `persistent_heads` its query heads; on an sm_90 device, with
/// split_keys <= 0 and at least kPersistentUnitsPerSm grouped units per SM (the persistent kernel
/// will run) the pieces are then split_keys_beside_persistent() long where that is non-zero (any
/// length gives the same output).
/// kUnimplemented without the kernels; kInvalidArgument for a layout with fewer than 3 blocks, an
/// empty block, more than 2^31 tokens or skip_rows beyond block 0.
Status make_cuda_block_plan(const BlockLayout& layout,
                            c10::Device device,
                            int64_t split_keys,
                            CudaBlockPlan* plan,
                            int64_t skip_rows = 0,
                            bool longest_first = true,
                            int64_t persistent_kv_heads = 0,
                            int64_t persistent_heads = 0);

/// RoPE still to be applied to Q, for cuda_block_attention: cuda_rope_table's table for token rows
/// [row0, T), those rows' positions, and inv_freq (as cuda_rope_inplace takes them).
struct CudaQRope {
  at::Tensor cos_sin;    ///< int32 [T - row0, D / 2]
  at::Tensor positions;  ///< int64 [T - row0]
  at::Tensor inv_freq;   ///< fp32 [D / 2]
  int64_t row0 = 0;
};

/// BlockRank attention of q [T, Hq, D], k and v [T, Hkv, D] (bf16, CUDA, last dim contiguous) for
/// the plan's layout; `out` gets [T, Hq * D] bf16. Errors: kInvalidArgument (shapes, dtypes,
/// devices), kInternal (a CUDA error, naming the call, file and line). `grouped_kernel`, when
/// given, gets the kernel the grouped items ran on (BlockAttentionParams::wgmma_grouped: 0
/// mma.sync, 3 the persistent TMA kernel). `lane_order` (D = 128 only, else kInvalidArgument):
/// each head's columns in kernels::BlockAttentionParams::out_lane_order's permutation, which
/// lane_order_index() maps back. `q_rope` (optional): q's rows [row0, T) are not yet rotated;
/// the call rotates them, bit for bit as cuda_rope_inplace with the table would: the grouped
/// items' Q tiles inside the persistent kernel (RoPE warps rotate each tile in shared memory as it
/// lands), every other row in place in q with the RoPE kernel first.
Status cuda_block_attention(const at::Tensor& q,
                            const at::Tensor& k,
                            const at::Tensor& v,
                            const CudaBlockPlan& plan,
                            at::Tensor* out,
                            int* grouped_kernel = nullptr,
                            bool lane_order = false,
                            const CudaQRope* q_rope = nullptr);

/// Whether the persistent attention kernel can run on `device` for heads of `head_dim` (D = 128,
/// sm_90, this build has the kernels); it still needs enough grouped units per plan.
bool cuda_persistent_attention_usable(c10::Device device, int64_t head_dim);

/// Whether cuda_block_attention's lane order pays on `device` for heads of `head_dim`: D = 128 on
/// a device the persistent kernel runs on (its output stores 16 bytes per lane without a
/// transpose: H200, Mistral-7B shape N = 100, pass attention stage 4.39 vs 4.60-4.65 ms,
/// docs/BENCHMARKS.md session 17). False without the kernels.
bool cuda_lane_order_usable(c10::Device device, int64_t head_dim);

/// The lane order's column map for `num_heads` heads of 128 (int64 [num_heads * 128] on
/// `device`): lane-ordered column j holds natural column index[j], and natural column j lands at
/// index[j] (the map is its own inverse). `a.index_select(-1, index)` converts either way; W_o's
/// columns taken through it make `lane_ordered_out W_oᵀ` equal `natural_out W_oᵀ`. Pure
/// arithmetic (also in the CPU build).
at::Tensor lane_order_index(int64_t num_heads, c10::Device device);

/// Document scores (BLOCKRANK.md §3.2 steps 2-4) of the signal rows q [R, Hq, D] against the
/// document keys k [T_docs, Hkv, D]; `scores` gets [N] fp32 on the device. Errors as above.
Status cuda_document_scores(const at::Tensor& q,
                            const at::Tensor& k_docs,
                            const CudaBlockPlan& plan,
                            at::Tensor* scores);

/// True when this build has the fused layer kernels (kernels/layer_ops) and a CUDA LibTorch.
bool cuda_layer_ops_available();

/// RMSNorm of x [T, C] (bf16, CUDA, C % 8 == 0) with weight [C]: `out` gets w * bf16(x * rsqrt(mean
/// x^2 + eps)) as a new [T, C] tensor. With `residual` defined ([T, C] bf16), x is first replaced
/// in place by bf16(x + residual) (the residual stream of the next step) and the norm runs on the
/// sum.
Status cuda_rms_norm(const at::Tensor& x,
                     const at::Tensor& residual,
                     const at::Tensor& weight,
                     double eps,
                     at::Tensor* out);

/// The RMSNorm statistic alone: `rstd` gets fp32 [T] rsqrt(mean(x^2) + eps) per row of x [T, C]
/// (bf16, CUDA, C % 8 == 0), the row scale cuda_swiglu_gemm applies when the norm weight is folded
/// into its weight. One read of x, no normalised copy.
Status cuda_rms_rstd(const at::Tensor& x, double eps, at::Tensor* rstd);

/// SwiGLU activation of the merged gate|up GEMM output gate_up [T, 2F] (bf16, CUDA): `out` gets
/// bf16(bf16(silu(gate)) * up) [T, F].
Status cuda_silu_mul(const at::Tensor& gate_up, at::Tensor* out);

/// True when this build has the SwiGLU GEMM kernel (kernels/swiglu_gemm) and it can run these
/// operands: x [T, K] and w_gate_up [2F, K] bf16 on a Hopper (sm_90) device, K % 64 == 0,
/// F % 128 == 0.
bool cuda_swiglu_gemm_usable(const at::Tensor& x, const at::Tensor& w_gate_up);

/// out [T, F] = silu(x Wgᵀ) * (x Wuᵀ) with w_gate_up = [Wg; Wu] in one kernel (the gate|up GEMM
/// with the activation in its epilogue; fp32 epilogue, one bf16 rounding). With `row_scale`
/// defined (fp32 [T] on x's device) row t's gate and up products are multiplied by row_scale[t]
/// first: RMSNorm(x) W with the norm weight folded into W is cuda_swiglu_gemm(x, W diag(w),
/// rstd). Errors as above.
Status cuda_swiglu_gemm(const at::Tensor& x,
                        const at::Tensor& w_gate_up,
                        at::Tensor* out,
                        const at::Tensor& row_scale = at::Tensor());

/// The (cos, sin) table of positions int64 [T] for the RoPE GEMM: `out` gets [T, D / 2] int32
/// words, each a bf16x2 (cos, sin) of positions[t] * inv_freq[i] (kernels/layer_ops' rope_table).
Status cuda_rope_table(const at::Tensor& positions, const at::Tensor& inv_freq, at::Tensor* out);

/// True when the Q|K|V GEMM with RoPE in its epilogue (kernels/swiglu_gemm's rope_gemm) can run
/// x [T, K] against w [N, K] (bf16, Hopper, K % 64 == 0, N % 256 == 0) rotating the first
/// rope_cols (% 256 == 0) columns as heads of head_dim (128 only).
bool cuda_rope_gemm_usable(const at::Tensor& x,
                           const at::Tensor& w,
                           int64_t rope_cols,
                           int64_t head_dim);

/// out [T, N] = x wᵀ (bf16) with columns [0, rope_cols) rotated as cuda_rope_inplace would rotate
/// them, bit for bit, given the same rounded product; cos_sin from cuda_rope_table for x's rows.
/// When *out is defined it must be a [T, N] bf16 tensor with contiguous rows (e.g. a row range of
/// a larger buffer) and is written in place; else a new tensor is returned there.
Status cuda_rope_gemm(const at::Tensor& x,
                      const at::Tensor& w,
                      const at::Tensor& cos_sin,
                      int64_t rope_cols,
                      at::Tensor* out);

/// Rotary embedding (HF rotate_half) in place on x [T, H, D] (bf16, CUDA, last dim contiguous; any
/// row/head strides, e.g. the Q and K heads of a merged QKV output), positions int64 [T] and
/// inv_freq fp32 [D / 2] on the same device. `cos_sin` (optional): cuda_rope_table(positions,
/// inv_freq) computed once for several calls (the layers of a pass); with it a 16-byte-vector
/// kernel reads the angles (head_dim 64 or 128), with the same bits as without.
Status cuda_rope_inplace(const at::Tensor& x,
                         const at::Tensor& positions,
                         const at::Tensor& inv_freq,
                         const at::Tensor& cos_sin = at::Tensor());

/// Per-stage GPU time of a loop of launches (the fused layer loop under
/// BLOCKRANK_PROFILE_LAYERS=1): mark(stage) records a CUDA event on the current stream and charges
/// the time since the previous mark to `stage`, so the stages add up to the stream's whole span,
/// idle gaps included (a gap is charged to the stage after it). report() waits for the events and
/// returns one line per stage (ms, share). Disabled (or without CUDA) every call is a no-op and
/// report() returns "".
class CudaStageTimer {
 public:
  explicit CudaStageTimer(bool enabled);
  ~CudaStageTimer();
  CudaStageTimer(const CudaStageTimer&) = delete;
  CudaStageTimer& operator=(const CudaStageTimer&) = delete;
  void mark(const char* stage);
  std::string report();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// For ATen-style call sites (model.cc's forward pass, which reports c10::Error): throws a
/// c10::Error carrying the Status text unless `status` is ok.
void throw_if_error(const Status& status);

/// `host` (a CPU tensor) on `device`. On CUDA an asynchronous copy from pinned memory (the caching
/// host allocator keeps the pinned buffer until the copy has run), so the caller does not wait for
/// work already queued on the stream; where pinned memory cannot be had, the ordinary (waiting)
/// copy.
at::Tensor upload_without_waiting(const at::Tensor& host, c10::Device device);

}  // namespace blockrank::internal

#endif  // BLOCKRANK_RANKER_CORE_CUDA_ATTENTION_H_
