// SPDX-License-Identifier: Apache-2.0
// Fused elementwise steps of a decoder layer (Llama / Mistral / Qwen2), bf16 in and out, fp32 math,
// each rounding where HF's bf16 forward rounds so the fused path tracks the ATen path to bf16
// noise:
//  - rms_norm: out = w * bf16(x * rsqrt(mean(x^2) + eps)); with a residual, first x <- bf16(x + r)
//    (written back, it is the next residual stream) and the norm runs on the sum. Replaces ~6 ATen
//    passes (cast, pow, mean, rsqrt, mul, cast, mul) plus the residual add by one read and two
//    writes. Optionally (or only) the row's rsqrt(mean(x^2) + eps) in fp32, for a GEMM that
//    applies the norm as a row scale of its products (swiglu_gemm's row_scale).
//  - silu_mul: out = bf16(bf16(silu(g)) * u) from the merged gate|up GEMM output [T, 2F].
//  - rope: rotate_half RoPE in place on [T, H, D] heads (Q and K heads of the merged QKV output in
//    one launch); cos/sin from positions * inv_freq in fp32, rounded to bf16 as HF's tables are.
//
// Host launchers only; kernels are private to layer_ops.cu. No torch headers (STYLE rule 9).
#ifndef BLOCKRANK_KERNELS_LAYER_OPS_CUH_
#define BLOCKRANK_KERNELS_LAYER_OPS_CUH_

#include <cstdint>

#include <cuda_runtime.h>

namespace blockrank {
namespace kernels {

struct RmsNormParams {
  void* x;                ///< bf16 [rows, cols]; receives x + residual when residual != nullptr
  const void* residual;   ///< bf16 [rows, cols] or nullptr
  const void* weight;     ///< bf16 [cols]; unused without out
  void* out;              ///< bf16 [rows, cols], or nullptr: no normalised copy (rstd only)
  float* rstd = nullptr;  ///< fp32 [rows] or nullptr: rsqrt(mean(x^2) + eps) of each row
  int64_t x_row_stride, residual_row_stride, out_row_stride;  ///< elements, multiples of 8
  int32_t rows;
  int32_t cols;  ///< multiple of 8
  float eps;
};

/// cudaErrorInvalidValue for cols % 8 != 0 or unaligned strides; else the launch error.
cudaError_t rms_norm(const RmsNormParams& params, cudaStream_t stream);

struct SiluMulParams {
  const void* gate_up;  ///< bf16 [rows, 2 * cols]: gate in [0, cols), up in [cols, 2 * cols)
  void* out;            ///< bf16 [rows, cols]
  int64_t gate_up_row_stride, out_row_stride;  ///< elements, multiples of 8
  int32_t rows;
  int32_t cols;  ///< multiple of 8
};

cudaError_t silu_mul(const SiluMulParams& params, cudaStream_t stream);

struct RopeParams {
  void* x;                   ///< bf16 [rows, heads, head_dim], rotated in place
  int64_t row_stride;        ///< elements
  int64_t head_stride;       ///< elements
  const int64_t* positions;  ///< device [rows]
  const float* inv_freq;     ///< device fp32 [head_dim / 2]
  int32_t rows;
  int32_t heads;
  int32_t head_dim;  ///< even, and a multiple of 4 (pairs of bf16 per thread in each half)
  /// Optional: rope_table()'s output for these rows and this inv_freq ([rows, head_dim / 2]
  /// words, 16-byte aligned). With it, and head_dim 64 or 128 with 16-byte aligned x and strides,
  /// a 16-byte-vector kernel reads the angles instead of computing them; the bits are the same.
  const void* cos_sin = nullptr;
};

cudaError_t rope(const RopeParams& params, cudaStream_t stream);

/// The (cos, sin) pairs rope() computes, as a table for GEMM epilogues (swiglu_gemm.cuh's
/// rope_gemm): out[r][i] = bf16x2(bf16(cos(a)), bf16(sin(a))), a = float(positions[r]) *
/// inv_freq[i] in fp32, cos in the low half; bit for bit the values rope() uses.
struct RopeTableParams {
  const int64_t* positions;  ///< device [rows]
  const float* inv_freq;     ///< device fp32 [head_dim / 2]
  void* out;                 ///< bf16x2 [rows, head_dim / 2]
  int32_t rows;
  int32_t head_dim;  ///< even
};

cudaError_t rope_table(const RopeTableParams& params, cudaStream_t stream);

}  // namespace kernels
}  // namespace blockrank

#endif  // BLOCKRANK_KERNELS_LAYER_OPS_CUH_
