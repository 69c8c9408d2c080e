// SPDX-License-Identifier: Apache-2.0
// Small helpers shared by the standalone CUDA benchmark programs in bench/gpu (gemm_autotune.cu,
// swiglu_gemm.cu): error checks that print file:line and exit, deterministic bf16 test data, and
// CUDA-event timing. Header-only; include with -I<repository root>.
#ifndef BLOCKRANK_BENCH_GPU_CUDA_BENCH_UTIL_CUH_
#define BLOCKRANK_BENCH_GPU_CUDA_BENCH_UTIL_CUH_

#include <cstddef>
#include <cstdio>
#include <cstdlib>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#define BENCH_CHECK_CUDA(x)                                                           \
  do {                                                                                \
    cudaError_t e_ = (x);                                                             \
    if (e_ != cudaSuccess) {                                                          \
      std::fprintf(stderr, "%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); \
      std::exit(1);                                                                   \
    }                                                                                 \
  } while (0)

// For library calls returning an integer status where 0 is success (cuBLAS, cuBLASLt, driver).
#define BENCH_CHECK_STATUS(x)                                            \
  do {                                                                   \
    int s_ = static_cast<int>(x);                                        \
    if (s_ != 0) {                                                       \
      std::fprintf(stderr, "%s:%d status %d\n", __FILE__, __LINE__, s_); \
      std::exit(1);                                                      \
    }                                                                    \
  } while (0)

namespace blockrank::bench {

// Uniform values in [-scale/2, scale/2) from a hash of the index and `seed`.
__global__ void fill_random_bf16(__nv_bfloat16* p, size_t n, unsigned seed, float scale) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n;
       i += size_t{gridDim.x} * blockDim.x) {
    unsigned h = static_cast<unsigned>(i) * 2654435761u ^ seed;
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    h ^= h >> 15;
    p[i] = __float2bfloat16((static_cast<float>(h & 0xffff) / 65536.f - 0.5f) * scale);
  }
}

// Mean milliseconds of `reps` calls of f() after `warm` untimed ones, by CUDA events on the
// default stream.
template <typename F>
float time_ms(F&& f, int warm, int reps) {
  for (int i = 0; i < warm; ++i) {
    f();
  }
  cudaEvent_t e0, e1;
  BENCH_CHECK_CUDA(cudaEventCreate(&e0));
  BENCH_CHECK_CUDA(cudaEventCreate(&e1));
  BENCH_CHECK_CUDA(cudaEventRecord(e0));
  for (int i = 0; i < reps; ++i) {
    f();
  }
  BENCH_CHECK_CUDA(cudaEventRecord(e1));
  BENCH_CHECK_CUDA(cudaEventSynchronize(e1));
  float ms = 0;
  BENCH_CHECK_CUDA(cudaEventElapsedTime(&ms, e0, e1));
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return ms / reps;
}

}  // namespace blockrank::bench

#endif  // BLOCKRANK_BENCH_GPU_CUDA_BENCH_UTIL_CUH_
