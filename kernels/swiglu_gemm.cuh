// SPDX-License-Identifier: Apache-2.0
// The gate|up projection of a SwiGLU MLP with the activation in the GEMM's epilogue:
// out = silu(x Wgᵀ) * (x Wuᵀ), from the merged weight w_gate_up = [Wg; Wu] ([2F, K], HF's gate_proj
// rows then up_proj rows). The [T, 2F] gate|up product is never written and no separate SiLU·up
// pass runs. bf16 in and out, fp32 accumulation; gate and up are rounded to bf16 as the two-step
// path's GEMM output is, then silu(g) * u in fp32 and one rounding (the two-step path also rounds
// silu(g): the results differ by bf16 noise).
//
// Hopper only (sm_90a: TMA, wgmma, setmaxnreg): a persistent, warp-specialised kernel, one
// producer warpgroup issuing TMA loads into a 4-stage mbarrier pipeline and two consumer
// warpgroups on wgmma.m64n256k16, each 256-column B tile being 128 gate rows and the matching 128
// up rows so a thread holds gate and up of the same column; the 64 x 128 act tile of each consumer
// is staged in shared memory and written by a TMA store. A tile's epilogue runs in pieces under the
// next tile's first k-blocks (swiglu_gemm.cu, Epilogue_). Measured against cuBLAS +
// kernels/layer_ops' silu_mul in bench/gpu/swiglu_gemm.cu (docs/BENCHMARKS.md).
//
// Host launchers only; no torch headers (STYLE rule 9).
#ifndef BLOCKRANK_KERNELS_SWIGLU_GEMM_CUH_
#define BLOCKRANK_KERNELS_SWIGLU_GEMM_CUH_

#include <cstdint>

#include <cuda_runtime.h>

namespace blockrank {
namespace kernels {

struct SwigluGemmParams {
  const void* x;          ///< bf16 [rows, k], row stride k, 16-byte aligned
  const void* w_gate_up;  ///< bf16 [2 f, k], row stride k: gate rows [0, f), up rows [f, 2 f)
  void* out;              ///< bf16 [rows, f], row stride f, 16-byte aligned
  int32_t rows;           ///< >= 1
  int32_t k;              ///< multiple of 64
  int32_t f;              ///< multiple of 128
  /// Optional fp32 [rows]: row r's gate and up products are multiplied by row_scale[r] before
  /// SiLU·up. With w_gate_up's columns pre-multiplied by an RMSNorm weight and layer_ops'
  /// rms_norm rstd as the scale, the kernel takes the raw residual stream instead of its
  /// normalised copy: silu(s g) * (s u) with g, u each rounded to bf16 first.
  const float* row_scale = nullptr;
};

/// True when `device` can run the kernels of this file (compute capability 9.0) and this build
/// has them.
bool swiglu_gemm_supported(int device);

/// Launches on `stream`. cudaErrorInvalidValue for unsupported shapes, misaligned pointers or a
/// device without sm_90 (check swiglu_gemm_supported first); else the launch error.
cudaError_t swiglu_gemm(const SwigluGemmParams& params, cudaStream_t stream);

/// The Q|K|V projection with RoPE in the epilogue: out = x wᵀ rounded to bf16, then columns
/// [0, rope_cols) rotated in place as heads of 128 (HF's rotate_half with its bf16 rounding points,
/// bit for bit what kernels/layer_ops' rope does to the rounded product). The same kernel as the
/// SwiGLU GEMM with 256-column tiles of consecutive w rows, each consumer's 64 x 256 output tile
/// staged and stored one 128-column head at a time. No bias.
struct RopeGemmParams {
  const void* x;        ///< bf16 [rows, k], row stride k, 16-byte aligned
  const void* w;        ///< bf16 [n, k], row stride k, 16-byte aligned
  void* out;            ///< bf16 [rows, n], row stride n, 16-byte aligned
  const void* cos_sin;  ///< bf16x2 [rows, 64]: (cos, sin) of row r's position x inv_freq[i],
                        ///< as layer_ops' rope_table writes it; 8-byte aligned
  int32_t rows;         ///< >= 1
  int32_t k;            ///< multiple of 64
  int32_t n;            ///< multiple of 256
  int32_t rope_cols;    ///< multiple of 256, <= n: the Q and K columns (head_dim 128)
};

cudaError_t rope_gemm(const RopeGemmParams& params, cudaStream_t stream);

}  // namespace kernels
}  // namespace blockrank

#endif  // BLOCKRANK_KERNELS_SWIGLU_GEMM_CUH_
