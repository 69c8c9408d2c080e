// SPDX-License-Identifier: Apache-2.0
// Does cuBLAS's default choice leave time on the table for the rerank pass's GEMMs? For each of
// the four linear layers of the Mistral-7B shape (T tokens x K -> N, bf16 in/out, fp32
// accumulate, out = x Wᵀ as ATen computes it) this times cublasGemmEx (what at::linear /
// at::addmm_ call) against every algorithm cuBLASLt's heuristic offers, then the whole 20-layer
// sequence (80 GEMMs) with the default vs the per-shape best, alternated so the GPU's clock drift
// under load hits both alike; then the merged gate|up GEMM against its two halves as separate
// GEMMs into the same output. Standalone (CUDA runtime + cuBLAS only), built on the GPU machine
// from the repository root:
//   nvcc -O2 -std=c++17 -arch=sm_90 -I. bench/gpu/gemm_autotune.cu -lcublasLt -lcublas -o ga
//   ./ga [T=12896] [layers=20]
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "bench/gpu/cuda_bench_util.cuh"

namespace {

using blockrank::bench::fill_random_bf16;
using blockrank::bench::time_ms;

struct Shape {
  const char* name;
  int n, k;  // out [T, n] = x [T, k] W[n, k]ᵀ
};

struct Gemm {
  Shape s;
  int t;
  void *x, *w, *out;
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  std::vector<cublasLtMatmulHeuristicResult_t> algos;
  int best = -1;  // index into algos, -1 = cublasGemmEx
};

constexpr size_t kWorkspace = size_t{32} << 20;

void* alloc_random(size_t elems, unsigned seed) {
  void* p = nullptr;
  BENCH_CHECK_CUDA(cudaMalloc(&p, elems * 2));
  fill_random_bf16<<<1024, 256>>>(static_cast<__nv_bfloat16*>(p), elems, seed, 0.1f);
  return p;
}

void run_default(cublasHandle_t h, const Gemm& g) {
  const float one = 1.f, zero = 0.f;
  // Column-major view: outᵀ [n, T] = W [n, k] (stored k x n, transposed) * xᵀ [k, T].
  BENCH_CHECK_STATUS(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, g.s.n, g.t, g.s.k, &one, g.w,
                                  CUDA_R_16BF, g.s.k, g.x, CUDA_R_16BF, g.s.k, &zero, g.out,
                                  CUDA_R_16BF, g.s.n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void run_lt(cublasLtHandle_t lt, const Gemm& g, int i, void* ws, cudaStream_t st) {
  const float one = 1.f, zero = 0.f;
  BENCH_CHECK_STATUS(cublasLtMatmul(lt, g.desc, &one, g.w, g.a, g.x, g.b, &zero, g.out, g.c, g.out,
                                    g.c, &g.algos[static_cast<size_t>(i)].algo, ws, kWorkspace,
                                    st));
}

}  // namespace

int main(int argc, char** argv) {
  const int t = argc > 1 ? std::atoi(argv[1]) : 12896;
  const int layers = argc > 2 ? std::atoi(argv[2]) : 20;
  const Shape shapes[] = {
      {"qkv", 6144, 4096}, {"o", 4096, 4096}, {"gate_up", 28672, 4096}, {"down", 4096, 14336}};
  cublasHandle_t h;
  cublasLtHandle_t lt;
  BENCH_CHECK_STATUS(cublasCreate(&h));
  BENCH_CHECK_STATUS(cublasLtCreate(&lt));
  void* ws = nullptr;
  BENCH_CHECK_CUDA(cudaMalloc(&ws, kWorkspace));
  BENCH_CHECK_STATUS(cublasSetWorkspace(h, ws, kWorkspace));
  std::vector<Gemm> gemms;
  unsigned seed = 1;
  for (const Shape& s : shapes) {
    Gemm g;
    g.s = s;
    g.t = t;
    g.x = alloc_random(size_t{static_cast<size_t>(t)} * s.k, seed++);
    g.w = alloc_random(size_t{static_cast<size_t>(s.n)} * s.k, seed++);
    BENCH_CHECK_CUDA(cudaMalloc(&g.out, size_t{static_cast<size_t>(t)} * s.n * 2));
    BENCH_CHECK_STATUS(cublasLtMatmulDescCreate(&g.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = CUBLAS_OP_T;
    BENCH_CHECK_STATUS(
        cublasLtMatmulDescSetAttribute(g.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    BENCH_CHECK_STATUS(cublasLtMatrixLayoutCreate(&g.a, CUDA_R_16BF, s.k, s.n, s.k));
    BENCH_CHECK_STATUS(cublasLtMatrixLayoutCreate(&g.b, CUDA_R_16BF, s.k, t, s.k));
    BENCH_CHECK_STATUS(cublasLtMatrixLayoutCreate(&g.c, CUDA_R_16BF, s.n, t, s.n));
    cublasLtMatmulPreference_t pref;
    BENCH_CHECK_STATUS(cublasLtMatmulPreferenceCreate(&pref));
    BENCH_CHECK_STATUS(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &kWorkspace, sizeof kWorkspace));
    g.algos.resize(32);
    int found = 0;
    BENCH_CHECK_STATUS(cublasLtMatmulAlgoGetHeuristic(lt, g.desc, g.a, g.b, g.c, g.c, pref, 32,
                                                      g.algos.data(), &found));
    g.algos.resize(static_cast<size_t>(found));
    cublasLtMatmulPreferenceDestroy(pref);
    gemms.push_back(g);
  }
  BENCH_CHECK_CUDA(cudaDeviceSynchronize());
  std::printf("T = %d, %d layers\n\n| GEMM | algorithm | ms | TFLOP/s | vs cublasGemmEx |\n", t,
              layers);
  std::printf("| --- | --- | --- | --- | --- |\n");
  for (Gemm& g : gemms) {
    const double flop = 2.0 * t * g.s.n * g.s.k;
    const float base = time_ms([&] { run_default(h, g); }, 5, 30);
    std::printf("| %s | cublasGemmEx | %.3f | %.0f | 1.000 |\n", g.s.name, base, flop / base / 1e9);
    float best = base;
    for (size_t i = 0; i < g.algos.size(); ++i) {
      const float ms = time_ms([&] { run_lt(lt, g, static_cast<int>(i), ws, nullptr); }, 3, 30);
      std::printf("| %s | lt heuristic #%zu | %.3f | %.0f | %.3f |\n", g.s.name, i, ms,
                  flop / ms / 1e9, base / ms);
      if (ms < best * 0.995f) {
        best = ms;
        g.best = static_cast<int>(i);
      }
    }
    std::printf("| %s | **best: %s%d** | %.3f | %.0f | %.3f |\n", g.s.name,
                g.best < 0 ? "default" : "lt #", g.best, best, flop / best / 1e9, base / best);
  }
  // The pass: layers x (qkv, o, gate_up, down), default vs tuned, alternated.
  auto pass = [&](bool tuned) {
    for (int l = 0; l < layers; ++l) {
      for (const Gemm& g : gemms) {
        if (tuned && g.best >= 0) {
          run_lt(lt, g, g.best, ws, nullptr);
        } else {
          run_default(h, g);
        }
      }
    }
  };
  std::printf("\n| round | default pass ms | tuned pass ms | ratio |\n| --- | --- | --- | --- |\n");
  for (int r = 0; r < 4; ++r) {
    const float d = time_ms([&] { pass(false); }, 1, 3);
    const float tu = time_ms([&] { pass(true); }, 1, 3);
    std::printf("| %d | %.1f | %.1f | %.3f |\n", r, d, tu, d / tu);
  }
  // The merged gate|up GEMM (N = 2F) against the gate and up halves as two GEMMs of N = F writing
  // the same [T, 2F] output (ldc = 2F): cuBLAS picks its kernel per shape.
  const Gemm& gu = gemms[2];
  const int f = gu.s.n / 2;
  auto split_gate_up = [&] {
    const float one = 1.f, zero = 0.f;
    for (int half = 0; half < 2; ++half) {
      const auto* w =
          static_cast<const __nv_bfloat16*>(gu.w) + static_cast<size_t>(half) * f * gu.s.k;
      auto* out = static_cast<__nv_bfloat16*>(gu.out) + static_cast<size_t>(half) * f;
      BENCH_CHECK_STATUS(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, f, t, gu.s.k, &one, w,
                                      CUDA_R_16BF, gu.s.k, gu.x, CUDA_R_16BF, gu.s.k, &zero, out,
                                      CUDA_R_16BF, gu.s.n, CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT));
    }
  };
  const double gu_flop = 2.0 * t * gu.s.n * gu.s.k;
  const float merged_ms = time_ms([&] { run_default(h, gu); }, 5, 30);
  const float split_ms = time_ms(split_gate_up, 5, 30);
  std::printf("\ngate|up alone: merged %.3f ms (%.0f TFLOP/s), two halves %.3f ms (%.0f TFLOP/s)\n",
              merged_ms, gu_flop / merged_ms / 1e9, split_ms, gu_flop / split_ms / 1e9);
  auto pass_split = [&](bool split) {
    for (int l = 0; l < layers; ++l) {
      for (size_t i = 0; i < gemms.size(); ++i) {
        if (split && i == 2) {
          split_gate_up();
        } else {
          run_default(h, gemms[i]);
        }
      }
    }
  };
  std::printf("\n| round | merged gate|up pass ms | split gate|up pass ms | ratio |\n");
  std::printf("| --- | --- | --- | --- |\n");
  for (int r = 0; r < 4; ++r) {
    const float m = time_ms([&] { pass_split(false); }, 1, 3);
    const float sp = time_ms([&] { pass_split(true); }, 1, 3);
    std::printf("| %d | %.1f | %.1f | %.3f |\n", r, m, sp, m / sp);
  }
  return 0;
}
