// SPDX-License-Identifier: Apache-2.0
// kernels/swiglu_gemm (the gate|up GEMM with SiLU·up in its epilogue) against cuBLAS gate|up +
// kernels/layer_ops' silu_mul: relative L2 over sampled rows, unwritten elements, and time, the two
// alternated so the GPU's clock drift hits both alike. Standalone (CUDA runtime, cuBLAS, driver):
//   nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -I. bench/gpu/swiglu_gemm.cu \
//     kernels/swiglu_gemm.cu kernels/layer_ops.cu -lcublas -lcuda -o swiglu_gemm
//   ./swiglu_gemm [T=12896] [K=4096] [F=14336]
// The variants measured before the kernel moved to kernels/ (direct global stores, clusters of two
// CTAs multicasting the weight tile) are in this file's history (commit 16754cb).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "bench/gpu/cuda_bench_util.cuh"
#include "kernels/layer_ops.cuh"
#include "kernels/swiglu_gemm.cuh"

namespace {

using blockrank::bench::fill_random_bf16;
using blockrank::bench::time_ms;

}  // namespace

int main(int argc, char** argv) {
  const int t = argc > 1 ? std::atoi(argv[1]) : 12896, k = argc > 2 ? std::atoi(argv[2]) : 4096,
            f = argc > 3 ? std::atoi(argv[3]) : 14336;
  if (!blockrank::kernels::swiglu_gemm_supported(0)) {
    std::fprintf(stderr, "needs an sm_90 (Hopper) GPU\n");
    return 2;
  }
  __nv_bfloat16 *x, *w, *gu, *ref, *act;
  BENCH_CHECK_CUDA(cudaMalloc(&x, size_t{2} * t * k));
  BENCH_CHECK_CUDA(cudaMalloc(&w, size_t{2} * 2 * f * k));
  BENCH_CHECK_CUDA(cudaMalloc(&gu, size_t{2} * t * 2 * f));
  BENCH_CHECK_CUDA(cudaMalloc(&ref, size_t{2} * t * f));
  BENCH_CHECK_CUDA(cudaMalloc(&act, size_t{2} * t * f));
  fill_random_bf16<<<1024, 256>>>(x, size_t{1} * t * k, 1, 2.0f);
  fill_random_bf16<<<1024, 256>>>(w, size_t{2} * f * k, 2, 0.1f);
  cublasHandle_t h;
  BENCH_CHECK_STATUS(cublasCreate(&h));
  auto reference = [&] {
    const float one = 1.f, zero = 0.f;
    BENCH_CHECK_STATUS(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, 2 * f, t, k, &one, w, CUDA_R_16BF,
                                    k, x, CUDA_R_16BF, k, &zero, gu, CUDA_R_16BF, 2 * f,
                                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    blockrank::kernels::SiluMulParams p{};
    p.gate_up = gu;
    p.out = ref;
    p.gate_up_row_stride = 2 * f;
    p.out_row_stride = f;
    p.rows = t;
    p.cols = f;
    BENCH_CHECK_CUDA(blockrank::kernels::silu_mul(p, nullptr));
  };
  blockrank::kernels::SwigluGemmParams sp{};
  sp.x = x;
  sp.w_gate_up = w;
  sp.out = act;
  sp.rows = t;
  sp.k = k;
  sp.f = f;
  auto fused = [&] { BENCH_CHECK_CUDA(blockrank::kernels::swiglu_gemm(sp, nullptr)); };
  reference();
  BENCH_CHECK_CUDA(cudaMemset(act, 0xff, size_t{2} * t * f));  // NaN: unwritten shows up
  fused();
  BENCH_CHECK_CUDA(cudaDeviceSynchronize());
  std::vector<__nv_bfloat16> a(static_cast<size_t>(f)), b(static_cast<size_t>(f));
  double num = 0, den = 0;
  long nans = 0;
  for (int row = 0; row < t; row += std::max(1, t / 97)) {
    for (const int rr : {row, t - 1 - row}) {
      BENCH_CHECK_CUDA(
          cudaMemcpy(a.data(), act + static_cast<size_t>(rr) * f, 2 * f, cudaMemcpyDeviceToHost));
      BENCH_CHECK_CUDA(
          cudaMemcpy(b.data(), ref + static_cast<size_t>(rr) * f, 2 * f, cudaMemcpyDeviceToHost));
      for (int i = 0; i < f; ++i) {
        const double va = __bfloat162float(a[i]), vb = __bfloat162float(b[i]);
        if (std::isnan(va)) {
          ++nans;
          continue;
        }
        num += (va - vb) * (va - vb);
        den += vb * vb;
      }
    }
  }
  const double rel = std::sqrt(num / std::max(den, 1e-30));
  std::printf("T=%d K=%d F=%d: fused vs cuBLAS gate|up + SiLU·up: rel L2 %.3e, NaN %ld\n", t, k, f,
              rel, nans);
  const double flop = 2.0 * t * 2.0 * f * k;
  std::printf("| round | cuBLAS gate|up + SiLU ms | fused ms | fused TFLOP/s | ratio |\n");
  std::printf("| --- | --- | --- | --- | --- |\n");
  for (int r = 0; r < 4; ++r) {
    const float ref_ms = time_ms(reference, 3, 20);
    const float fused_ms = time_ms(fused, 3, 20);
    std::printf("| %d | %.3f | %.3f | %.0f | %.3f |\n", r, ref_ms, fused_ms, flop / fused_ms / 1e9,
                ref_ms / fused_ms);
  }
  return rel < 2e-2 && nans == 0 ? 0 : 1;
}
