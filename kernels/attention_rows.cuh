// SPDX-License-Identifier: Apache-2.0
// The output step of block_attention.cu's mma.sync kernel (block_attention_sm90.cu's persistent
// kernel packs its whole-item rows itself, in the same layout), which holds a 64-row tile's O in
// this per-warp accumulator layout: lane (g, t4) = (lane / 4, lane % 4) owns rows r0 = 16 warp + g
// and r0 + 8, columns 8 dt + 2 t4 + {0, 1}. Device code only; include from .cu files.
#ifndef BLOCKRANK_KERNELS_ATTENTION_ROWS_CUH_
#define BLOCKRANK_KERNELS_ATTENTION_ROWS_CUH_

#include <cmath>
#include <cstdint>

#include <cuda_bf16.h>

#include "kernels/block_attention.cuh"
#include "kernels/device_util.cuh"

namespace blockrank {
namespace kernels {
namespace attention_rows {

// Scores of one 64-key tile in this layout: s(nt, e) -> float&, column 8 nt + 2 t4 + (e & 1) of
// row r0 (e < 2) or r0 + 8. Masks to -inf the scores whose column past the lane's 2 t4, 8 nt +
// (e & 1), is above d0 (row r0) / d1 (row r0 + 8): one compare per score against a compile-time
// column.
template <typename Scores>
__device__ __forceinline__ void mask_columns(Scores s, int d0, int d1) {
#pragma unroll
  for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      float& x = s(nt, e);
      x = nt * 8 + (e & 1) <= (e < 2 ? d0 : d1) ? x : -INFINITY;
    }
  }
}

// One tile of the online softmax: the rows' maxima over the quad (a row's 64 columns are spread
// over its 4 lanes) into the running maxima m0 / m1 (raw scores); the scores turned in place into
// exp2(s * scale_log2 - base), base being the new maximum in log2 units, or 0 for a row that has
// seen nothing, which keeps every exp2 of a -inf score at 0; the lane's sums folded into l0 / l1
// (l = l * alpha + sum; the quad is reduced once, by write). Returns the factors alpha (x: row r0,
// y: r0 + 8) by which the rows' earlier O must be scaled.
template <typename Scores>
__device__ __forceinline__ float2
online_softmax_tile(Scores s, float& m0, float& m1, float& l0, float& l1, float scale_log2) {
  float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
  for (int nt = 0; nt < 8; ++nt) {
    mx0 = fmaxf(mx0, fmaxf(s(nt, 0), s(nt, 1)));
    mx1 = fmaxf(mx1, fmaxf(s(nt, 2), s(nt, 3)));
  }
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
  const float new0 = fmaxf(m0, mx0), new1 = fmaxf(m1, mx1);
  const float base0 = new0 == -INFINITY ? 0.f : new0 * scale_log2;
  const float base1 = new1 == -INFINITY ? 0.f : new1 * scale_log2;
  const float alpha0 = fast_exp2(m0 * scale_log2 - base0);
  const float alpha1 = fast_exp2(m1 * scale_log2 - base1);
  m0 = new0;
  m1 = new1;
  float sum0 = 0.f, sum1 = 0.f;
#pragma unroll
  for (int nt = 0; nt < 8; ++nt) {
    s(nt, 0) = fast_exp2(fmaf(s(nt, 0), scale_log2, -base0));
    s(nt, 1) = fast_exp2(fmaf(s(nt, 1), scale_log2, -base0));
    s(nt, 2) = fast_exp2(fmaf(s(nt, 2), scale_log2, -base1));
    s(nt, 3) = fast_exp2(fmaf(s(nt, 3), scale_log2, -base1));
    sum0 += s(nt, 0) + s(nt, 1);
    sum1 += s(nt, 2) + s(nt, 3);
  }
  l0 = l0 * alpha0 + sum0;
  l1 = l1 * alpha1 + sum1;
  return make_float2(alpha0, alpha1);
}

// Sums the row sums over the lane quad, then writes the lane's two rows of head `head`: the
// normalised bf16 output (rows past the item skipped; a row with sum 0 gets zeros) or, for a split
// piece (it.partial >= 0), the unnormalised fp32 O and (max in log2 units, sum) into its partial
// slot. o(dt, e): accumulator e (0, 1: row r0; 2, 3: row r0 + 8) of column block dt. m0 / m1: the
// rows' maxima of the raw scores.
template <int D, typename Acc>
__device__ __forceinline__ void write(const BlockAttentionParams& p,
                                      const AttentionWorkItem& it,
                                      int head,
                                      int r0,
                                      int t4,
                                      float l0,
                                      float l1,
                                      float m0,
                                      float m1,
                                      float scale_log2,
                                      Acc o) {
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  const int r1 = r0 + 8;
  const int row0 = it.row_begin + r0, row1 = it.row_begin + r1;
  if (it.partial < 0) {
    const float inv0 = l0 > 0.f ? 1.f / l0 : 0.f;
    const float inv1 = l1 > 0.f ? 1.f / l1 : 0.f;
    auto* out = static_cast<__nv_bfloat16*>(p.out);
    __nv_bfloat16* out0 = out + row0 * p.out_row_stride + head * p.out_head_stride;
    __nv_bfloat16* out1 = out + row1 * p.out_row_stride + head * p.out_head_stride;
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      // The pair stays adjacent in the lane order (it permutes bits 1-4 of the column).
      const int c =
          D == 128 && p.out_lane_order != 0 ? lane_order_column(dt * 8 + t4 * 2) : dt * 8 + t4 * 2;
      if (row0 < it.row_end) {
        *reinterpret_cast<__nv_bfloat162*>(out0 + c) =
            __floats2bfloat162_rn(o(dt, 0) * inv0, o(dt, 1) * inv0);
      }
      if (row1 < it.row_end) {
        *reinterpret_cast<__nv_bfloat162*>(out1 + c) =
            __floats2bfloat162_rn(o(dt, 2) * inv1, o(dt, 3) * inv1);
      }
    }
  } else {
    const int64_t slot = static_cast<int64_t>(it.partial) * p.num_heads + head;
    float* po = p.partial_out + slot * kAttentionTileRows * D;
    float* pml = p.partial_ml + slot * kAttentionTileRows * 2;
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      const int c = dt * 8 + t4 * 2;
      *reinterpret_cast<float2*>(po + r0 * D + c) = make_float2(o(dt, 0), o(dt, 1));
      *reinterpret_cast<float2*>(po + r1 * D + c) = make_float2(o(dt, 2), o(dt, 3));
    }
    if (t4 == 0) {  // the combine works in log2 units
      pml[r0 * 2] = m0 == -INFINITY ? -INFINITY : m0 * scale_log2;
      pml[r0 * 2 + 1] = l0;
      pml[r1 * 2] = m1 == -INFINITY ? -INFINITY : m1 * scale_log2;
      pml[r1 * 2 + 1] = l1;
    }
  }
}

}  // namespace attention_rows
}  // namespace kernels
}  // namespace blockrank

#endif  // BLOCKRANK_KERNELS_ATTENTION_ROWS_CUH_
