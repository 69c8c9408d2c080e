// SPDX-License-Identifier: Apache-2.0
// Ragged BlockRank attention forward; see block_attention.cuh for the semantics and the work list.
//
// One CTA = 4 warps = one work item (<= 64 rows of one block) for one query head (or a pack of
// 2-4 heads when the item has at most 32 or 16 rows) or for every query head of one KV group in
// turn. Each warp owns 16 rows and runs FlashAttention-2's register scheme on mma.sync m16n8k16
// (bf16 in, fp32 accumulate): S = Q Kᵀ for a 64-key tile, online softmax in base 2 on the
// accumulator fragments, and the probabilities re-packed as the A operand of O += P V without a
// trip through shared memory. Q and the K/V tiles are staged in shared memory by cp.async (16
// bytes per copy, XOR-swizzled rows) and read into the fragments with ldmatrix (.trans for V); K/V
// go through a ring of three slots. An item of at most three tiles (a 128-token document's rows:
// 2-3 tiles) loads its K/V once for the whole GQA group and prefetches the next head's Q while the
// current one runs; longer items stream their tiles two ahead. Keys past the item's range are
// zero-filled (cp.async with source size 0), so masked probabilities (exactly 0) never meet
// uninitialised values. No wgmma: attention is a small share of the rerank FLOPs (ANCHORS.md §5).
#include <algorithm>
#include <cmath>
#include <vector>

#include <cuda_bf16.h>

#include "kernels/attention_rows.cuh"
#include "kernels/block_attention.cuh"
#include "kernels/block_attention_sm90.cuh"
#include "kernels/device_util.cuh"

namespace blockrank {
namespace kernels {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kTileKeys = 64;
constexpr float kLog2e = 1.4426950408889634f;

static_assert(kAttentionTileRows == kWarps * 16, "each warp owns 16 rows of a tile");
static_assert(kAttentionResidentTiles == 3, "the ring's prefetch depth (2) assumes 3 slots");

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

template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
// Waits until at most n (clamped to 0..4) of this thread's commit groups are still in flight.
__device__ __forceinline__ void cp_async_wait_dynamic(int n) {
  if (n >= 4) {
    cp_async_wait<4>();
  } else if (n == 3) {
    cp_async_wait<3>();
  } else if (n == 2) {
    cp_async_wait<2>();
  } else if (n == 1) {
    cp_async_wait<1>();
  } else {
    cp_async_wait<0>();
  }
}

// Shared-memory tiles are unpadded rows of D bf16 values (D / 8 16-byte chunks); chunk c of row r
// is stored at chunk c ^ (r % 8), so the 8 rows one ldmatrix phase reads (same logical chunk) hit
// 8 different bank groups. Returns the element offset of chunk c of row r.
template <int D>
__device__ __forceinline__ int swizzled(int r, int c) {
  return r * D + ((c ^ (r & 7)) << 3);
}

/// Dynamic shared memory of one CTA: kAttentionResidentTiles slots of a K and a V tile (64 keys
/// each) and one 64-row Q tile (16 rows per warp).
template <int D>
constexpr size_t attention_smem_bytes() {
  return (size_t{kAttentionResidentTiles} * 2 * kTileKeys + kAttentionTileRows) * D *
         sizeof(__nv_bfloat16);
}

// CTAs per SM the launch bounds ask for: shared memory allows 2 at D = 128 (112 KB each, plus the
// 1 KB the driver reserves per CTA, within the SM's 228 KB); at D = 64 (56 KB) 4 would fit but
// cap the registers at 128 and spill, so 3 (168 registers).
template <int D>
constexpr int attention_min_blocks() {
  return D == 128 ? 2 : 3;
}

// One CTA = 4 warps = one work item for `hpc` query heads of one KV group (grid: the first
// num_streamed_items items x Hq heads, then the remaining items x Hkv groups of Hq / Hkv heads).
// An item of at most 32 (16) rows runs 2 (4) heads of its group side by side, one per pair of
// warps (per warp), over the same K/V tiles; a CTA of the per-head part whose head does not start
// such a pack exits at once. The item's K/V tiles go through a ring of kAttentionResidentTiles
// shared-memory slots: an item of at most that many tiles loads them once and every head of the
// group reuses them (the GQA saving: K/V read once per KV head, not once per query head), with the
// next round's Q prefetched into shared memory during the current round; a longer item streams its
// tiles through the ring for each round, two tiles ahead.
template <int D>
__global__ void __launch_bounds__(kThreads, attention_min_blocks<D>())
    blockrank_attention_kernel(const BlockAttentionParams p) {
  constexpr int kChunks = D / 8;
  constexpr int kTile = kTileKeys * D;  // elements of one K or V tile
  constexpr int kRing = kAttentionResidentTiles;
  extern __shared__ __align__(16) __nv_bfloat16 smem[];
  __nv_bfloat16* const q_smem = smem + kRing * 2 * kTile;  // warp w's 16 rows at w * 16 * D

  const int group = p.num_heads / p.num_kv_heads;
  const int streamed_ctas = p.num_streamed_items * p.num_heads;
  const bool per_head = static_cast<int>(blockIdx.x) < streamed_ctas;
  int item, head_begin;
  if (per_head) {
    item = blockIdx.x / p.num_heads;
    head_begin = blockIdx.x % p.num_heads;
  } else {
    const int b = blockIdx.x - streamed_ctas;
    item = p.num_streamed_items + b / p.num_kv_heads;
    head_begin = (b % p.num_kv_heads) * group;
  }
  const AttentionWorkItem it = p.items[item];
  const int item_rows = it.row_end - it.row_begin;
  // Heads side by side: `pack` divides the group, so the pack shares one KV head.
  int pack = 1;
  if (item_rows <= 32 && group % 2 == 0) {
    pack = 2;
  }
  if (item_rows <= 16 && group % 4 == 0) {
    pack = 4;
  }
  if (per_head && head_begin % pack != 0) {
    return;  // the CTA of head_begin - head_begin % pack runs this head
  }
  const int hpc = per_head ? pack : group;  // query heads of this CTA, `pack` per round
  const int kv_head = head_begin / group;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane >> 2, t4 = lane & 3;
  const int warps_per_head = kWarps / pack;
  const int sub = warp / warps_per_head;          // this warp's head within the pack
  const int wrow = (warp % warps_per_head) * 16;  // its first row within the item
  const int row0 = it.row_begin + wrow + g;
  const int row1 = row0 + 8;
  const bool valid0 = row0 < it.row_end, valid1 = row1 < it.row_end;
  // A warp whose 16 rows are all past the item (a short block's tile) only helps with the copies.
  const bool active = it.row_begin + wrow < it.row_end;
  // The last visible virtual key of each of the lane's two rows (-1 for a row past the item: all
  // masked). Keys v < a_end are visible to every row (an item's rows start at b_start or later, as
  // build_attention_work makes them), keys v >= a_end while b_start + (v - a_end) <= row, so a
  // row sees exactly the keys v <= row - b_start + a_end below key_end: one compare per score.
  const int lim0 = valid0 ? min(row0 - it.b_start + it.a_end, it.key_end - 1) : -1;
  const int lim1 = valid1 ? min(row1 - it.b_start + it.a_end, it.key_end - 1) : -1;

  const auto* q = static_cast<const __nv_bfloat16*>(p.q);
  const auto* k = static_cast<const __nv_bfloat16*>(p.k);
  const auto* v = static_cast<const __nv_bfloat16*>(p.v);
  const float scale_log2 = p.scale * kLog2e;
  const int num_tiles = (it.key_end - it.key_begin + kTileKeys - 1) / kTileKeys;
  const bool resident = num_tiles <= kRing;
  const int rounds = hpc / pack;

  // Issues the copies of tile `i` (keys key_begin + 64 i ...) into slot i % kRing (one group).
  auto load_tile = [&](int i) {
    __nv_bfloat16* kd = smem + (i % kRing) * 2 * kTile;
    __nv_bfloat16* vd = kd + kTile;
    const int kt = it.key_begin + i * kTileKeys;
    for (int j = threadIdx.x; j < kTileKeys * kChunks; j += kThreads) {
      const int r = j / kChunks, c = j % kChunks;
      const int vk = kt + r;
      const bool in = vk < it.key_end;
      const int64_t tok = !in ? 0 : vk < it.a_end ? vk : it.b_start + (vk - it.a_end);
      cp_async_16(kd + swizzled<D>(r, c),
                  k + tok * p.k_row_stride + kv_head * p.k_head_stride + c * 8, in ? 16 : 0);
      cp_async_16(vd + swizzled<D>(r, c),
                  v + tok * p.v_row_stride + kv_head * p.v_head_stride + c * 8, in ? 16 : 0);
    }
    cp_async_commit();
  };
  // Issues the copies of this warp's 16 Q rows of round `round` into its part of q_smem (one group;
  // rows past the item are zero-filled).
  auto load_q = [&](int round) {
    const int head = head_begin + round * pack + sub;
    __nv_bfloat16* dst = q_smem + warp * 16 * D;
    for (int j = lane; j < 16 * kChunks; j += 32) {
      const int r = j / kChunks, c = j % kChunks;
      const int row = it.row_begin + wrow + r;
      const bool in = row < it.row_end;
      cp_async_16(dst + swizzled<D>(r, c),
                  q + static_cast<int64_t>(in ? row : it.row_begin) * p.q_row_stride +
                      head * p.q_head_stride + c * 8,
                  in ? 16 : 0);
    }
    cp_async_commit();
  };

  if (resident) {
    load_q(0);
    for (int i = 0; i < num_tiles; ++i) {
      load_tile(i);
    }
  }
  // ldmatrix row addresses of this lane: lane i supplies row i % 8 of matrix i / 8. Q (A operand:
  // matrices rows 0-7 / 8-15 x columns 0-7 / 8-15), K (keys x dims, not transposed) and V (keys x
  // dims, transposed into the B operand of P V). Every row offset is a multiple of 8 plus
  // mrow, so the swizzle XORs the chunk with mrow.
  const int mat = lane >> 3, mrow = lane & 7;
  const int q_row = ((mat & 1) * 8 + mrow) * D, q_x = (mat >> 1) ^ mrow;  // chunk (2 ks) ^ q_x
  const int k_row = ((mat >> 1) * 8 + mrow) * D, k_x = (mat & 1) ^ mrow;  // + np*16*D, (2 ks) ^ k_x
  const int v_row = ((mat & 1) * 8 + mrow) * D, v_x = (mat >> 1) ^ mrow;  // + kk*16*D, (2 dp) ^ v_x

  for (int round = 0; round < rounds; ++round) {
    const int head = head_begin + round * pack + sub;
    if (!resident) {
      load_q(round);
      load_tile(0);
      load_tile(1);        // a streamed item has more than kRing tiles
      cp_async_wait<2>();  // this thread's Q copies have landed
    } else if (round == 0) {
      cp_async_wait_dynamic(num_tiles);  // Q of round 0; the tiles may still be in flight
    } else {
      cp_async_wait<0>();  // the prefetched Q, the only group in flight
    }
    __syncwarp();  // ... and the other lanes' (each warp reads only its own rows)
    uint32_t qa[D / 16][4];
    {
      const __nv_bfloat16* qs = q_smem + warp * 16 * D + q_row;
#pragma unroll
      for (int ks = 0; ks < D / 16; ++ks) {
        ldmatrix_x4(qa[ks], qs + (((2 * ks) ^ q_x) << 3));
      }
    }
    __syncwarp();  // every lane's fragments are read before the buffer is refilled
    const bool prefetch = resident && round + 1 < rounds;
    if (prefetch) {
      load_q(round + 1);
    }

    float o[D / 8][4];
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.f;
    }
    // Running maxima of the raw scores (scaled only inside the exponent) and per-lane sums.
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;

    for (int i = 0; i < num_tiles; ++i) {
      if (resident) {
        if (round == 0) {
          // Tiles 0..i have landed (this thread's copies; the prefetched Q may be in flight) ...
          cp_async_wait_dynamic(num_tiles - 1 - i + (prefetch ? 1 : 0));
          __syncthreads();  // ... and every other thread's
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
        const __nv_bfloat16* k_tile = smem + (i % kRing) * 2 * kTile;
        const __nv_bfloat16* v_tile = k_tile + kTile;
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
            ldmatrix_x4(b, k_tile + k_row + np * 16 * D + (((2 * ks) ^ k_x) << 3));
            mma_bf16(s[2 * np], qa[ks], b[0], b[1]);
            mma_bf16(s[2 * np + 1], qa[ks], b[2], b[3]);
          }
        }

        // Mask (outside the item's keys, causal part past the row, rows past the item). A tile
        // whose every key is visible to the item's first row needs no mask: rows past the item
        // have zero Q, finite scores, and are never written.
        const bool full = kt + kTileKeys <= it.key_end &&
                          (kt + kTileKeys <= it.a_end ||
                           it.b_start + (kt + kTileKeys - 1 - it.a_end) <= it.row_begin);
        const auto score = [&](int nt, int e) -> float& { return s[nt][e]; };
        if (!full) {  // vs the column in the tile
          attention_rows::mask_columns(score, lim0 - kt - t4 * 2, lim1 - kt - t4 * 2);
        }
        const float2 alpha = attention_rows::online_softmax_tile(score, m0, m1, l0, l1, scale_log2);
        const float alpha0 = alpha.x, alpha1 = alpha.y;
        if (i > 0) {  // O is still zero after no tile
#pragma unroll
          for (int dt = 0; dt < D / 8; ++dt) {
            o[dt][0] *= alpha0;
            o[dt][1] *= alpha0;
            o[dt][2] *= alpha1;
            o[dt][3] *= alpha1;
          }
        }
        // O += P V: two adjacent 8-key accumulator tiles form one 16-key A fragment.
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
          const uint32_t a[4] = {pack_bf16x2(s[2 * kk][0], s[2 * kk][1]),
                                 pack_bf16x2(s[2 * kk][2], s[2 * kk][3]),
                                 pack_bf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                 pack_bf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
          for (int dp = 0; dp < D / 16; ++dp) {  // head-dim tiles 2 dp and 2 dp + 1
            uint32_t b[4];
            ldmatrix_x4_trans(b, v_tile + v_row + kk * 16 * D + (((2 * dp) ^ v_x) << 3));
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
    attention_rows::write<D>(p, it, head, wrow + g, t4, l0, l1, m0, m1, scale_log2,
                             [&](int dt, int e) { return o[dt][e]; });
  }
}

// Merges split-K partials: out = Σ_i 2^(m_i - M) o_i / Σ_i 2^(m_i - M) l_i. Grid (combine items,
// heads, tile rows / kCombineRowsPerCta); one warp per (row, head), each lane kCombineCols
// consecutive head-dim elements (16-byte partial loads). The partials are visited in order, so
// the sums are the same in every run. Lane k first takes the maxima of partials k, k + 32, ...
// (one warp max instead of a serial scan); each partial's weight then comes from its (m, l) pair,
// loaded by every lane of the warp (one broadcast), so the loads of different partials are
// independent and several are in flight per lane.
constexpr int kCombineRowsPerCta = 4;

template <int D>
__global__ void __launch_bounds__(32 * kCombineRowsPerCta)
    blockrank_attention_combine_kernel(const BlockAttentionParams p) {
  constexpr int kCombineCols = D / 32;  // 4 (D = 128) or 2 (D = 64)
  const AttentionCombineItem c = p.combine[blockIdx.x];
  const int head = blockIdx.y, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int lr = blockIdx.z * kCombineRowsPerCta + warp;
  const int row = c.row_begin + lr;
  if (row >= c.row_end) {
    return;
  }
  // Slot of partial i for this head and row: ((first + i) * heads + head) * tile rows + lr.
  const int64_t slot0 =
      (static_cast<int64_t>(c.first_partial) * p.num_heads + head) * kAttentionTileRows + lr;
  const int64_t slot_step = static_cast<int64_t>(p.num_heads) * kAttentionTileRows;
  float mx = -INFINITY;
  for (int i = lane; i < c.num_partials; i += 32) {
    mx = fmaxf(mx, p.partial_ml[(slot0 + i * slot_step) * 2]);
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
  }
  float acc[kCombineCols] = {};
  float sum = 0.f;
  if (mx != -INFINITY) {
#pragma unroll 4
    for (int i = 0; i < c.num_partials; ++i) {
      const int64_t slot = slot0 + i * slot_step;
      const float2 ml = *reinterpret_cast<const float2*>(p.partial_ml + slot * 2);
      const float* src = p.partial_out + slot * D + lane * kCombineCols;
      float v[kCombineCols];
      if constexpr (kCombineCols == 4) {
        const float4 f = *reinterpret_cast<const float4*>(src);
        v[0] = f.x, v[1] = f.y, v[2] = f.z, v[3] = f.w;
      } else {
        const float2 f = *reinterpret_cast<const float2*>(src);
        v[0] = f.x, v[1] = f.y;
      }
      if (ml.x == -INFINITY) {
        continue;  // this split saw no key of the row
      }
      const float w = exp2f(ml.x - mx);
      sum += w * ml.y;
#pragma unroll
      for (int e = 0; e < kCombineCols; ++e) {
        acc[e] += w * v[e];
      }
    }
  }
  auto* out =
      static_cast<__nv_bfloat16*>(p.out) + row * p.out_row_stride + head * p.out_head_stride;
  // Pairs of consecutive elements stay consecutive in the lane order (it keeps bit 0).
#pragma unroll
  for (int e = 0; e < kCombineCols; e += 2) {
    const int d = lane * kCombineCols + e;
    const int col = D == 128 && p.out_lane_order != 0 ? lane_order_column(d) : d;
    *reinterpret_cast<__nv_bfloat162*>(out + col) =
        __floats2bfloat162_rn(sum > 0.f ? acc[e] / sum : 0.f, sum > 0.f ? acc[e + 1] / sum : 0.f);
  }
}

template <int D>
cudaError_t launch(const BlockAttentionParams& p,
                   cudaStream_t stream,
                   const AttentionSideStream* side) {
  constexpr size_t smem = attention_smem_bytes<D>();
  // Above 48 KB a kernel must opt in to its dynamic shared memory (once per process and device;
  // repeating the call is cheap and keeps this correct after a device switch).
  cudaError_t err =
      cudaFuncSetAttribute(blockrank_attention_kernel<D>,
                           cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  if (err != cudaSuccess) {
    return err;
  }
  const int64_t streamed_ctas = static_cast<int64_t>(p.num_streamed_items) * p.num_heads;
  const int64_t ctas =
      streamed_ctas + static_cast<int64_t>(p.num_items - p.num_streamed_items) * p.num_kv_heads;
  // The streamed items' CTAs alone (beside or before the persistent kernel): the wgmma pieces
  // kernel with p.wgmma_pieces, else the mma.sync kernel's per-head CTAs.
  const auto launch_streamed = [&](cudaStream_t s) -> cudaError_t {
    if (D == 128 && p.wgmma_pieces != 0) {
      return block_attention_pieces_sm90(p, s);
    }
    blockrank_attention_kernel<D><<<static_cast<unsigned>(streamed_ctas), kThreads, smem, s>>>(p);
    return cudaGetLastError();
  };
  if (D == 128 && p.wgmma_grouped != 0 && side != nullptr && streamed_ctas > 0 &&
      p.num_items > p.num_streamed_items) {
    // The persistent kernel first, on the side stream; the per-head CTAs on `stream` fill the SMs
    // its CTAs leave. Both only read Q/K/V and write disjoint rows (or partial slots).
    err = cudaEventRecord(side->fork, stream);
    if (err == cudaSuccess) {
      err = cudaStreamWaitEvent(side->stream, side->fork, 0);
    }
    if (err == cudaSuccess) {
      err = block_attention_grouped_sm90(p, side->stream);
    }
    if (err == cudaSuccess) {
      err = launch_streamed(stream);
    }
    if (err == cudaSuccess) {
      err = cudaEventRecord(side->join, side->stream);
    }
    if (err == cudaSuccess) {
      err = cudaStreamWaitEvent(stream, side->join, 0);
    }
  } else if (D == 128 && p.wgmma_grouped != 0) {
    // The per-head CTAs here, the grouped ones on the persistent kernel.
    if (streamed_ctas > 0) {
      err = launch_streamed(stream);
      if (err != cudaSuccess) {
        return err;
      }
    }
    err = block_attention_grouped_sm90(p, stream);
  } else {
    blockrank_attention_kernel<D><<<static_cast<unsigned>(ctas), kThreads, smem, stream>>>(p);
    err = cudaGetLastError();
  }
  if (err != cudaSuccess || p.num_combine == 0) {
    return err;
  }
  blockrank_attention_combine_kernel<D>
      <<<dim3(static_cast<unsigned>(p.num_combine), static_cast<unsigned>(p.num_heads),
              kAttentionTileRows / kCombineRowsPerCta),
         32 * kCombineRowsPerCta, 0, stream>>>(p);
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

int64_t partition_streamed_items(AttentionWorkItem* items, int64_t num_items, bool longest_first) {
  // Split-K pieces stream too, however short (the query block's last one): the grouped kernels
  // then see whole items only, which the persistent TMA kernel's split key layout needs.
  const auto streamed = [](const AttentionWorkItem& it) {
    return it.key_end - it.key_begin > kAttentionResidentTiles * kTileKeys || it.partial >= 0;
  };
  std::stable_partition(items, items + num_items, streamed);
  const int64_t num_streamed = std::count_if(items, items + num_items, streamed);
  // The rest longest first (most key tiles), so the CTAs that start last are the short ones and
  // the launch's tail is short. On the H200 (Mistral-7B shape, gpu_rerank_bench's round-robin A/B
  // against document order, bench/gpu/NOTES.md session 10): the kernel 0.226 -> 0.222 ms at
  // N = 100, the pass's attention stage ~0.15-0.2 ms lower over 20 layers; small, and free.
  if (!longest_first) {
    return num_streamed;
  }
  std::stable_sort(items + num_streamed, items + num_items,
                   [](const AttentionWorkItem& a, const AttentionWorkItem& b) {
                     return a.key_end - a.key_begin > b.key_end - b.key_begin;
                   });
  return num_streamed;
}

cudaError_t block_attention_forward(const BlockAttentionParams& p,
                                    cudaStream_t stream,
                                    const AttentionSideStream* side) {
  if (p.num_heads <= 0 || p.num_kv_heads <= 0 || p.num_heads % p.num_kv_heads != 0 ||
      p.num_items < 0 || p.num_combine < 0 || p.num_heads > 65535 || p.num_streamed_items < 0 ||
      p.num_streamed_items > p.num_items || !(p.scale > 0.f)) {
    return cudaErrorInvalidValue;  // scale > 0: the running max is kept on the unscaled scores
  }
  if (p.num_combine > 0 && (p.partial_out == nullptr || p.partial_ml == nullptr)) {
    return cudaErrorInvalidValue;
  }
  if (p.out_lane_order != 0 && p.head_dim != 128) {
    return cudaErrorInvalidValue;
  }
  if (p.num_items == 0) {
    return cudaSuccess;
  }
  switch (p.head_dim) {
    case 64:
      return launch<64>(p, stream, side);
    case 128:
      return launch<128>(p, stream, side);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace kernels
}  // namespace blockrank
