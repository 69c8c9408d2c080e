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

namespace blockrank {
namespace kernels {
namespace attention_rows {

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
