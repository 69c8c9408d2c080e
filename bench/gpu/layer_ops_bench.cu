// SPDX-License-Identifier: Apache-2.0
// RMSNorm and RoPE variants against the product kernels (kernels/layer_ops.cu) at the Mistral-7B
// N = 100 shape ([12,896, 4,096] norm rows; [12,896, 40 heads x 128] RoPE), plus a plain copy of
// the same bytes as the bandwidth reference (all 16-byte accesses, Bf16x8). Every norm variant's
// output is compared bitwise with the product kernel's (the warp-per-row norms add the squares in
// another order than the product's one CTA per row, so a last-bit difference there is expected);
// RoPE's two kernels (angles computed, 4-byte accesses; angles read from the pass's table, 16-byte
// accesses) are compared with each other. Build and run on the GPU machine:
//   nvcc -O3 -std=c++17 -arch=sm_90 -I. bench/gpu/layer_ops_bench.cu kernels/layer_ops.cu \
//     -o /tmp/layer_ops_bench && /tmp/layer_ops_bench
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "bench/gpu/cuda_bench_util.cuh"
#include "kernels/device_util.cuh"
#include "kernels/layer_ops.cuh"

namespace {

using blockrank::bench::fill_random_bf16;
using blockrank::bench::time_ms;

using V8 = blockrank::kernels::Bf16x8;  // 16-byte loads and stores

// Copy of rows*cols bf16 (the norm's bytes without the math).
__global__ void copy_kernel(const V8* __restrict__ in, V8* __restrict__ out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = in[i];
  }
}

// Warp per row, no residual, row in registers; kWarps rows per CTA; kVecs vectors per lane.
template <int kWarps, int kVecs>
__global__ void __launch_bounds__(kWarps * 32) norm_warp(const __nv_bfloat16* __restrict__ x,
                                                         const __nv_bfloat16* __restrict__ w,
                                                         __nv_bfloat16* __restrict__ out,
                                                         int rows,
                                                         int cols,
                                                         float eps) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  if (row >= rows) {
    return;
  }
  const V8* xr = reinterpret_cast<const V8*>(x + row * cols);
  V8 a[kVecs];
#pragma unroll
  for (int i = 0; i < kVecs; ++i) {
    a[i] = xr[lane + i * 32];
  }
  float ss = 0.f;
#pragma unroll
  for (int i = 0; i < kVecs; ++i) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float2 f = a[i].get(j);
      ss = fmaf(f.x, f.x, ss);
      ss = fmaf(f.y, f.y, ss);
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o /= 2) {
    ss += __shfl_xor_sync(0xffffffffu, ss, o);
  }
  const float inv = rsqrtf(ss / static_cast<float>(cols) + eps);
  V8* orow = reinterpret_cast<V8*>(out + row * cols);
#pragma unroll
  for (int i = 0; i < kVecs; ++i) {
    const V8 wv = reinterpret_cast<const V8*>(w)[lane + i * 32];
    V8 o;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float2 f = a[i].get(j), fw = wv.get(j);
      o.set(j, fw.x * blockrank::kernels::round_bf16(f.x * inv),
            fw.y * blockrank::kernels::round_bf16(f.y * inv));
    }
    orow[lane + i * 32] = o;
  }
}

bool same(const __nv_bfloat16* a, const __nv_bfloat16* b, size_t n) {
  std::vector<uint16_t> ha(n), hb(n);
  BENCH_CHECK_CUDA(cudaMemcpy(ha.data(), a, n * 2, cudaMemcpyDeviceToHost));
  BENCH_CHECK_CUDA(cudaMemcpy(hb.data(), b, n * 2, cudaMemcpyDeviceToHost));
  return std::memcmp(ha.data(), hb.data(), n * 2) == 0;
}

}  // namespace

int main() {
  const int rows = 12896, cols = 4096, reps = 50;
  const float eps = 1e-5f;
  const size_t n = size_t{rows} * cols;
  __nv_bfloat16 *x, *w, *out, *ref;
  BENCH_CHECK_CUDA(cudaMalloc(&x, n * 2));
  BENCH_CHECK_CUDA(cudaMalloc(&out, n * 2));
  BENCH_CHECK_CUDA(cudaMalloc(&ref, n * 2));
  BENCH_CHECK_CUDA(cudaMalloc(&w, cols * 2));
  fill_random_bf16<<<1024, 256>>>(x, n, 1, 4.f);
  fill_random_bf16<<<4, 256>>>(w, cols, 2, 2.f);
  const double gb = 2.0 * n * 2 / 1e9;  // read x + write out
  std::printf("RMSNorm [%d, %d] bf16, %d reps each (GB/s counts x read + out written)\n", rows,
              cols, reps);
  std::printf("| variant | us | GB/s | bitwise = product |\n| --- | --- | --- | --- |\n");
  auto row = [&](const char* name, float ms, bool ok) {
    std::printf("| %s | %.1f | %.0f | %s |\n", name, ms * 1e3, gb / (ms * 1e-3), ok ? "yes" : "NO");
  };
  blockrank::kernels::RmsNormParams p{};
  p.x = x;
  p.weight = w;
  p.out = ref;
  p.x_row_stride = p.out_row_stride = cols;
  p.rows = rows;
  p.cols = cols;
  p.eps = eps;
  const cudaStream_t s0 = nullptr;
  auto prod = [&] { BENCH_CHECK_CUDA(blockrank::kernels::rms_norm(p, s0)); };
  const int vecs = static_cast<int>(n / 8);
  auto copy = [&] {
    copy_kernel<<<132 * 16, 256>>>(reinterpret_cast<const V8*>(x), reinterpret_cast<V8*>(out),
                                   vecs);
  };
  auto w4 = [&] { norm_warp<4, 16><<<(rows + 3) / 4, 128>>>(x, w, out, rows, cols, eps); };
  auto w8 = [&] { norm_warp<8, 16><<<(rows + 7) / 8, 256>>>(x, w, out, rows, cols, eps); };
  auto w2 = [&] { norm_warp<2, 16><<<(rows + 1) / 2, 64>>>(x, w, out, rows, cols, eps); };
  for (int round = 0; round < 2; ++round) {
    row("product (one CTA of 256 threads per row)", time_ms(prod, 5, reps), true);
    row("copy (bandwidth reference)", time_ms(copy, 5, reps), true);
    float t;
    t = time_ms(w4, 5, reps);
    row("warp/row no-residual, 4 rows/CTA", t, same(out, ref, n));
    t = time_ms(w8, 5, reps);
    row("warp/row no-residual, 8 rows/CTA", t, same(out, ref, n));
    t = time_ms(w2, 5, reps);
    row("warp/row no-residual, 2 rows/CTA", t, same(out, ref, n));
  }

  // RoPE over Q|K of a [rows, 6144] QKV buffer: 40 heads of 128.
  const int heads = 40, d = 128, stride = 6144;
  const size_t qn = size_t{rows} * stride;
  __nv_bfloat16 *qkv, *qkv2;
  int64_t* pos;
  float* inv;
  __nv_bfloat162* cs;
  BENCH_CHECK_CUDA(cudaMalloc(&qkv, qn * 2));
  BENCH_CHECK_CUDA(cudaMalloc(&qkv2, qn * 2));
  BENCH_CHECK_CUDA(cudaMalloc(&pos, rows * 8));
  BENCH_CHECK_CUDA(cudaMalloc(&inv, d / 2 * 4));
  BENCH_CHECK_CUDA(cudaMalloc(&cs, size_t{rows} * d / 2 * 4));
  std::vector<int64_t> hp(rows);
  for (int r = 0; r < rows; ++r) {
    hp[r] = r < 64 ? r : 64 + (r - 64) % 128;  // BlockRank-like positions
  }
  std::vector<float> hi(d / 2);
  for (int f = 0; f < d / 2; ++f) {
    hi[f] = static_cast<float>(1.0 / std::pow(1e6, 2.0 * f / d));
  }
  BENCH_CHECK_CUDA(cudaMemcpy(pos, hp.data(), rows * 8, cudaMemcpyHostToDevice));
  BENCH_CHECK_CUDA(cudaMemcpy(inv, hi.data(), d / 2 * 4, cudaMemcpyHostToDevice));
  fill_random_bf16<<<1024, 256>>>(qkv, qn, 3, 4.f);
  BENCH_CHECK_CUDA(cudaMemcpy(qkv2, qkv, qn * 2, cudaMemcpyDeviceToDevice));
  blockrank::kernels::RopeParams rp{};
  rp.row_stride = stride;
  rp.head_stride = d;
  rp.positions = pos;
  rp.inv_freq = inv;
  rp.rows = rows;
  rp.heads = heads;
  rp.head_dim = d;
  // The table once (as the pass builds it), then the two kernels on equal inputs.
  blockrank::kernels::RopeTableParams tp{};
  tp.positions = pos;
  tp.inv_freq = inv;
  tp.out = cs;
  tp.rows = rows;
  tp.head_dim = d;
  BENCH_CHECK_CUDA(blockrank::kernels::rope_table(tp, s0));
  rp.x = qkv;
  rp.cos_sin = nullptr;
  BENCH_CHECK_CUDA(blockrank::kernels::rope(rp, s0));
  rp.x = qkv2;
  rp.cos_sin = cs;
  BENCH_CHECK_CUDA(blockrank::kernels::rope(rp, s0));
  BENCH_CHECK_CUDA(cudaDeviceSynchronize());
  const bool rope_ok = same(qkv, qkv2, qn);
  const double rgb = 2.0 * rows * heads * d * 2 / 1e9;
  std::printf("\nRoPE [%d, %d heads x %d] in place (GB/s counts Q|K read + written)\n", rows, heads,
              d);
  std::printf("| variant | us | GB/s | bitwise = 4-byte kernel |\n| --- | --- | --- | --- |\n");
  auto rope = [&] { BENCH_CHECK_CUDA(blockrank::kernels::rope(rp, s0)); };
  auto table = [&] { BENCH_CHECK_CUDA(blockrank::kernels::rope_table(tp, s0)); };
  for (int round = 0; round < 2; ++round) {
    rp.cos_sin = nullptr;
    float t = time_ms(rope, 3, reps);
    std::printf(
        "| 4-byte kernel, angles computed (thread per row x 2 freqs) | %.1f | %.0f | ref |\n",
        t * 1e3, rgb / (t * 1e-3));
    rp.cos_sin = cs;
    t = time_ms(rope, 3, reps);
    std::printf("| 16-byte kernel reading the table (the pass) | %.1f | %.0f | %s |\n", t * 1e3,
                rgb / (t * 1e-3), rope_ok ? "yes" : "NO");
    t = time_ms(table, 3, reps);
    std::printf("| (table build, once per pass) | %.1f | | |\n", t * 1e3);
  }
  return 0;
}
