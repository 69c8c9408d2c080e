// SPDX-License-Identifier: Apache-2.0
// ATen <-> kernels adapter; see cuda_attention.h. Everything CUDA-specific sits behind
// BLOCKRANK_TORCH_CUDA so the CPU build (Debian LibTorch 1.13, no CUDA) compiles the stubs only.
#include "ranker/core/cuda_attention.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#ifdef BLOCKRANK_TORCH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "kernels/block_attention.cuh"
#include "kernels/block_attention_sm90.cuh"
#include "kernels/doc_scores.cuh"
#include "kernels/layer_ops.cuh"
#include "kernels/swiglu_gemm.cuh"
#endif

namespace blockrank::internal {

bool env_switch(const char* name, bool default_on) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') {
    return default_on;
  }
  return std::string(v) != "0";
}

void throw_if_error(const Status& status) {
  TORCH_CHECK(status.is_ok(), status.to_string());
}

at::Tensor upload_without_waiting(const at::Tensor& host, c10::Device device) {
  if (!device.is_cuda()) {
    return host.to(device);
  }
  at::Tensor pinned;
  try {
    pinned = host.pin_memory();
  } catch (const c10::Error&) {
    return host.to(device);  // no pinned memory here: the copy waits, as before
  }
  return pinned.to(device, /*non_blocking=*/true);
}

int64_t auto_split_keys(int64_t num_tokens) {
  constexpr int64_t kStep = 1024, kPieces = 16;
  const int64_t per_piece = (std::max<int64_t>(num_tokens, 1) + kPieces - 1) / kPieces;
  return std::max(kStep, (per_piece + kStep - 1) / kStep * kStep);
}

int64_t split_keys_beside_persistent(
    int64_t num_tokens, int64_t query_rows, int64_t num_heads, int64_t num_kv_heads, int64_t sms) {
  // kAttentionTileRows (query rows per item) and kTileKeys (keys per tile) are both 64.
  constexpr int64_t kRows = 64, kKeys = 64;
  // The narrow kernel's CTAs per SM at head_dim 128 (112 KB of shared memory each), the piece
  // lengths tried (in tiles) and what one CTA costs beyond its tiles (start, partial stores), in
  // tiles: fitted to the measured lengths (session 17's 384 / 512 / 640 / 768, session 19's 448 /
  // 512 / 832 at N = 100; 512 / 832 / 896 at N = 200). Longer than 16 tiles, pieces start in the
  // persistent kernel's last round and end after it (2,048 lost 0.85 ms against 512 at N = 200).
  constexpr int64_t kCtasPerSm = 2, kMinTiles = 4, kMaxTiles = 16, kOverheadTiles = 2;
  if (num_tokens > 32'768) {
    return 0;
  }
  if (query_rows < 1 || query_rows > num_tokens || num_kv_heads < 1 || num_heads < num_kv_heads ||
      num_heads % num_kv_heads != 0 || sms < 1) {
    return 512;
  }
  const int64_t group = num_heads / num_kv_heads, slots = kCtasPerSm * sms;
  int64_t best_tiles = 0, best_cost = 0;
  for (int64_t tiles = kMinTiles; tiles <= kMaxTiles; ++tiles) {
    // build_attention_work's items for the query block: per 64-row tile, its visible keys (every
    // key up to its last row) in pieces of `tiles` tiles; block_attention's streamed CTAs: one per
    // pack of heads (2 heads side by side for items of <= 32 rows, 4 for <= 16).
    int64_t ctas = 0;
    for (int64_t row = num_tokens - query_rows; row < num_tokens; row += kRows) {
      const int64_t end = std::min(row + kRows, num_tokens), rows = end - row;
      const int64_t pack = rows <= 16 && group % 4 == 0 ? 4 : rows <= 32 && group % 2 == 0 ? 2 : 1;
      ctas += (end + tiles * kKeys - 1) / (tiles * kKeys) * (num_heads / pack);
    }
    const int64_t rounds = (ctas + slots - 1) / slots;
    const int64_t cost = rounds * (tiles + kOverheadTiles);
    if (best_tiles == 0 || cost < best_cost) {
      best_tiles = tiles;
      best_cost = cost;
    }
  }
  return best_tiles * kKeys;
}

bool auto_side_stream(int64_t split_keys) {
  return split_keys <= 2048;
}

at::Tensor lane_order_index(int64_t num_heads, c10::Device device) {
  // The map of kernels::lane_order_column (bits 1-2 and 3-4 of the column swapped), written out
  // here so that the CPU build has it too.
  std::vector<int64_t> index(static_cast<size_t>(std::max<int64_t>(num_heads, 0) * 128));
  for (size_t j = 0; j < index.size(); ++j) {
    const int64_t c = static_cast<int64_t>(j % 128);
    index[j] = static_cast<int64_t>(j - j % 128) +
               ((c & ~int64_t{0x1E}) | ((c >> 2) & 0x6) | ((c << 2) & 0x18));
  }
  return at::tensor(index, at::kLong).to(device);
}

#ifdef BLOCKRANK_TORCH_CUDA

namespace {

/// Wraps a CUDA runtime call or kernel launcher: a failure becomes kInternal naming the statement,
/// file and line (STYLE.md rule 4; never exit()).
#define BLOCKRANK_CUDA_CHECK(expr)                                                               \
  do {                                                                                           \
    const cudaError_t blockrank_cuda_err_ = (expr);                                              \
    if (blockrank_cuda_err_ != cudaSuccess) {                                                    \
      return ::blockrank::Status::internal(std::string(#expr) + " failed at " + __FILE__ + ":" + \
                                           std::to_string(__LINE__) + ": " +                     \
                                           cudaGetErrorString(blockrank_cuda_err_));             \
    }                                                                                            \
  } while (false)

/// kInvalidArgument naming the tensor unless it is a CUDA tensor of `dtype` with `dims` dims and a
/// contiguous last dim whose other strides keep 16-byte alignment (the kernels load 8 x bf16).
Status check_tensor(const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t dims) {
  if (!t.defined() || !t.is_cuda()) {
    return Status::invalid_argument(std::string(name) + ": expected a CUDA tensor");
  }
  if (t.scalar_type() != dtype) {
    return Status::invalid_argument(std::string(name) + ": expected dtype " +
                                    std::string(c10::toString(dtype)) + ", got " +
                                    std::string(c10::toString(t.scalar_type())));
  }
  if (t.dim() != dims) {
    return Status::invalid_argument(std::string(name) + ": expected " + std::to_string(dims) +
                                    " dims, got " + std::to_string(t.dim()));
  }
  if (t.stride(dims - 1) != 1) {
    return Status::invalid_argument(std::string(name) + ": last dim must be contiguous");
  }
  for (int64_t i = 0; i + 1 < dims; ++i) {
    if (t.stride(i) % 8 != 0) {
      return Status::invalid_argument(std::string(name) + ": strides must be multiples of 8");
    }
  }
  if (reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 != 0) {
    return Status::invalid_argument(std::string(name) + ": data must be 16-byte aligned");
  }
  return Status::ok();
}

// A view the kernels accept: the tensor itself when aligned, else a contiguous copy.
at::Tensor aligned(const at::Tensor& t) {
  bool ok = t.stride(-1) == 1 && reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
  for (int64_t i = 0; ok && i + 1 < t.dim(); ++i) {
    ok = t.stride(i) % 8 == 0;
  }
  return ok ? t : t.contiguous();
}

// A GEMM operand for TMA (rows of stride K): the tensor itself when contiguous and 16-byte
// aligned, else a contiguous, aligned copy.
at::Tensor dense_aligned(const at::Tensor& t) {
  at::Tensor c = t.contiguous();
  return reinterpret_cast<uintptr_t>(c.data_ptr()) % 16 == 0 ? c : c.clone();
}

}  // namespace

bool cuda_kernels_usable(c10::Device device,
                         c10::ScalarType dtype,
                         int64_t head_dim,
                         int64_t num_heads,
                         int64_t num_kv_heads) {
  // BLOCKRANK_CUDA_KERNELS=0: the ATen path on CUDA too (A/B runs against our kernels).
  static const bool enabled = env_switch("BLOCKRANK_CUDA_KERNELS", true);
  return enabled && device.is_cuda() && dtype == at::kBFloat16 &&
         (head_dim == 64 || head_dim == 128) && num_kv_heads > 0 && num_heads % num_kv_heads == 0 &&
         num_heads / num_kv_heads <= kernels::kDocScoreMaxPairs;
}

Status make_cuda_block_plan(const BlockLayout& layout,
                            c10::Device device,
                            int64_t split_keys,
                            CudaBlockPlan* plan,
                            int64_t skip_rows,
                            bool longest_first,
                            int64_t persistent_kv_heads,
                            int64_t persistent_heads) {
  const auto& lengths = layout.block_lengths;
  if (lengths.size() < 3) {
    return Status::invalid_argument("cuda plan: need at least 3 blocks");
  }
  int64_t total = 0;
  for (int64_t n : lengths) {
    if (n < 1) {
      return Status::invalid_argument("cuda plan: empty block");
    }
    total += n;
  }
  if (total >= (int64_t{1} << 31)) {
    return Status::invalid_argument("cuda plan: more than 2^31 tokens");
  }
  if (skip_rows < 0 || skip_rows > lengths.front()) {
    return Status::invalid_argument("cuda plan: skip_rows outside block 0");
  }
  const int64_t nb = static_cast<int64_t>(lengths.size());
  if (split_keys <= 0) {
    split_keys = auto_split_keys(total);
    const bool sm90 =
        persistent_kv_heads > 0 && kernels::block_attention_sm90_supported(device.index());
    const int64_t sms =
        sm90 ? at::cuda::getDeviceProperties(device.index())->multiProcessorCount : 0;
    const int64_t beside =
        sm90 ? split_keys_beside_persistent(total, lengths.back(), persistent_heads,
                                            persistent_kv_heads, sms)
             : 0;
    if (beside > 0) {
      // Will the persistent kernel run (cuda_block_attention's rule)? Its grouped units do not
      // depend on the piece length; skip_rows is ignored here (it only drops block 0's tiles).
      int64_t nc = 0, np = 0;
      const int64_t n =
          kernels::build_attention_work(lengths.data(), nb, split_keys, nullptr, nullptr, &nc, &np);
      std::vector<kernels::AttentionWorkItem> scratch(static_cast<size_t>(n));
      std::vector<kernels::AttentionCombineItem> scratch_combine(static_cast<size_t>(nc));
      kernels::build_attention_work(lengths.data(), nb, split_keys, scratch.data(),
                                    scratch_combine.data(), &nc, &np);
      const int64_t grouped = n - kernels::partition_streamed_items(scratch.data(), n);
      if (grouped * persistent_kv_heads >= kPersistentUnitsPerSm * sms) {
        split_keys = beside;
      }
    }
  }
  int64_t num_combine = 0, num_partials = 0;
  const int64_t num_items = kernels::build_attention_work(lengths.data(), nb, split_keys, nullptr,
                                                          nullptr, &num_combine, &num_partials);
  // One host buffer for items, combine entries and doc offsets: a single upload, which does not
  // wait for the GPU: score_documents builds the plan while the GPU already runs the first layer
  // (Model's fused layers).
  static_assert(sizeof(kernels::AttentionWorkItem) == 8 * sizeof(int32_t), "item layout");
  static_assert(sizeof(kernels::AttentionCombineItem) == 4 * sizeof(int32_t), "combine layout");
  const int64_t num_docs = nb - 2;
  at::Tensor host = at::empty({num_items * 8 + num_combine * 4 + num_docs + 1}, at::kInt);
  int32_t* base = host.data_ptr<int32_t>();
  auto* items = reinterpret_cast<kernels::AttentionWorkItem*>(base);
  auto* combine = reinterpret_cast<kernels::AttentionCombineItem*>(base + num_items * 8);
  int32_t* offsets = base + num_items * 8 + num_combine * 4;
  kernels::build_attention_work(lengths.data(), nb, split_keys, items, combine, &num_combine,
                                &num_partials);
  int64_t kept_items = num_items, kept_combine = num_combine;
  if (skip_rows > 0) {
    // Drop the tiles (and merges) entirely below skip_rows; compact in place. Partial slots keep
    // their numbering (a kept combine entry's items are kept too: they cover the same rows).
    kept_items = 0;
    for (int64_t i = 0; i < num_items; ++i) {
      if (items[i].row_end > skip_rows) {
        items[kept_items++] = items[i];
      }
    }
    kept_combine = 0;
    for (int64_t i = 0; i < num_combine; ++i) {
      if (combine[i].row_end > skip_rows) {
        combine[kept_combine++] = combine[i];
      }
    }
    // The combine entries and doc offsets follow the items in `host`: move them down.
    auto* packed_combine = reinterpret_cast<kernels::AttentionCombineItem*>(base + kept_items * 8);
    std::memmove(packed_combine, combine, sizeof(kernels::AttentionCombineItem) * kept_combine);
    combine = packed_combine;
    int32_t* packed_offsets = base + kept_items * 8 + kept_combine * 4;
    offsets = packed_offsets;
  }
  // Long items first (one CTA per query head), the rest grouped per KV head; see the kernel.
  const int64_t streamed = kernels::partition_streamed_items(items, kept_items, longest_first);
  // Tiles each grouped item needs with instruction keys and its own keys in separate tiles (the
  // persistent kernel's layout).
  int64_t max_split_tiles = 0;
  for (int64_t i = streamed; i < kept_items; ++i) {
    const kernels::AttentionWorkItem& it = items[i];
    const bool whole =
        it.partial < 0 && it.key_begin == 0 && it.key_end == it.a_end + (it.row_end - it.b_start);
    max_split_tiles = std::max<int64_t>(
        max_split_tiles, whole ? (it.a_end + 63) / 64 + (it.row_end - it.b_start + 63) / 64
                               : std::numeric_limits<int32_t>::max());  // a split-K piece
  }
  offsets[0] = 0;
  for (int64_t d = 0; d < num_docs; ++d) {
    offsets[d + 1] = offsets[d] + static_cast<int32_t>(lengths[static_cast<size_t>(d) + 1]);
  }
  at::Tensor dev = upload_without_waiting(
      host.narrow(0, 0, kept_items * 8 + kept_combine * 4 + num_docs + 1), device);
  plan->items = dev.narrow(0, 0, kept_items * 8);
  plan->combine = dev.narrow(0, kept_items * 8, kept_combine * 4);
  plan->doc_offsets = dev.narrow(0, kept_items * 8 + kept_combine * 4, num_docs + 1);
  plan->num_items = kept_items;
  plan->num_long_items = streamed;
  plan->long_item_rows.clear();
  for (int64_t i = 0; i < streamed; ++i) {
    plan->long_item_rows.emplace_back(items[i].row_begin, items[i].row_end);
  }
  std::sort(plan->long_item_rows.begin(), plan->long_item_rows.end());
  size_t merged = 0;
  for (const auto& r : plan->long_item_rows) {
    if (merged > 0 && r.first <= plan->long_item_rows[merged - 1].second) {
      plan->long_item_rows[merged - 1].second =
          std::max(plan->long_item_rows[merged - 1].second, r.second);
    } else {
      plan->long_item_rows[merged++] = r;
    }
  }
  plan->long_item_rows.resize(merged);
  plan->streamed_token_pieces = streamed > 0;
  for (int64_t i = 0; i < streamed; ++i) {
    const kernels::AttentionWorkItem& it = items[i];
    plan->streamed_token_pieces = plan->streamed_token_pieces && it.partial >= 0 && it.a_end == 0 &&
                                  it.row_end - it.row_begin <= 32;
  }
  plan->max_split_tiles = max_split_tiles;
  plan->num_combine = kept_combine;
  plan->num_partials = num_partials;
  plan->split_keys = split_keys;
  plan->num_tokens = total;
  plan->num_docs = num_docs;
  plan->first_doc_token = lengths.front();
  plan->num_doc_tokens = offsets[num_docs];
  return Status::ok();
}

namespace {

// The side stream of a two-stream attention launch: a high-priority stream from LibTorch's pool
// and this thread's fork/join events for the device (events are per thread: two threads sharing
// one pair could each wait on the other's record).
Status attention_side_stream(c10::DeviceIndex device, kernels::AttentionSideStream* side) {
  struct Events {
    cudaEvent_t fork = nullptr, join = nullptr;
    Events() = default;
    Events(const Events&) = delete;
    Events& operator=(const Events&) = delete;
    ~Events() {
      if (fork != nullptr) {
        cudaEventDestroy(fork);  // errors ignored: the runtime may be shutting down
      }
      if (join != nullptr) {
        cudaEventDestroy(join);
      }
    }
  };
  thread_local std::map<c10::DeviceIndex, Events> per_device;
  Events& e = per_device[device];
  if (e.fork == nullptr) {
    BLOCKRANK_CUDA_CHECK(cudaEventCreateWithFlags(&e.fork, cudaEventDisableTiming));
  }
  if (e.join == nullptr) {
    BLOCKRANK_CUDA_CHECK(cudaEventCreateWithFlags(&e.join, cudaEventDisableTiming));
  }
  side->stream = c10::cuda::getStreamFromPool(/*isHighPriority=*/true, device).stream();
  side->fork = e.fork;
  side->join = e.join;
  return Status::ok();
}

}  // namespace

bool cuda_persistent_attention_usable(c10::Device device, int64_t head_dim) {
  return device.is_cuda() && head_dim == 128 &&
         kernels::block_attention_sm90_supported(device.index());
}

bool cuda_lane_order_usable(c10::Device device, int64_t head_dim) {
  return cuda_persistent_attention_usable(device, head_dim);
}

Status cuda_block_attention(const at::Tensor& q_in,
                            const at::Tensor& k_in,
                            const at::Tensor& v_in,
                            const CudaBlockPlan& plan,
                            at::Tensor* out,
                            int* grouped_kernel,
                            bool lane_order,
                            const CudaQRope* q_rope) {
  const at::Tensor q = aligned(q_in), k = aligned(k_in), v = aligned(v_in);
  BLOCKRANK_RETURN_IF_ERROR(check_tensor(q, "q", at::kBFloat16, 3));
  BLOCKRANK_RETURN_IF_ERROR(check_tensor(k, "k", at::kBFloat16, 3));
  BLOCKRANK_RETURN_IF_ERROR(check_tensor(v, "v", at::kBFloat16, 3));
  const int64_t t = q.size(0), hq = q.size(1), d = q.size(2), hkv = k.size(1);
  if (t != plan.num_tokens || k.size(0) != t || v.size(0) != t || v.size(1) != hkv ||
      k.size(2) != d || v.size(2) != d || hkv < 1 || hq % hkv != 0) {
    return Status::invalid_argument(
        "cuda_block_attention: q [T, Hq, D], k/v [T, Hkv, D] with T = " +
        std::to_string(plan.num_tokens) + " and Hkv dividing Hq");
  }
  if (d != 64 && d != 128) {
    return Status::invalid_argument("cuda_block_attention: head_dim must be 64 or 128, got " +
                                    std::to_string(d));
  }
  if (lane_order && d != 128) {
    return Status::invalid_argument(
        "cuda_block_attention: the lane order needs head_dim 128, got " + std::to_string(d));
  }
  if (q.device() != k.device() || q.device() != v.device() || q.device() != plan.items.device()) {
    return Status::invalid_argument("cuda_block_attention: tensors on different devices");
  }
  const c10::cuda::CUDAGuard guard(q.device());
  at::Tensor o = at::empty({t, hq, d}, q.options());
  at::Tensor partial_out, partial_ml;
  if (plan.num_partials > 0) {
    const auto f32 = q.options().dtype(at::kFloat);
    partial_out = at::empty({plan.num_partials, hq, kernels::kAttentionTileRows, d}, f32);
    partial_ml = at::empty({plan.num_partials, hq, kernels::kAttentionTileRows, 2}, f32);
  }
  kernels::BlockAttentionParams p{};
  p.q = q.data_ptr();
  p.k = k.data_ptr();
  p.v = v.data_ptr();
  p.out = o.data_ptr();
  p.q_row_stride = q.stride(0);
  p.q_head_stride = q.stride(1);
  p.k_row_stride = k.stride(0);
  p.k_head_stride = k.stride(1);
  p.v_row_stride = v.stride(0);
  p.v_head_stride = v.stride(1);
  p.out_row_stride = o.stride(0);
  p.out_head_stride = o.stride(1);
  p.num_tokens = static_cast<int32_t>(t);
  p.num_heads = static_cast<int32_t>(hq);
  p.num_kv_heads = static_cast<int32_t>(hkv);
  p.head_dim = static_cast<int32_t>(d);
  p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
  p.items = reinterpret_cast<const kernels::AttentionWorkItem*>(plan.items.data_ptr<int32_t>());
  p.num_items = static_cast<int32_t>(plan.num_items);
  // The grouped items' kernel (CudaBlockPlan::wgmma_grouped; BLOCKRANK_ATTENTION_WGMMA when -1,
  // on unless 0): the persistent TMA kernel where it applies (head_dim 128, Hopper, contiguous
  // heads, no long item or split piece among the grouped items, each at most
  // kAttentionResidentTiles tiles with the instruction's and its own keys apart), else mma.sync.
  static const bool wgmma_env = env_switch("BLOCKRANK_ATTENTION_WGMMA", true);
  const bool wgmma_on = plan.wgmma_grouped < 0 ? wgmma_env : plan.wgmma_grouped != 0;
  const bool sm90 = d == 128 && kernels::block_attention_sm90_supported(q.device().index());
  const bool tma_layout = sm90 && wgmma_on &&
                          plan.max_split_tiles <= kernels::kAttentionResidentTiles &&
                          q.stride(1) == d && k.stride(1) == d && v.stride(1) == d;
  int64_t streamed = plan.num_streamed_items;
  if (streamed < 0) {
    // Grouping trades CTAs for K/V reuse: with few short blocks or few KV heads (Qwen2.5-0.5B at
    // N = 20-50) one CTA per query head fills the GPU better (H200, Qwen N = 20: 0.062 vs 0.071
    // ms). The persistent kernel (one CTA per SM) wants more units per SM to even out its last
    // round (H200, Mistral shape: N = 20, 2.4 units per SM, grouped 0.115 vs per head 0.098 ms;
    // N = 50, 6 per SM, 0.148 vs 0.157).
    const int64_t sms = at::cuda::getDeviceProperties(q.device().index())->multiProcessorCount;
    const int64_t units_per_sm = tma_layout ? kPersistentUnitsPerSm : 2;
    streamed = (plan.num_items - plan.num_long_items) * hkv < units_per_sm * sms
                   ? plan.num_items
                   : plan.num_long_items;
  }
  p.num_streamed_items = static_cast<int32_t>(std::min(streamed, plan.num_items));
  p.combine =
      reinterpret_cast<const kernels::AttentionCombineItem*>(plan.combine.data_ptr<int32_t>());
  p.num_combine = static_cast<int32_t>(plan.num_combine);
  p.partial_out = partial_out.defined() ? partial_out.data_ptr<float>() : nullptr;
  p.partial_ml = partial_ml.defined() ? partial_ml.data_ptr<float>() : nullptr;
  p.wgmma_grouped = tma_layout && p.num_streamed_items == plan.num_long_items ? 3 : 0;
  p.out_lane_order = lane_order ? 1 : 0;
  // The streamed items (then exactly the long ones) on the wgmma pieces kernel: CudaBlockPlan::
  // wgmma_pieces, BLOCKRANK_ATTENTION_WGMMA_PIECES when -1 (on unless 0).
  static const bool pieces_env = env_switch("BLOCKRANK_ATTENTION_WGMMA_PIECES", true);
  const bool pieces_on = plan.wgmma_pieces < 0 ? pieces_env : plan.wgmma_pieces != 0;
  p.wgmma_pieces =
      pieces_on && p.wgmma_grouped == 3 && plan.streamed_token_pieces && hq == 4 * hkv ? 1 : 0;
  // The persistent kernel's resident instruction tiles: CudaBlockPlan::resident_instruction,
  // BLOCKRANK_ATTENTION_RESIDENT_INSTR when -1 (on unless 0).
  static const bool resident_env = env_switch("BLOCKRANK_ATTENTION_RESIDENT_INSTR", true);
  p.resident_instruction =
      (plan.resident_instruction < 0 ? resident_env : plan.resident_instruction != 0) ? 1 : 0;
  if (q_rope != nullptr) {
    const int64_t r0 = q_rope->row0, n = t - r0;
    if (r0 < 0 || r0 > t || !q_rope->cos_sin.defined() || q_rope->cos_sin.size(0) != n ||
        !q_rope->positions.defined() || q_rope->positions.numel() != n) {
      return Status::invalid_argument(
          "cuda_block_attention: q_rope's table and positions must cover rows [row0, T)");
    }
    // Rows [from, to) of q rotated in place by the RoPE kernel.
    const auto rope_rows = [&](int64_t from, int64_t to) {
      from = std::max(from, r0);
      return from >= to ? Status::ok()
                        : cuda_rope_inplace(q.narrow(0, from, to - from),
                                            q_rope->positions.narrow(0, from - r0, to - from),
                                            q_rope->inv_freq,
                                            q_rope->cos_sin.narrow(0, from - r0, to - from));
    };
    if (p.wgmma_grouped == 3) {
      // The persistent kernel rotates the grouped items' tiles; the long items' kernel reads Q as
      // it is.
      for (const auto& [from, to] : plan.long_item_rows) {
        BLOCKRANK_RETURN_IF_ERROR(rope_rows(from, to));
      }
      p.q_rope_cos_sin = q_rope->cos_sin.data_ptr();
      p.q_rope_row0 = static_cast<int32_t>(r0);
    } else {
      BLOCKRANK_RETURN_IF_ERROR(rope_rows(r0, t));
    }
  }
  if (grouped_kernel != nullptr) {
    *grouped_kernel = p.wgmma_grouped;
  }
  // BLOCKRANK_ATTENTION_SIDE_STREAM: unset or empty automatic, 0 off, anything else on.
  static const char* const side_env = std::getenv("BLOCKRANK_ATTENTION_SIDE_STREAM");
  const bool side_on = plan.side_stream >= 0 ? plan.side_stream != 0
                                             : (side_env != nullptr && *side_env != '\0'
                                                    ? std::string(side_env) != "0"
                                                    : auto_side_stream(plan.split_keys));
  const kernels::AttentionSideStream* side = nullptr;
  kernels::AttentionSideStream side_stream{};
  if (side_on && p.wgmma_grouped == 3) {  // the launcher forks only when both kernels have work
    BLOCKRANK_RETURN_IF_ERROR(attention_side_stream(q.device().index(), &side_stream));
    side = &side_stream;
  }
  BLOCKRANK_CUDA_CHECK(kernels::block_attention_forward(
      p, c10::cuda::getCurrentCUDAStream(q.device().index()), side));
  *out = o.view({t, hq * d});
  return Status::ok();
}

Status cuda_document_scores(const at::Tensor& q_in,
                            const at::Tensor& k_in,
                            const CudaBlockPlan& plan,
                            at::Tensor* scores) {
  const at::Tensor q = aligned(q_in), k = aligned(k_in);
  BLOCKRANK_RETURN_IF_ERROR(check_tensor(q, "q", at::kBFloat16, 3));
  BLOCKRANK_RETURN_IF_ERROR(check_tensor(k, "k_docs", at::kBFloat16, 3));
  const int64_t r = q.size(0), hq = q.size(1), d = q.size(2), hkv = k.size(1);
  if (k.size(0) != plan.num_doc_tokens || k.size(2) != d || hkv < 1 || hq % hkv != 0) {
    return Status::invalid_argument(
        "cuda_document_scores: q [R, Hq, D], k_docs [T_docs, Hkv, D] with T_docs = " +
        std::to_string(plan.num_doc_tokens));
  }
  if (r < 1 || !cuda_kernels_usable(q.device(), q.scalar_type(), d, hq, hkv)) {
    return Status::invalid_argument(
        "cuda_document_scores: needs bf16 on CUDA, head_dim 64/128, Hq/Hkv <= 32 and R >= 1");
  }
  if (q.device() != k.device() || q.device() != plan.doc_offsets.device()) {
    return Status::invalid_argument("cuda_document_scores: tensors on different devices");
  }
  const c10::cuda::CUDAGuard guard(q.device());
  const auto f32 = q.options().dtype(at::kFloat);
  at::Tensor ws = at::empty({static_cast<int64_t>(kernels::doc_scores_workspace_floats(
                                static_cast<int32_t>(plan.num_doc_tokens), static_cast<int32_t>(r),
                                static_cast<int32_t>(hq), static_cast<int32_t>(hkv)))},
                            f32);
  at::Tensor s = at::empty({plan.num_docs}, f32);
  kernels::DocScoreParams p{};
  p.q = q.data_ptr();
  p.q_row_stride = q.stride(0);
  p.q_head_stride = q.stride(1);
  p.k = k.data_ptr();
  p.k_row_stride = k.stride(0);
  p.k_head_stride = k.stride(1);
  p.doc_offsets = plan.doc_offsets.data_ptr<int32_t>();
  p.num_docs = static_cast<int32_t>(plan.num_docs);
  p.num_doc_tokens = static_cast<int32_t>(plan.num_doc_tokens);
  p.num_rows = static_cast<int32_t>(r);
  p.num_heads = static_cast<int32_t>(hq);
  p.num_kv_heads = static_cast<int32_t>(hkv);
  p.head_dim = static_cast<int32_t>(d);
  p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
  p.workspace = ws.data_ptr<float>();
  p.scores = s.data_ptr<float>();
  BLOCKRANK_CUDA_CHECK(
      kernels::document_scores(p, c10::cuda::getCurrentCUDAStream(q.device().index())));
  *scores = s;
  return Status::ok();
}

bool cuda_layer_ops_available() {
  return true;
}

Status cuda_rms_norm(const at::Tensor& x,
                     const at::Tensor& residual,
                     const at::Tensor& weight,
                     double eps,
                     at::Tensor* out) {
  BLOCKRANK_RETURN_IF_ERROR(check_tensor(x, "x", at::kBFloat16, 2));
  BLOCKRANK_RETURN_IF_ERROR(check_tensor(weight, "weight", at::kBFloat16, 1));
  const int64_t t = x.size(0), c = x.size(1);
  if (c % 8 != 0 || weight.size(0) != c || t >= (int64_t{1} << 31)) {
    return Status::invalid_argument("cuda_rms_norm: x [T, C] with C % 8 == 0 and weight [C]");
  }
  if (residual.defined()) {
    BLOCKRANK_RETURN_IF_ERROR(check_tensor(residual, "residual", at::kBFloat16, 2));
    if (residual.sizes() != x.sizes() || residual.device() != x.device()) {
      return Status::invalid_argument("cuda_rms_norm: residual must match x");
    }
  }
  if (weight.device() != x.device()) {
    return Status::invalid_argument("cuda_rms_norm: tensors on different devices");
  }
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor o = at::empty({t, c}, x.options());
  kernels::RmsNormParams p{};
  p.x = x.data_ptr();
  p.residual = residual.defined() ? residual.data_ptr() : nullptr;
  p.weight = weight.data_ptr();
  p.out = o.data_ptr();
  p.x_row_stride = x.stride(0);
  p.residual_row_stride = residual.defined() ? residual.stride(0) : 0;
  p.out_row_stride = o.stride(0);
  p.rows = static_cast<int32_t>(t);
  p.cols = static_cast<int32_t>(c);
  p.eps = static_cast<float>(eps);
  BLOCKRANK_CUDA_CHECK(kernels::rms_norm(p, c10::cuda::getCurrentCUDAStream(x.device().index())));
  *out = o;
  return Status::ok();
}

Status cuda_rms_rstd(const at::Tensor& x, double eps, at::Tensor* rstd) {
  BLOCKRANK_RETURN_IF_ERROR(check_tensor(x, "x", at::kBFloat16, 2));
  const int64_t t = x.size(0), c = x.size(1);
  if (c % 8 != 0 || t >= (int64_t{1} << 31)) {
    return Status::invalid_argument("cuda_rms_rstd: x [T, C] with C % 8 == 0");
  }
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor r = at::empty({t}, x.options().dtype(at::kFloat));
  kernels::RmsNormParams p{};
  p.x = x.data_ptr();
  p.residual = nullptr;
  p.weight = nullptr;
  p.out = nullptr;
  p.rstd = r.data_ptr<float>();
  p.x_row_stride = x.stride(0);
  p.rows = static_cast<int32_t>(t);
  p.cols = static_cast<int32_t>(c);
  p.eps = static_cast<float>(eps);
  BLOCKRANK_CUDA_CHECK(kernels::rms_norm(p, c10::cuda::getCurrentCUDAStream(x.device().index())));
  *rstd = r;
  return Status::ok();
}

Status cuda_silu_mul(const at::Tensor& gate_up, at::Tensor* out) {
  BLOCKRANK_RETURN_IF_ERROR(check_tensor(gate_up, "gate_up", at::kBFloat16, 2));
  const int64_t t = gate_up.size(0), f = gate_up.size(1) / 2;
  if (gate_up.size(1) % 16 != 0 || t >= (int64_t{1} << 31)) {
    return Status::invalid_argument("cuda_silu_mul: gate_up [T, 2F] with F % 8 == 0");
  }
  const c10::cuda::CUDAGuard guard(gate_up.device());
  at::Tensor o = at::empty({t, f}, gate_up.options());
  kernels::SiluMulParams p{};
  p.gate_up = gate_up.data_ptr();
  p.out = o.data_ptr();
  p.gate_up_row_stride = gate_up.stride(0);
  p.out_row_stride = o.stride(0);
  p.rows = static_cast<int32_t>(t);
  p.cols = static_cast<int32_t>(f);
  BLOCKRANK_CUDA_CHECK(
      kernels::silu_mul(p, c10::cuda::getCurrentCUDAStream(gate_up.device().index())));
  *out = o;
  return Status::ok();
}

bool cuda_swiglu_gemm_usable(const at::Tensor& x, const at::Tensor& w_gate_up) {
  return x.is_cuda() && w_gate_up.is_cuda() && x.scalar_type() == at::kBFloat16 &&
         w_gate_up.scalar_type() == at::kBFloat16 && x.dim() == 2 && w_gate_up.dim() == 2 &&
         x.size(1) == w_gate_up.size(1) && x.size(1) % 64 == 0 && w_gate_up.size(0) % 256 == 0 &&
         x.size(0) >= 1 && x.size(0) < (int64_t{1} << 31) &&
         kernels::swiglu_gemm_supported(x.device().index());
}

Status cuda_swiglu_gemm(const at::Tensor& x_in,
                        const at::Tensor& w_in,
                        at::Tensor* out,
                        const at::Tensor& row_scale) {
  if (!cuda_swiglu_gemm_usable(x_in, w_in)) {
    return Status::invalid_argument(
        "cuda_swiglu_gemm: x [T, K] and w_gate_up [2F, K] bf16 on an sm_90 device, K % 64 == 0, "
        "F % 128 == 0");
  }
  if (row_scale.defined() &&
      (row_scale.device() != x_in.device() || row_scale.scalar_type() != at::kFloat ||
       row_scale.dim() != 1 || row_scale.size(0) != x_in.size(0) || !row_scale.is_contiguous())) {
    return Status::invalid_argument(
        "cuda_swiglu_gemm: row_scale must be a contiguous fp32 [T] on x's device");
  }
  const at::Tensor x = dense_aligned(x_in), w = dense_aligned(w_in);
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor o = at::empty({x.size(0), w.size(0) / 2}, x.options());
  kernels::SwigluGemmParams p{};
  p.x = x.data_ptr();
  p.w_gate_up = w.data_ptr();
  p.out = o.data_ptr();
  p.rows = static_cast<int32_t>(x.size(0));
  p.k = static_cast<int32_t>(x.size(1));
  p.f = static_cast<int32_t>(w.size(0) / 2);
  p.row_scale = row_scale.defined() ? row_scale.data_ptr<float>() : nullptr;
  BLOCKRANK_CUDA_CHECK(
      kernels::swiglu_gemm(p, c10::cuda::getCurrentCUDAStream(x.device().index())));
  *out = o;
  return Status::ok();
}

Status cuda_rope_table(const at::Tensor& positions, const at::Tensor& inv_freq, at::Tensor* out) {
  if (!positions.defined() || !positions.is_cuda() || positions.scalar_type() != at::kLong ||
      positions.dim() != 1 || !positions.is_contiguous() ||
      positions.size(0) >= (int64_t{1} << 31)) {
    return Status::invalid_argument(
        "cuda_rope_table: positions must be int64 [T] on a CUDA device");
  }
  if (!inv_freq.defined() || inv_freq.device() != positions.device() ||
      inv_freq.scalar_type() != at::kFloat || inv_freq.dim() != 1 || !inv_freq.is_contiguous()) {
    return Status::invalid_argument("cuda_rope_table: inv_freq must be fp32 [D / 2] on the device");
  }
  const c10::cuda::CUDAGuard guard(positions.device());
  at::Tensor o =
      at::empty({positions.size(0), inv_freq.size(0)}, positions.options().dtype(at::kInt));
  kernels::RopeTableParams p{};
  p.positions = positions.data_ptr<int64_t>();
  p.inv_freq = inv_freq.data_ptr<float>();
  p.out = o.data_ptr();
  p.rows = static_cast<int32_t>(positions.size(0));
  p.head_dim = static_cast<int32_t>(2 * inv_freq.size(0));
  BLOCKRANK_CUDA_CHECK(
      kernels::rope_table(p, c10::cuda::getCurrentCUDAStream(positions.device().index())));
  *out = o;
  return Status::ok();
}

bool cuda_rope_gemm_usable(const at::Tensor& x,
                           const at::Tensor& w,
                           int64_t rope_cols,
                           int64_t head_dim) {
  return x.is_cuda() && w.is_cuda() && x.scalar_type() == at::kBFloat16 &&
         w.scalar_type() == at::kBFloat16 && x.dim() == 2 && w.dim() == 2 &&
         x.size(1) == w.size(1) && x.size(1) % 64 == 0 && w.size(0) % 256 == 0 &&
         w.size(0) < (int64_t{1} << 31) && head_dim == 128 && rope_cols >= 0 &&
         rope_cols % 256 == 0 && rope_cols <= w.size(0) && x.size(0) >= 1 &&
         x.size(0) < (int64_t{1} << 31) && kernels::swiglu_gemm_supported(x.device().index());
}

Status cuda_rope_gemm(const at::Tensor& x_in,
                      const at::Tensor& w_in,
                      const at::Tensor& cos_sin,
                      int64_t rope_cols,
                      at::Tensor* out) {
  if (!cuda_rope_gemm_usable(x_in, w_in, rope_cols, 128)) {
    return Status::invalid_argument(
        "cuda_rope_gemm: x [T, K] and w [N, K] bf16 on an sm_90 device, K % 64 == 0, N % 256 == 0, "
        "rope_cols % 256 == 0 and <= N");
  }
  const int64_t t = x_in.size(0), n = w_in.size(0);
  if (rope_cols > 0 &&
      (!cos_sin.defined() || cos_sin.device() != x_in.device() ||
       cos_sin.scalar_type() != at::kInt || cos_sin.dim() != 2 || cos_sin.size(0) != t ||
       cos_sin.size(1) != 64 || !cos_sin.is_contiguous())) {
    return Status::invalid_argument("cuda_rope_gemm: cos_sin must be cuda_rope_table's [T, 64]");
  }
  if (out->defined() &&
      (out->device() != x_in.device() || out->scalar_type() != at::kBFloat16 || out->dim() != 2 ||
       out->size(0) != t || out->size(1) != n || out->stride(1) != 1 || out->stride(0) != n ||
       reinterpret_cast<uintptr_t>(out->data_ptr()) % 16 != 0)) {
    return Status::invalid_argument("cuda_rope_gemm: out must be [T, N] bf16 with contiguous rows");
  }
  const at::Tensor x = dense_aligned(x_in), w = dense_aligned(w_in);
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor o = out->defined() ? *out : at::empty({t, n}, x.options());
  kernels::RopeGemmParams p{};
  p.x = x.data_ptr();
  p.w = w.data_ptr();
  p.out = o.data_ptr();
  p.cos_sin = rope_cols > 0 ? cos_sin.data_ptr() : nullptr;
  p.rows = static_cast<int32_t>(t);
  p.k = static_cast<int32_t>(x.size(1));
  p.n = static_cast<int32_t>(n);
  p.rope_cols = static_cast<int32_t>(rope_cols);
  BLOCKRANK_CUDA_CHECK(kernels::rope_gemm(p, c10::cuda::getCurrentCUDAStream(x.device().index())));
  *out = o;
  return Status::ok();
}

Status cuda_rope_inplace(const at::Tensor& x,
                         const at::Tensor& positions,
                         const at::Tensor& inv_freq,
                         const at::Tensor& cos_sin) {
  BLOCKRANK_RETURN_IF_ERROR(check_tensor(x, "x", at::kBFloat16, 3));
  const int64_t t = x.size(0), d = x.size(2);
  if (d % 4 != 0 || t >= (int64_t{1} << 31)) {
    return Status::invalid_argument("cuda_rope_inplace: head_dim must be a multiple of 4");
  }
  if (!positions.defined() || positions.device() != x.device() ||
      positions.scalar_type() != at::kLong || positions.dim() != 1 || positions.size(0) != t ||
      !positions.is_contiguous()) {
    return Status::invalid_argument("cuda_rope_inplace: positions must be int64 [T] on x's device");
  }
  if (!inv_freq.defined() || inv_freq.device() != x.device() ||
      inv_freq.scalar_type() != at::kFloat || inv_freq.numel() != d / 2 ||
      !inv_freq.is_contiguous()) {
    return Status::invalid_argument(
        "cuda_rope_inplace: inv_freq must be fp32 [D / 2] on x's device");
  }
  if (cos_sin.defined() &&
      (cos_sin.device() != x.device() || cos_sin.scalar_type() != at::kInt || cos_sin.dim() != 2 ||
       cos_sin.size(0) != t || cos_sin.size(1) != d / 2 || !cos_sin.is_contiguous())) {
    return Status::invalid_argument(
        "cuda_rope_inplace: cos_sin must be cuda_rope_table's int32 [T, D / 2] on x's device");
  }
  const c10::cuda::CUDAGuard guard(x.device());
  kernels::RopeParams p{};
  p.x = x.data_ptr();
  p.row_stride = x.stride(0);
  p.head_stride = x.stride(1);
  p.positions = positions.data_ptr<int64_t>();
  p.inv_freq = inv_freq.data_ptr<float>();
  p.rows = static_cast<int32_t>(t);
  p.heads = static_cast<int32_t>(x.size(1));
  p.head_dim = static_cast<int32_t>(d);
  p.cos_sin = cos_sin.defined() ? cos_sin.data_ptr() : nullptr;
  BLOCKRANK_CUDA_CHECK(kernels::rope(p, c10::cuda::getCurrentCUDAStream(x.device().index())));
  return Status::ok();
}

struct CudaStageTimer::Impl {
  std::vector<std::pair<const char*, cudaEvent_t>> marks;  // first: nullptr (the start)
};

CudaStageTimer::CudaStageTimer(bool enabled) {
  if (enabled) {
    impl_ = std::make_unique<Impl>();
    mark(nullptr);
  }
}

CudaStageTimer::~CudaStageTimer() {
  if (impl_) {
    for (auto& m : impl_->marks) {
      cudaEventDestroy(m.second);
    }
  }
}

void CudaStageTimer::mark(const char* stage) {
  if (!impl_) {
    return;
  }
  cudaEvent_t ev = nullptr;
  if (cudaEventCreate(&ev) != cudaSuccess) {
    return;
  }
  cudaEventRecord(ev, c10::cuda::getCurrentCUDAStream().stream());
  impl_->marks.emplace_back(stage, ev);
}

std::string CudaStageTimer::report() {
  if (!impl_ || impl_->marks.size() < 2) {
    return "";
  }
  cudaEventSynchronize(impl_->marks.back().second);
  std::map<std::string, double> ms;
  double total = 0;
  for (size_t i = 1; i < impl_->marks.size(); ++i) {
    float t = 0;
    cudaEventElapsedTime(&t, impl_->marks[i - 1].second, impl_->marks[i].second);
    ms[impl_->marks[i].first] += t;
    total += t;
  }
  std::string out;
  char line[160];
  for (const auto& [stage, t] : ms) {
    std::snprintf(line, sizeof(line), "  %-14s %9.3f ms  %5.1f%%\n", stage.c_str(), t,
                  100.0 * t / total);
    out += line;
  }
  std::snprintf(line, sizeof(line), "  %-14s %9.3f ms\n", "total", total);
  return out + line;
}

#else  // !BLOCKRANK_TORCH_CUDA

struct CudaStageTimer::Impl {};
CudaStageTimer::CudaStageTimer(bool) {}
CudaStageTimer::~CudaStageTimer() = default;
void CudaStageTimer::mark(const char*) {}
std::string CudaStageTimer::report() {
  return "";
}

bool cuda_layer_ops_available() {
  return false;
}

Status cuda_rms_norm(const at::Tensor&, const at::Tensor&, const at::Tensor&, double, at::Tensor*) {
  return Status::unimplemented("built without the CUDA kernels (BLOCKRANK_CUDA + CUDA LibTorch)");
}

Status cuda_rms_rstd(const at::Tensor&, double, at::Tensor*) {
  return Status::unimplemented("built without the CUDA kernels (BLOCKRANK_CUDA + CUDA LibTorch)");
}

Status cuda_silu_mul(const at::Tensor&, at::Tensor*) {
  return Status::unimplemented("built without the CUDA kernels (BLOCKRANK_CUDA + CUDA LibTorch)");
}

bool cuda_swiglu_gemm_usable(const at::Tensor&, const at::Tensor&) {
  return false;
}

Status cuda_swiglu_gemm(const at::Tensor&, const at::Tensor&, at::Tensor*, const at::Tensor&) {
  return Status::unimplemented("built without the CUDA kernels (BLOCKRANK_CUDA + CUDA LibTorch)");
}

Status cuda_rope_inplace(const at::Tensor&,
                         const at::Tensor&,
                         const at::Tensor&,
                         const at::Tensor&) {
  return Status::unimplemented("built without the CUDA kernels (BLOCKRANK_CUDA + CUDA LibTorch)");
}

Status cuda_rope_table(const at::Tensor&, const at::Tensor&, at::Tensor*) {
  return Status::unimplemented("built without the CUDA kernels (BLOCKRANK_CUDA + CUDA LibTorch)");
}

bool cuda_rope_gemm_usable(const at::Tensor&, const at::Tensor&, int64_t, int64_t) {
  return false;
}

Status cuda_rope_gemm(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, at::Tensor*) {
  return Status::unimplemented("built without the CUDA kernels (BLOCKRANK_CUDA + CUDA LibTorch)");
}

bool cuda_kernels_usable(c10::Device, c10::ScalarType, int64_t, int64_t, int64_t) {
  return false;
}

Status make_cuda_block_plan(
    const BlockLayout&, c10::Device, int64_t, CudaBlockPlan*, int64_t, bool, int64_t, int64_t) {
  return Status::unimplemented("built without the CUDA kernels (BLOCKRANK_CUDA + CUDA LibTorch)");
}

bool cuda_persistent_attention_usable(c10::Device, int64_t) {
  return false;
}

bool cuda_lane_order_usable(c10::Device, int64_t) {
  return false;
}

Status cuda_block_attention(const at::Tensor&,
                            const at::Tensor&,
                            const at::Tensor&,
                            const CudaBlockPlan&,
                            at::Tensor*,
                            int*,
                            bool,
                            const CudaQRope*) {
  return Status::unimplemented("built without the CUDA kernels (BLOCKRANK_CUDA + CUDA LibTorch)");
}

Status cuda_document_scores(const at::Tensor&,
                            const at::Tensor&,
                            const CudaBlockPlan&,
                            at::Tensor*) {
  return Status::unimplemented("built without the CUDA kernels (BLOCKRANK_CUDA + CUDA LibTorch)");
}

#endif  // BLOCKRANK_TORCH_CUDA

}  // namespace blockrank::internal
