// SPDX-License-Identifier: Apache-2.0
// Wave quantisation of the pass's cuBLAS GEMMs. With T = 12,832 rows (the Mistral-7B N = 100 pass
// with the instruction cached; 12,896 without) a 128-row tiling gives 101 row tiles, i.e. 12.24
// waves of 128 x 256 tiles on 132 SMs for N = 4,096: the last wave would leave most SMs idle for a
// whole tile (~175 us at K = 14,336). This times, for the QKV, O and down shapes (out = x Wᵀ, bf16,
// fp32 accumulate, beta = 1 where the pass accumulates into the residual stream):
//   whole:  one GEMM over T rows (what the pass does);
//   split:  the same rows as two GEMMs, [0, T1) with T1 a whole number of waves and the rest, in
//           the same stream (cuBLAS picks its own kernel, split-K or not, for the short one);
//   waves:  T1 rows alone (the per-row cost without a partial wave).
// Round robin over rounds, medians. Standalone (CUDA runtime + cuBLAS), built on the GPU machine:
//   nvcc -O2 -std=c++17 -arch=sm_90 -I. bench/gpu/gemm_tail.cu -lcublas -o gt && ./gt [T=12832]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "bench/gpu/cuda_bench_util.cuh"

namespace {

using blockrank::bench::fill_random_bf16;
using blockrank::bench::time_ms;

struct Shape {
  const char* name;
  int n, k;
  float beta;
  int t1;  // rows of the whole-wave part
};

}  // namespace

int main(int argc, char** argv) {
  const int t = argc > 1 ? std::atoi(argv[1]) : 12832;
  // 99 row tiles of 128: 1,584 tiles of 128 x 256 at N = 4,096 (12 waves on 132 SMs), 2,376 at
  // N = 6,144 (18 waves).
  const int t1 = std::min(t, 99 * 128);
  const std::vector<Shape> shapes = {{"qkv", 6144, 4096, 0.f, t1},
                                     {"o (beta 1)", 4096, 4096, 1.f, t1},
                                     {"down (beta 1)", 4096, 14336, 1.f, t1}};
  cublasHandle_t h;
  BENCH_CHECK_STATUS(cublasCreate(&h));
  int max_k = 0, max_n = 0;
  for (const Shape& s : shapes) {
    max_k = std::max(max_k, s.k);
    max_n = std::max(max_n, s.n);
  }
  __nv_bfloat16 *x, *w, *out;
  BENCH_CHECK_CUDA(cudaMalloc(&x, size_t{2} * t * max_k));
  BENCH_CHECK_CUDA(cudaMalloc(&w, size_t{2} * max_n * max_k));
  BENCH_CHECK_CUDA(cudaMalloc(&out, size_t{2} * t * max_n));
  fill_random_bf16<<<1024, 256>>>(x, size_t{1} * t * max_k, 1, 1.0f);
  fill_random_bf16<<<1024, 256>>>(w, size_t{1} * max_n * max_k, 2, 0.02f);
  fill_random_bf16<<<1024, 256>>>(out, size_t{1} * t * max_n, 3, 1.0f);
  BENCH_CHECK_CUDA(cudaDeviceSynchronize());
  // out[r0 : r0 + rows] (+)= x[r0 : r0 + rows] Wᵀ, row-major, as ATen's mm / addmm_ call cuBLAS.
  const auto gemm = [&](const Shape& s, int r0, int rows) {
    const float one = 1.f;
    BENCH_CHECK_STATUS(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, s.n, rows, s.k, &one, w,
                                    CUDA_R_16BF, s.k, x + static_cast<size_t>(r0) * s.k,
                                    CUDA_R_16BF, s.k, &s.beta, out + static_cast<size_t>(r0) * s.n,
                                    CUDA_R_16BF, s.n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  };
  std::printf("T=%d, whole-wave part T1=%d rows\n\n", t, t1);
  std::printf(
      "| GEMM | whole ms | split ms | split / whole | T1 rows alone ms | whole ms per row / T1's "
      "|\n| --- | --- | --- | --- | --- | --- |\n");
  for (const Shape& s : shapes) {
    std::vector<float> whole, split, part;
    for (int round = 0; round < 7; ++round) {
      whole.push_back(time_ms([&] { gemm(s, 0, t); }, 2, 10));
      split.push_back(time_ms(
          [&] {
            gemm(s, 0, s.t1);
            gemm(s, s.t1, t - s.t1);
          },
          2, 10));
      part.push_back(time_ms([&] { gemm(s, 0, s.t1); }, 2, 10));
    }
    for (auto* v : {&whole, &split, &part}) {
      std::sort(v->begin(), v->end());
    }
    const float a = whole[3], b = split[3], c = part[3];
    std::printf("| %s | %.3f | %.3f | %.3f | %.3f | %.3f |\n", s.name, a, b, b / a, c,
                (a / t) / (c / s.t1));
  }
  return 0;
}
