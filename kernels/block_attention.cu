// SPDX-License-Identifier: Apache-2.0
// Ragged BlockRank attention forward; see block_attention.cuh for the semantics and the work list.
//
// One CTA = 4 warps = one work item (<= 64 rows of one block) for one query head or for every
// query head of one KV group in turn. Each warp owns 16 rows and runs FlashAttention-2's register
// scheme on mma.sync m16n8k16 (bf16 in, fp32 accumulate): S = Q Kᵀ for a 64-key tile, online
// softmax in base 2 on the accumulator fragments, and the probabilities re-packed as the A operand
// of O += P V without a trip through shared memory. K/V tiles are staged in shared memory by
// cp.async (16 bytes per copy) in a ring of three slots and read into the B fragments with ldmatrix
// (.trans for V). An item of at most three tiles (a 128-token document's rows: 2-3 tiles) loads its
// K/V once for the whole GQA group; longer items stream their tiles two ahead. Keys past the
// item's range are zero-filled (cp.async with source size 0), so masked probabilities (exactly 0)
// never meet uninitialised values. No wgmma: attention is a small share of the rerank FLOPs
// (ANCHORS.md §5).
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
static_assert(kAttentionResidentTiles == 3, "the ring's prefetch depth (2) assumes 3 slots");

__device__ __forceinline__ uint32_t pack_floats(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo
  return *reinterpret_cast<uint32_t*>(&v);
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

// Four 8x8 bf16 matrices from shared memory; lane i supplies the address of row i % 8 of matrix
// i / 8, and receives element [lane / 4][2 (lane % 4) .. +1] of each (with .trans: element
// [2 (lane % 4) .. +1][lane / 4], i.e. the matrix transposed), low half first.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
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
// Waits until at most n (0..2) of this thread's commit groups are still in flight.
__device__ __forceinline__ void cp_async_wait_dynamic(int n) {
  if (n >= 2) {
    cp_async_wait<2>();
  } else if (n == 1) {
    cp_async_wait<1>();
  } else {
    cp_async_wait<0>();
  }
}

template <int D>
__host__ __device__ constexpr int tile_ld() {
  return D + 8;  // +16 bytes per row: the 8 rows an ldmatrix touches hit 8 different bank groups
}

/// Dynamic shared memory of one CTA: kAttentionResidentTiles slots of a K and a V tile.
template <int D>
constexpr size_t attention_smem_bytes() {
  return size_t{kAttentionResidentTiles} * 2 * kTileKeys * tile_ld<D>() * sizeof(__nv_bfloat16);
}

// CTAs per SM the launch bounds ask for: shared memory allows 2 at D = 128 (104 KB each); at D = 64
// (55 KB) 4 would fit but cap the registers at 128 and spill, so 3 (168 registers).
template <int D>
constexpr int attention_min_blocks() {
  return D == 128 ? 2 : 3;
}

// One CTA = 4 warps = one work item for `hpc` query heads of one KV group, one head after the
// other (grid: the first num_streamed_items items x Hq heads one at a time, then the remaining
// items x Hkv groups of Hq / Hkv heads). The item's K/V tiles go through a ring of
// kAttentionResidentTiles shared-memory slots: an item of at most that many tiles loads them once
// and every head of the group reuses them (the GQA saving: K/V read once per KV head, not once per
// query head); a longer item streams its tiles through the ring for each head, two tiles ahead.
template <int D>
__global__ void __launch_bounds__(kThreads, attention_min_blocks<D>())
    blockrank_attention_kernel(const BlockAttentionParams p) {
  constexpr int kLd = tile_ld<D>();
  constexpr int kChunks = D / 8;
  constexpr int kSlot = 2 * kTileKeys * kLd;  // one K tile + one V tile
  constexpr int kRing = kAttentionResidentTiles;
  extern __shared__ __align__(16) __nv_bfloat16 smem[];

  const int group = p.num_heads / p.num_kv_heads;
  const int streamed_ctas = p.num_streamed_items * p.num_heads;
  int item, head_begin, hpc;
  if (static_cast<int>(blockIdx.x) < streamed_ctas) {
    item = blockIdx.x / p.num_heads;
    head_begin = blockIdx.x % p.num_heads;
    hpc = 1;
  } else {
    const int b = blockIdx.x - streamed_ctas;
    item = p.num_streamed_items + b / p.num_kv_heads;
    head_begin = (b % p.num_kv_heads) * group;
    hpc = group;
  }
  const AttentionWorkItem it = p.items[item];
  const int kv_head = head_begin / group;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane >> 2, t4 = lane & 3;
  const int row0 = it.row_begin + warp * 16 + g;
  const int row1 = row0 + 8;
  const bool valid0 = row0 < it.row_end, valid1 = row1 < it.row_end;
  // A warp whose 16 rows are all past the item (a short block's tile) only helps with the copies.
  const bool active = it.row_begin + warp * 16 < it.row_end;

  const auto* q = static_cast<const __nv_bfloat16*>(p.q);
  const auto* k = static_cast<const __nv_bfloat16*>(p.k);
  const auto* v = static_cast<const __nv_bfloat16*>(p.v);
  const float scale_log2 = p.scale * kLog2e;
  const int num_tiles = (it.key_end - it.key_begin + kTileKeys - 1) / kTileKeys;
  const bool resident = num_tiles <= kRing;

  // Issues the copies of tile `i` (keys key_begin + 64 i ...) into slot i % kRing (one group).
  auto load_tile = [&](int i) {
    __nv_bfloat16* kd = smem + (i % kRing) * kSlot;
    __nv_bfloat16* vd = kd + kTileKeys * kLd;
    const int kt = it.key_begin + i * kTileKeys;
    for (int j = threadIdx.x; j < kTileKeys * kChunks; j += kThreads) {
      const int r = j / kChunks, c = (j % kChunks) * 8;
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

  if (resident) {
    for (int i = 0; i < num_tiles; ++i) {
      load_tile(i);
    }
  }
  // ldmatrix row addresses of this lane within a tile: K (keys x dims, not transposed) and V
  // (keys x dims, transposed into the B operand of P V).
  const int mat = lane >> 3, mrow = lane & 7;
  const int k_off = ((mat >> 1) * 8 + mrow) * kLd + (mat & 1) * 8;  // + nt*8*kLd + ks*16
  const int v_off = ((mat & 1) * 8 + mrow) * kLd + (mat >> 1) * 8;  // + kk*16*kLd + dt*8

  for (int hh = 0; hh < hpc; ++hh) {
    const int head = head_begin + hh;
    if (!resident) {
      load_tile(0);
      if (num_tiles > 1) {
        load_tile(1);
      }
    }
    uint32_t qa[D / 16][4];
    {
      const __nv_bfloat16* q0 = q + row0 * p.q_row_stride + head * p.q_head_stride;
      const __nv_bfloat16* q1 = q + row1 * p.q_row_stride + head * p.q_head_stride;
#pragma unroll
      for (int ks = 0; ks < D / 16; ++ks) {
        const int c = ks * 16 + t4 * 2;
        qa[ks][0] = valid0 ? load_u32(q0 + c) : 0u;
        qa[ks][1] = valid1 ? load_u32(q1 + c) : 0u;
        qa[ks][2] = valid0 ? load_u32(q0 + c + 8) : 0u;
        qa[ks][3] = valid1 ? load_u32(q1 + c + 8) : 0u;
      }
    }
    float o[D / 8][4];
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.f;
    }
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;

    for (int i = 0; i < num_tiles; ++i) {
      if (resident) {
        if (hh == 0) {
          cp_async_wait_dynamic(num_tiles - 1 - i);  // tiles 0..i have landed (this thread's)
          __syncthreads();                           // ... and every other thread's
        }
      } else {
        // Slot (i + 2) % 3 was last read in iteration i - 1, which ended with a barrier.
        if (i + 2 < num_tiles) {
          load_tile(i + 2);
        }
        cp_async_wait_dynamic(min(2, num_tiles - 1 - i));
        __syncthreads();
      }
      if (active) {
        const __nv_bfloat16* k_tile = smem + (i % kRing) * kSlot;
        const __nv_bfloat16* v_tile = k_tile + kTileKeys * kLd;
        const int kt = it.key_begin + i * kTileKeys;

        float s[8][4];
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
          s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
        }
#pragma unroll
        for (int ks = 0; ks < D / 16; ++ks) {
#pragma unroll
          for (int np = 0; np < 4; ++np) {  // key tiles 2 np and 2 np + 1
            uint32_t b[4];
            ldmatrix_x4(b, k_tile + k_off + np * 16 * kLd + ks * 16);
            mma_bf16(s[2 * np], qa[ks], b[0], b[1]);
            mma_bf16(s[2 * np + 1], qa[ks], b[2], b[3]);
          }
        }

        // Mask (outside the item's keys, causal part past the row, rows past the item) and
        // scale. A tile whose every key is visible to the item's first row needs no mask: rows
        // past the item have zero Q, finite scores, and are never written.
        const bool full = kt + kTileKeys <= it.key_end &&
                          (kt + kTileKeys <= it.a_end ||
                           it.b_start + (kt + kTileKeys - 1 - it.a_end) <= it.row_begin);
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            float x = s[nt][e] * scale_log2;
            if (!full) {
              const int vk = kt + nt * 8 + t4 * 2 + (e & 1);
              const int row = e < 2 ? row0 : row1;
              const bool ok = (e < 2 ? valid0 : valid1) && vk < it.key_end &&
                              (vk < it.a_end || it.b_start + (vk - it.a_end) <= row);
              x = ok ? x : -INFINITY;
            }
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
        // A row that has seen nothing keeps max -inf; subtracting 0 instead keeps exp2 at 0.
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
          for (int dp = 0; dp < D / 16; ++dp) {  // head-dim tiles 2 dp and 2 dp + 1
            uint32_t b[4];
            ldmatrix_x4_trans(b, v_tile + v_off + kk * 16 * kLd + dp * 16);
            mma_bf16(o[2 * dp], a, b[0], b[1]);
            mma_bf16(o[2 * dp + 1], a, b[2], b[3]);
          }
        }
      }
      if (!resident) {
        __syncthreads();  // every warp is done with this slot before it is refilled
      }
    }

    if (!active) {
      continue;
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
  const int64_t ctas = static_cast<int64_t>(p.num_streamed_items) * p.num_heads +
                       static_cast<int64_t>(p.num_items - p.num_streamed_items) * p.num_kv_heads;
  blockrank_attention_kernel<D><<<static_cast<unsigned>(ctas), kThreads, smem, stream>>>(p);
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

int64_t partition_streamed_items(AttentionWorkItem* items, int64_t num_items) {
  const auto streamed = [](const AttentionWorkItem& it) {
    return it.key_end - it.key_begin > kAttentionResidentTiles * kTileKeys;
  };
  std::stable_partition(items, items + num_items, streamed);
  return std::count_if(items, items + num_items, streamed);
}

cudaError_t block_attention_forward(const BlockAttentionParams& p, cudaStream_t stream) {
  if (p.num_heads <= 0 || p.num_kv_heads <= 0 || p.num_heads % p.num_kv_heads != 0 ||
      p.num_items < 0 || p.num_combine < 0 || p.num_heads > 65535 || p.num_streamed_items < 0 ||
      p.num_streamed_items > p.num_items) {
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
