// SPDX-License-Identifier: Apache-2.0
// Ragged BlockRank attention forward; see block_attention.cuh for the semantics and the work list.
//
// One CTA = 4 warps = one work item (<= 64 rows of one block) for one query head. Each warp owns 16
// rows and runs FlashAttention-2's register scheme on mma.sync m16n8k16 (bf16 in, fp32 accumulate):
// S = Q Kᵀ for a 64-key tile, online softmax in base 2 on the accumulator fragments, and the
// probabilities re-packed as the A operand of O += P V without a trip through shared memory. K/V
// tiles are staged in shared memory by cp.async (16 bytes per copy), double buffered: the next
// tile's copies are in flight while the current one is computed, so a work item (2-3 tiles for a
// 128-token document) no longer waits for every load in turn. Keys past the item's range are
// zero-filled (cp.async with source size 0), so masked probabilities (exactly 0) never meet
// uninitialised values. No wgmma: attention is a small share of the rerank FLOPs (ANCHORS.md §5).
#include <algorithm>
#include <cmath>
#include <vector>

#include <cuda_bf16.h>

#include "kernels/block_attention.cuh"

namespace blockrank {
namespace kernels {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kTileKeys = 64;
constexpr float kLog2e = 1.4426950408889634f;

static_assert(kAttentionTileRows == kWarps * 16, "each warp owns 16 rows of a tile");

__device__ __forceinline__ uint32_t pack_floats(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo
  return *reinterpret_cast<uint32_t*>(&v);
}

__device__ __forceinline__ uint32_t pack_bf16(__nv_bfloat16 lo, __nv_bfloat16 hi) {
  return static_cast<uint32_t>(__bfloat16_as_ushort(lo)) |
         (static_cast<uint32_t>(__bfloat16_as_ushort(hi)) << 16);
}

__device__ __forceinline__ uint32_t load_u32(const __nv_bfloat16* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

// D (16x8, fp32) += A (16x16, bf16, row-major) * B (16x8, bf16, column-major). Fragment layout
// (PTX ISA, mma.m16n8k16): g = lane / 4, t = lane % 4; a0 = A[g][2t..2t+1], a1 = A[g+8][2t..],
// a2 = A[g][2t+8..], a3 = A[g+8][2t+8..]; b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g];
// c0,c1 = C[g][2t..2t+1], c2,c3 = C[g+8][2t..2t+1].
__device__ __forceinline__ void mma_bf16(float (&c)[4],
                                         const uint32_t (&a)[4],
                                         uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 16-byte global -> shared copy that bypasses the registers (sm80+). src_bytes 0 writes 16 zero
// bytes and reads nothing (the source must still be a valid address expression).
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, int src_bytes) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem),
               "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

template <int D>
__host__ __device__ constexpr int tile_ld() {
  return D + 8;  // +16 bytes per row: the 8 rows a fragment load touches hit 8 banks
}

/// Dynamic shared memory of one CTA: two stages of a K and a V tile.
template <int D>
constexpr size_t attention_smem_bytes() {
  return size_t{2} * 2 * kTileKeys * tile_ld<D>() * sizeof(__nv_bfloat16);
}

template <int D>
__global__ void __launch_bounds__(kThreads, 3)
    blockrank_attention_kernel(const BlockAttentionParams p) {
  constexpr int kLd = tile_ld<D>();
  constexpr int kChunks = D / 8;
  constexpr int kStage = 2 * kTileKeys * kLd;  // one K tile + one V tile
  extern __shared__ __align__(16) __nv_bfloat16 smem[];

  const AttentionWorkItem it = p.items[blockIdx.x];
  const int head = blockIdx.y;
  const int kv_head = head / (p.num_heads / p.num_kv_heads);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane >> 2, t4 = lane & 3;
  const int row0 = it.row_begin + warp * 16 + g;
  const int row1 = row0 + 8;
  const bool valid0 = row0 < it.row_end, valid1 = row1 < it.row_end;

  const auto* q = static_cast<const __nv_bfloat16*>(p.q);
  const auto* k = static_cast<const __nv_bfloat16*>(p.k);
  const auto* v = static_cast<const __nv_bfloat16*>(p.v);
  const __nv_bfloat16* q0 = q + row0 * p.q_row_stride + head * p.q_head_stride;
  const __nv_bfloat16* q1 = q + row1 * p.q_row_stride + head * p.q_head_stride;

  uint32_t qa[D / 16][4];
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks) {
    const int c = ks * 16 + t4 * 2;
    qa[ks][0] = valid0 ? load_u32(q0 + c) : 0u;
    qa[ks][1] = valid1 ? load_u32(q1 + c) : 0u;
    qa[ks][2] = valid0 ? load_u32(q0 + c + 8) : 0u;
    qa[ks][3] = valid1 ? load_u32(q1 + c + 8) : 0u;
  }

  float o[D / 8][4];
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt) {
    o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.f;
  }
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
  const float scale_log2 = p.scale * kLog2e;

  // Issues the copies of the tile starting at key kt into stage `stage` (one commit group).
  auto load_tile = [&](int kt, int stage) {
    __nv_bfloat16* kd = smem + stage * kStage;
    __nv_bfloat16* vd = kd + kTileKeys * kLd;
    for (int i = threadIdx.x; i < kTileKeys * kChunks; i += kThreads) {
      const int r = i / kChunks, c = (i % kChunks) * 8;
      const int vk = kt + r;
      const bool in = vk < it.key_end;
      const int64_t tok = !in ? 0 : vk < it.a_end ? vk : it.b_start + (vk - it.a_end);
      cp_async_16(kd + r * kLd + c, k + tok * p.k_row_stride + kv_head * p.k_head_stride + c,
                  in ? 16 : 0);
      cp_async_16(vd + r * kLd + c, v + tok * p.v_row_stride + kv_head * p.v_head_stride + c,
                  in ? 16 : 0);
    }
    cp_async_commit();
  };

  if (it.key_begin < it.key_end) {
    load_tile(it.key_begin, 0);
  }
  int stage = 0;
  for (int kt = it.key_begin; kt < it.key_end; kt += kTileKeys, stage ^= 1) {
    // Stage `stage ^ 1` was last read in the previous iteration, which ended with a barrier.
    if (kt + kTileKeys < it.key_end) {
      load_tile(kt + kTileKeys, stage ^ 1);
      cp_async_wait<1>();  // this tile's group is complete; the next one may still be in flight
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // every thread's copies of this tile are visible
    const __nv_bfloat16* k_tile = smem + stage * kStage;
    const __nv_bfloat16* v_tile = k_tile + kTileKeys * kLd;

    float s[8][4];
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
    }
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
        const __nv_bfloat16* kp = k_tile + (nt * 8 + g) * kLd + ks * 16 + t4 * 2;
        mma_bf16(s[nt], qa[ks], load_u32(kp), load_u32(kp + 8));
      }
    }

    // Mask (outside the item's keys, causal part past the row, rows past the tile) and scale.
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int vk = kt + nt * 8 + t4 * 2 + (e & 1);
        const int row = e < 2 ? row0 : row1;
        const bool ok = (e < 2 ? valid0 : valid1) && vk < it.key_end &&
                        (vk < it.a_end || it.b_start + (vk - it.a_end) <= row);
        const float x = ok ? s[nt][e] * scale_log2 : -INFINITY;
        s[nt][e] = x;
        if (e < 2) {
          mx0 = fmaxf(mx0, x);
        } else {
          mx1 = fmaxf(mx1, x);
        }
      }
    }
    // A row's 64 columns are spread over the 4 lanes of its quad.
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    const float new0 = fmaxf(m0, mx0), new1 = fmaxf(m1, mx1);
    // A row that has seen nothing keeps max -inf; subtracting 0 instead keeps exp2 at 0, not NaN.
    const float base0 = new0 == -INFINITY ? 0.f : new0;
    const float base1 = new1 == -INFINITY ? 0.f : new1;
    const float alpha0 = exp2f(m0 - base0), alpha1 = exp2f(m1 - base1);
    m0 = new0;
    m1 = new1;
    float sum0 = 0.f, sum1 = 0.f;
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
      s[nt][0] = exp2f(s[nt][0] - base0);
      s[nt][1] = exp2f(s[nt][1] - base0);
      s[nt][2] = exp2f(s[nt][2] - base1);
      s[nt][3] = exp2f(s[nt][3] - base1);
      sum0 += s[nt][0] + s[nt][1];
      sum1 += s[nt][2] + s[nt][3];
    }
    l0 = l0 * alpha0 + sum0;  // per-lane partial sums; the quad is reduced once at the end
    l1 = l1 * alpha1 + sum1;
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      o[dt][0] *= alpha0;
      o[dt][1] *= alpha0;
      o[dt][2] *= alpha1;
      o[dt][3] *= alpha1;
    }
    // O += P V: two adjacent 8-key accumulator tiles form one 16-key A fragment.
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      const uint32_t a[4] = {pack_floats(s[2 * kk][0], s[2 * kk][1]),
                             pack_floats(s[2 * kk][2], s[2 * kk][3]),
                             pack_floats(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                             pack_floats(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt) {
        const __nv_bfloat16* vp = v_tile + (kk * 16 + t4 * 2) * kLd + dt * 8 + g;
        mma_bf16(o[dt], a, pack_bf16(vp[0], vp[kLd]), pack_bf16(vp[8 * kLd], vp[9 * kLd]));
      }
    }
    __syncthreads();  // every warp is done with this stage before it is refilled
  }

  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);

  if (it.partial < 0) {
    const float inv0 = l0 > 0.f ? 1.f / l0 : 0.f;
    const float inv1 = l1 > 0.f ? 1.f / l1 : 0.f;
    auto* out = static_cast<__nv_bfloat16*>(p.out);
    __nv_bfloat16* out0 = out + row0 * p.out_row_stride + head * p.out_head_stride;
    __nv_bfloat16* out1 = out + row1 * p.out_row_stride + head * p.out_head_stride;
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      const int c = dt * 8 + t4 * 2;
      if (valid0) {
        *reinterpret_cast<uint32_t*>(out0 + c) = pack_floats(o[dt][0] * inv0, o[dt][1] * inv0);
      }
      if (valid1) {
        *reinterpret_cast<uint32_t*>(out1 + c) = pack_floats(o[dt][2] * inv1, o[dt][3] * inv1);
      }
    }
  } else {
    const int64_t slot = static_cast<int64_t>(it.partial) * p.num_heads + head;
    float* po = p.partial_out + slot * kAttentionTileRows * D;
    float* pml = p.partial_ml + slot * kAttentionTileRows * 2;
    const int r0 = warp * 16 + g, r1 = r0 + 8;
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      const int c = dt * 8 + t4 * 2;
      *reinterpret_cast<float2*>(po + r0 * D + c) = make_float2(o[dt][0], o[dt][1]);
      *reinterpret_cast<float2*>(po + r1 * D + c) = make_float2(o[dt][2], o[dt][3]);
    }
    if (t4 == 0) {
      pml[r0 * 2] = m0;
      pml[r0 * 2 + 1] = l0;
      pml[r1 * 2] = m1;
      pml[r1 * 2 + 1] = l1;
    }
  }
}

// Merges split-K partials: out = Σ_i 2^(m_i - M) o_i / Σ_i 2^(m_i - M) l_i. Grid (combine items,
// heads, tile rows); one thread per head-dim element.
template <int D>
__global__ void __launch_bounds__(D)
    blockrank_attention_combine_kernel(const BlockAttentionParams p) {
  const AttentionCombineItem c = p.combine[blockIdx.x];
  const int head = blockIdx.y, lr = blockIdx.z, d = threadIdx.x;
  const int row = c.row_begin + lr;
  if (row >= c.row_end) {
    return;
  }
  float mx = -INFINITY;
  for (int i = 0; i < c.num_partials; ++i) {
    const int64_t slot = static_cast<int64_t>(c.first_partial + i) * p.num_heads + head;
    mx = fmaxf(mx, p.partial_ml[(slot * kAttentionTileRows + lr) * 2]);
  }
  float acc = 0.f, sum = 0.f;
  if (mx != -INFINITY) {
    for (int i = 0; i < c.num_partials; ++i) {
      const int64_t slot = static_cast<int64_t>(c.first_partial + i) * p.num_heads + head;
      const float m = p.partial_ml[(slot * kAttentionTileRows + lr) * 2];
      if (m == -INFINITY) {
        continue;  // this split saw no key of the row
      }
      const float w = exp2f(m - mx);
      sum += w * p.partial_ml[(slot * kAttentionTileRows + lr) * 2 + 1];
      acc += w * p.partial_out[(slot * kAttentionTileRows + lr) * D + d];
    }
  }
  auto* out = static_cast<__nv_bfloat16*>(p.out);
  out[row * p.out_row_stride + head * p.out_head_stride + d] =
      __float2bfloat16(sum > 0.f ? acc / sum : 0.f);
}

template <int D>
cudaError_t launch(const BlockAttentionParams& p, cudaStream_t stream) {
  constexpr size_t smem = attention_smem_bytes<D>();
  // Above 48 KB a kernel must opt in to its dynamic shared memory (once per process and device;
  // repeating the call is cheap and keeps this correct after a device switch).
  cudaError_t err =
      cudaFuncSetAttribute(blockrank_attention_kernel<D>,
                           cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  if (err != cudaSuccess) {
    return err;
  }
  blockrank_attention_kernel<D>
      <<<dim3(static_cast<unsigned>(p.num_items), static_cast<unsigned>(p.num_heads)), kThreads,
         smem, stream>>>(p);
  err = cudaGetLastError();
  if (err != cudaSuccess || p.num_combine == 0) {
    return err;
  }
  blockrank_attention_combine_kernel<D>
      <<<dim3(static_cast<unsigned>(p.num_combine), static_cast<unsigned>(p.num_heads),
              kAttentionTileRows),
         D, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace

int64_t build_attention_work(const int64_t* block_lengths,
                             int64_t num_blocks,
                             int64_t split_keys,
                             AttentionWorkItem* items,
                             AttentionCombineItem* combine,
                             int64_t* num_combine,
                             int64_t* num_partials) {
  split_keys = std::max<int64_t>(kTileKeys, split_keys / kTileKeys * kTileKeys);
  std::vector<int64_t> starts(static_cast<size_t>(num_blocks) + 1, 0);
  for (int64_t b = 0; b < num_blocks; ++b) {
    starts[b + 1] = starts[b] + block_lengths[b];
  }
  const int64_t l0 = block_lengths[0];
  int64_t n_items = 0, n_combine = 0, n_partials = 0;
  // The query block first: its split items are the longest, so they should not start last.
  for (int64_t step = 0; step < num_blocks; ++step) {
    const int64_t b = step == 0 ? num_blocks - 1 : step - 1;
    const bool doc = b > 0 && b + 1 < num_blocks;
    const int64_t a_end = doc ? l0 : 0, b_start = doc ? starts[b] : 0;
    for (int64_t rt = starts[b]; rt < starts[b + 1]; rt += kAttentionTileRows) {
      const int64_t re = std::min<int64_t>(rt + kAttentionTileRows, starts[b + 1]);
      const int64_t nv = a_end + (re - b_start);
      if (nv <= split_keys) {
        if (items != nullptr) {
          items[n_items] = {static_cast<int32_t>(rt),
                            static_cast<int32_t>(re),
                            static_cast<int32_t>(a_end),
                            static_cast<int32_t>(b_start),
                            0,
                            static_cast<int32_t>(nv),
                            -1,
                            0};
        }
        ++n_items;
        continue;
      }
      const int64_t splits = (nv + split_keys - 1) / split_keys;
      if (combine != nullptr) {
        combine[n_combine] = {static_cast<int32_t>(rt), static_cast<int32_t>(re),
                              static_cast<int32_t>(n_partials), static_cast<int32_t>(splits)};
      }
      ++n_combine;
      for (int64_t s = 0; s < splits; ++s) {
        if (items != nullptr) {
          items[n_items] = {static_cast<int32_t>(rt),
                            static_cast<int32_t>(re),
                            static_cast<int32_t>(a_end),
                            static_cast<int32_t>(b_start),
                            static_cast<int32_t>(s * split_keys),
                            static_cast<int32_t>(std::min(nv, (s + 1) * split_keys)),
                            static_cast<int32_t>(n_partials),
                            0};
        }
        ++n_items;
        ++n_partials;
      }
    }
  }
  *num_combine = n_combine;
  *num_partials = n_partials;
  return n_items;
}

cudaError_t block_attention_forward(const BlockAttentionParams& p, cudaStream_t stream) {
  if (p.num_heads <= 0 || p.num_kv_heads <= 0 || p.num_heads % p.num_kv_heads != 0 ||
      p.num_items < 0 || p.num_combine < 0 || p.num_heads > 65535) {
    return cudaErrorInvalidValue;
  }
  if (p.num_combine > 0 && (p.partial_out == nullptr || p.partial_ml == nullptr)) {
    return cudaErrorInvalidValue;
  }
  if (p.num_items == 0) {
    return cudaSuccess;
  }
  switch (p.head_dim) {
    case 64:
      return launch<64>(p, stream);
    case 128:
      return launch<128>(p, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace kernels
}  // namespace blockrank
