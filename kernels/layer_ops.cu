// SPDX-License-Identifier: Apache-2.0
// Fused decoder-layer elementwise ops; see layer_ops.cuh. All three are bandwidth-bound: 16-byte
// (8 x bf16, Bf16x8) loads and stores, except RoPE's 4-byte kernel (no (cos, sin) table given,
// or a head_dim / alignment the vectors do not fit). The norm keeps a row's loads in flight
// together (the row in registers): one CTA per row for 2,048-8,192 columns (8 warp partials
// through shared memory), else one warp per row; SwiGLU uses 32-bit indices and fast exp/divide.
#include <cmath>

#include <cuda_bf16.h>

#include "kernels/device_util.cuh"
#include "kernels/layer_ops.cuh"

namespace blockrank {
namespace kernels {
namespace {

constexpr int kNormWarps = 4;  // rows per CTA
constexpr int kThreads = 256;

// Rows of at most kNormRegVecs * 32 vectors (4,096 columns) stay in registers: every lane issues
// all of its loads before using any (16 loads of 16 bytes in flight per lane), and x is read once.
constexpr int kNormRegVecs = 16;

// HF adds the residual in bf16: one rounding of the fp32 sum.
__device__ __forceinline__ Bf16x8 add_rounded(Bf16x8 a, const Bf16x8& b) {
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 fa = a.get(j), fb = b.get(j);
    a.set(j, fa.x + fb.x, fa.y + fb.y);
  }
  return a;
}
__device__ __forceinline__ float square_sum(const Bf16x8& a, float ss) {
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 f = a.get(j);
    ss = fmaf(f.x, f.x, ss);
    ss = fmaf(f.y, f.y, ss);
  }
  return ss;
}
// bf16(x * inv) first (HF casts the normalised fp32 back), then the bf16 weight product.
__device__ __forceinline__ Bf16x8 normalised(const Bf16x8& a, const Bf16x8& wv, float inv) {
  Bf16x8 o;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 f = a.get(j), fw = wv.get(j);
    o.set(j, fw.x * round_bf16(f.x * inv), fw.y * round_bf16(f.y * inv));
  }
  return o;
}

// One warp per row. Forms the (bf16-rounded) residual sum, writes it back, accumulates the sum of
// squares in fp32, then normalises. kInRegisters: the row is held in registers between the two
// steps; otherwise the second step re-reads it (the same lanes wrote it: L1/L2 hits).
template <bool kInRegisters>
__global__ void __launch_bounds__(kNormWarps * 32) blockrank_rms_norm(RmsNormParams p) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kNormWarps + warp;
  if (row >= p.rows) {
    return;
  }
  auto* x = static_cast<__nv_bfloat16*>(p.x) + row * p.x_row_stride;
  const auto* r = p.residual != nullptr
                      ? static_cast<const __nv_bfloat16*>(p.residual) + row * p.residual_row_stride
                      : nullptr;
  const int vecs = p.cols / 8;
  const auto* w = reinterpret_cast<const Bf16x8*>(p.weight);
  auto* out =
      reinterpret_cast<Bf16x8*>(static_cast<__nv_bfloat16*>(p.out) + row * p.out_row_stride);
  auto normalise = [&](const Bf16x8& a, int v, float inv) { out[v] = normalised(a, w[v], inv); };
  float ss = 0.f;
  if constexpr (kInRegisters) {
    Bf16x8 a[kNormRegVecs], b[kNormRegVecs];
#pragma unroll
    for (int i = 0; i < kNormRegVecs; ++i) {
      const int v = lane + i * 32;
      if (v < vecs) {
        a[i] = reinterpret_cast<const Bf16x8*>(x)[v];
        if (r != nullptr) {
          b[i] = reinterpret_cast<const Bf16x8*>(r)[v];
        }
      }
    }
#pragma unroll
    for (int i = 0; i < kNormRegVecs; ++i) {
      const int v = lane + i * 32;
      if (v < vecs) {
        if (r != nullptr) {
          a[i] = add_rounded(a[i], b[i]);
          reinterpret_cast<Bf16x8*>(x)[v] = a[i];
        }
        ss = square_sum(a[i], ss);
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o /= 2) {
      ss += __shfl_xor_sync(0xffffffffu, ss, o);
    }
    const float inv = rsqrtf(ss / static_cast<float>(p.cols) + p.eps);
    if (p.rstd != nullptr && lane == 0) {
      p.rstd[row] = inv;
    }
    if (p.out == nullptr) {
      return;
    }
#pragma unroll
    for (int i = 0; i < kNormRegVecs; ++i) {
      const int v = lane + i * 32;
      if (v < vecs) {
        normalise(a[i], v, inv);
      }
    }
  } else {
    for (int v = lane; v < vecs; v += 32) {
      Bf16x8 a = reinterpret_cast<const Bf16x8*>(x)[v];
      if (r != nullptr) {
        a = add_rounded(a, reinterpret_cast<const Bf16x8*>(r)[v]);
        reinterpret_cast<Bf16x8*>(x)[v] = a;
      }
      ss = square_sum(a, ss);
    }
#pragma unroll
    for (int o = 16; o > 0; o /= 2) {
      ss += __shfl_xor_sync(0xffffffffu, ss, o);
    }
    const float inv = rsqrtf(ss / static_cast<float>(p.cols) + p.eps);
    if (p.rstd != nullptr && lane == 0) {
      p.rstd[row] = inv;
    }
    if (p.out == nullptr) {
      return;
    }
    for (int v = lane; v < vecs; v += 32) {
      normalise(reinterpret_cast<const Bf16x8*>(x)[v], v, inv);
    }
  }
}

// One CTA of kRowThreads threads per row, kPer 8-element vectors per thread (cols = 8 * kPer *
// kRowThreads): each row's 8 KB (Mistral) is spread over 8 warps instead of one, so more rows are
// in flight per SM. Warp sums, then the 8 partials added in one fixed order by every thread.
// Measured at [12,896, 4,096] on the H200 (bench/gpu/layer_ops_bench.cu): 64.2 us against 71.8
// for the warp-per-row kernel.
constexpr int kRowThreads = 256;

template <int kPer>
__global__ void __launch_bounds__(kRowThreads) blockrank_rms_norm_cta(RmsNormParams p) {
  __shared__ float partial[kRowThreads / 32];
  const int64_t row = blockIdx.x;
  auto* x = reinterpret_cast<Bf16x8*>(static_cast<__nv_bfloat16*>(p.x) + row * p.x_row_stride);
  const auto* r =
      p.residual != nullptr
          ? reinterpret_cast<const Bf16x8*>(static_cast<const __nv_bfloat16*>(p.residual) +
                                            row * p.residual_row_stride)
          : nullptr;
  Bf16x8 a[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    a[i] = x[threadIdx.x + i * kRowThreads];
  }
  if (r != nullptr) {
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      a[i] = add_rounded(a[i], r[threadIdx.x + i * kRowThreads]);
      x[threadIdx.x + i * kRowThreads] = a[i];
    }
  }
  float ss = 0.f;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    ss = square_sum(a[i], ss);
  }
#pragma unroll
  for (int o = 16; o > 0; o /= 2) {
    ss += __shfl_xor_sync(0xffffffffu, ss, o);
  }
  if (threadIdx.x % 32 == 0) {
    partial[threadIdx.x / 32] = ss;
  }
  __syncthreads();
  ss = 0.f;
#pragma unroll
  for (int i = 0; i < kRowThreads / 32; ++i) {
    ss += partial[i];
  }
  const float inv = rsqrtf(ss / static_cast<float>(p.cols) + p.eps);
  if (p.rstd != nullptr && threadIdx.x == 0) {
    p.rstd[row] = inv;
  }
  if (p.out == nullptr) {
    return;
  }
  const auto* w = reinterpret_cast<const Bf16x8*>(p.weight);
  auto* out =
      reinterpret_cast<Bf16x8*>(static_cast<__nv_bfloat16*>(p.out) + row * p.out_row_stride);
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int v = threadIdx.x + i * kRowThreads;
    out[v] = normalised(a[i], w[v], inv);
  }
}

// One 8-element vector of one row per thread and step. Index arithmetic in 32 bits when the
// vectors fit (it is most of the non-memory work), fast exp and divide: silu(g) in fp32 is rounded
// to bf16 right after, which hides their last-bit differences from expf and '/'.
template <typename Index>
__global__ void __launch_bounds__(kThreads) blockrank_silu_mul(SiluMulParams p) {
  const Index vecs = p.cols / 8;
  const Index total = static_cast<Index>(p.rows) * vecs;
  const auto* __restrict__ gate_up = static_cast<const __nv_bfloat16*>(p.gate_up);
  auto* __restrict__ out = static_cast<__nv_bfloat16*>(p.out);
  for (Index i = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<Index>(gridDim.x) * blockDim.x) {
    const Index row = i / vecs;
    const Index v = i - row * vecs;
    const auto* gu = gate_up + static_cast<int64_t>(row) * p.gate_up_row_stride;
    const Bf16x8 g = reinterpret_cast<const Bf16x8*>(gu)[v];
    const Bf16x8 u = reinterpret_cast<const Bf16x8*>(gu + p.cols)[v];
    Bf16x8 o;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float2 fg = g.get(j), fu = u.get(j);
      // silu(g) = g / (1 + e^-g) in fp32, rounded to bf16 (ATen's silu output), then the product.
      const float sx = round_bf16(__fdividef(fg.x, 1.f + __expf(-fg.x)));
      const float sy = round_bf16(__fdividef(fg.y, 1.f + __expf(-fg.y)));
      o.set(j, sx * fu.x, sy * fu.y);
    }
    reinterpret_cast<Bf16x8*>(out + static_cast<int64_t>(row) * p.out_row_stride)[v] = o;
  }
}

// One thread per (row, pair of frequencies): the angles are computed once and reused for every head
// of the row. HF: out = x * cos + rotate_half(x) * sin in bf16, i.e. for i < D/2
//   out_i = bf16(bf16(x_i c_i) - bf16(x_{i+D/2} s_i)),  out_{i+D/2} = bf16(bf16(x_{i+D/2} c_i) +
//   bf16(x_i s_i)), with c, s the bf16-rounded fp32 cos/sin of position * inv_freq.
static __global__ void __launch_bounds__(kThreads) blockrank_rope(RopeParams p) {
  const int half = p.head_dim / 2, pairs = half / 2;
  const int64_t total = static_cast<int64_t>(p.rows) * pairs;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / pairs;
    const int f = static_cast<int>(i % pairs) * 2;
    const float pos = static_cast<float>(p.positions[row]);
    float c[2], s[2];
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const float angle = pos * p.inv_freq[f + j];  // fp32 product, one rounding (as HF)
      c[j] = round_bf16(cosf(angle));
      s[j] = round_bf16(sinf(angle));
    }
    auto* base = static_cast<__nv_bfloat16*>(p.x) + row * p.row_stride + f;
    for (int h = 0; h < p.heads; ++h) {
      auto* x1p = reinterpret_cast<__nv_bfloat162*>(base + h * p.head_stride);
      auto* x2p = reinterpret_cast<__nv_bfloat162*>(base + h * p.head_stride + half);
      const float2 x1 = __bfloat1622float2(*x1p), x2 = __bfloat1622float2(*x2p);
      *x1p = __floats2bfloat162_rn(round_bf16(x1.x * c[0]) - round_bf16(x2.x * s[0]),
                                   round_bf16(x1.y * c[1]) - round_bf16(x2.y * s[1]));
      *x2p = __floats2bfloat162_rn(round_bf16(x2.x * c[0]) + round_bf16(x1.x * s[0]),
                                   round_bf16(x2.y * c[1]) + round_bf16(x1.y * s[1]));
    }
  }
}

// The same rotation with 16-byte vectors from the pass's (cos, sin) table (rope_table: bit for bit
// the values blockrank_rope computes): one thread per (row, head, 8 frequencies), full grid. On
// the H200 at [12,896, 40 x 128] (bench/gpu/layer_ops_bench.cu): 68.6 us against 80.8 for
// blockrank_rope, whose 4-byte accesses keep fewer bytes in flight; computing the 8 angles per
// thread instead of reading them costs more than it saves (90-115 us for 2-40 heads per thread).
// The table (rows x D/2 words, 3.3 MB at Mistral N = 100) is re-read for every head from L2.
template <int kD>
static __global__ void __launch_bounds__(kThreads) blockrank_rope_vec(RopeParams p) {
  constexpr int kHalf = kD / 2, kChunks = kHalf / 8;
  const int64_t total = static_cast<int64_t>(p.rows) * p.heads * kChunks;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) {
    return;
  }
  const int ch = static_cast<int>(i % kChunks);
  const int64_t rh = i / kChunks;
  const int h = static_cast<int>(rh % p.heads);
  const int64_t row = rh / p.heads;
  auto* base = static_cast<__nv_bfloat16*>(p.x) + row * p.row_stride + h * p.head_stride + ch * 8;
  const Bf16x8 x1 = *reinterpret_cast<const Bf16x8*>(base);
  const Bf16x8 x2 = *reinterpret_cast<const Bf16x8*>(base + kHalf);
  // Words ch*8 .. ch*8+7 of the row: (cos, sin) of frequencies 8 ch ..; two Bf16x8 of 4 words.
  const auto* cs = static_cast<const Bf16x8*>(p.cos_sin) + (row * kHalf + ch * 8) / 4;
  Bf16x8 o1, o2;
  rope_rotate8(x1, x2, cs[0], cs[1], o1, o2);
  *reinterpret_cast<Bf16x8*>(base) = o1;
  *reinterpret_cast<Bf16x8*>(base + kHalf) = o2;
}

static __global__ void __launch_bounds__(kThreads) blockrank_rope_table(RopeTableParams p) {
  const int half = p.head_dim / 2;
  const int64_t total = static_cast<int64_t>(p.rows) * half;
  auto* out = static_cast<__nv_bfloat162*>(p.out);
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float pos = static_cast<float>(p.positions[i / half]);
    const float angle = pos * p.inv_freq[i % half];  // as blockrank_rope
    out[i] = __floats2bfloat162_rn(cosf(angle), sinf(angle));
  }
}

unsigned grid_for(int64_t work) {
  // Grid-stride loops: enough CTAs to fill 132 SMs several times over, never more than the work.
  const int64_t ctas = (work + kThreads - 1) / kThreads;
  return static_cast<unsigned>(ctas < 132 * 16 ? (ctas > 0 ? ctas : 1) : 132 * 16);
}

}  // namespace

cudaError_t rms_norm(const RmsNormParams& p, cudaStream_t stream) {
  if (p.cols <= 0 || p.cols % 8 != 0 || p.rows < 0 || p.x_row_stride % 8 != 0 ||
      (p.out != nullptr && p.out_row_stride % 8 != 0) ||
      (p.residual != nullptr && p.residual_row_stride % 8 != 0) ||
      (p.out == nullptr && p.rstd == nullptr)) {
    return cudaErrorInvalidValue;
  }
  if (p.rows == 0) {
    return cudaSuccess;
  }
  const int per = p.cols / (8 * kRowThreads);
  if (p.cols % (8 * kRowThreads) == 0 && per >= 1 && per <= 4) {  // 2,048 ... 8,192 columns
    const unsigned rows = static_cast<unsigned>(p.rows);
    if (per == 1) {
      blockrank_rms_norm_cta<1><<<rows, kRowThreads, 0, stream>>>(p);
    } else if (per == 2) {
      blockrank_rms_norm_cta<2><<<rows, kRowThreads, 0, stream>>>(p);
    } else if (per == 3) {
      blockrank_rms_norm_cta<3><<<rows, kRowThreads, 0, stream>>>(p);
    } else {
      blockrank_rms_norm_cta<4><<<rows, kRowThreads, 0, stream>>>(p);
    }
    return cudaGetLastError();
  }
  const unsigned ctas = static_cast<unsigned>((p.rows + kNormWarps - 1) / kNormWarps);
  if (p.cols <= kNormRegVecs * 32 * 8) {
    blockrank_rms_norm<true><<<ctas, kNormWarps * 32, 0, stream>>>(p);
  } else {
    blockrank_rms_norm<false><<<ctas, kNormWarps * 32, 0, stream>>>(p);
  }
  return cudaGetLastError();
}

cudaError_t silu_mul(const SiluMulParams& p, cudaStream_t stream) {
  if (p.cols <= 0 || p.cols % 8 != 0 || p.rows < 0 || p.gate_up_row_stride % 8 != 0 ||
      p.out_row_stride % 8 != 0) {
    return cudaErrorInvalidValue;
  }
  if (p.rows == 0) {
    return cudaSuccess;
  }
  const int64_t vecs = static_cast<int64_t>(p.rows) * (p.cols / 8);
  // 32-bit indices while i + gridDim.x * blockDim.x cannot overflow.
  if (vecs + int64_t{132} * 16 * kThreads < (int64_t{1} << 31)) {
    blockrank_silu_mul<int32_t><<<grid_for(vecs), kThreads, 0, stream>>>(p);
  } else {
    blockrank_silu_mul<int64_t><<<grid_for(vecs), kThreads, 0, stream>>>(p);
  }
  return cudaGetLastError();
}

cudaError_t rope(const RopeParams& p, cudaStream_t stream) {
  if (p.head_dim <= 0 || p.head_dim % 4 != 0 || p.rows < 0 || p.heads < 0 ||
      p.row_stride % 2 != 0 || p.head_stride % 2 != 0) {
    return cudaErrorInvalidValue;
  }
  if (p.rows == 0 || p.heads == 0) {
    return cudaSuccess;
  }
  const bool vec = p.cos_sin != nullptr && (p.head_dim == 64 || p.head_dim == 128) &&
                   p.row_stride % 8 == 0 && p.head_stride % 8 == 0 &&
                   reinterpret_cast<uintptr_t>(p.x) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(p.cos_sin) % 16 == 0;
  if (!vec) {
    blockrank_rope<<<grid_for(static_cast<int64_t>(p.rows) * (p.head_dim / 4)), kThreads, 0,
                     stream>>>(p);
    return cudaGetLastError();
  }
  const int64_t ctas =
      (static_cast<int64_t>(p.rows) * p.heads * (p.head_dim / 16) + kThreads - 1) / kThreads;
  if (ctas >= (int64_t{1} << 31)) {
    return cudaErrorInvalidValue;
  }
  if (p.head_dim == 64) {
    blockrank_rope_vec<64><<<static_cast<unsigned>(ctas), kThreads, 0, stream>>>(p);
  } else {
    blockrank_rope_vec<128><<<static_cast<unsigned>(ctas), kThreads, 0, stream>>>(p);
  }
  return cudaGetLastError();
}

cudaError_t rope_table(const RopeTableParams& p, cudaStream_t stream) {
  if (p.head_dim <= 0 || p.head_dim % 2 != 0 || p.rows < 0) {
    return cudaErrorInvalidValue;
  }
  if (p.rows == 0) {
    return cudaSuccess;
  }
  blockrank_rope_table<<<grid_for(static_cast<int64_t>(p.rows) * (p.head_dim / 2)), kThreads, 0,
                         stream>>>(p);
  return cudaGetLastError();
}

}  // namespace kernels
}  // namespace blockrank
