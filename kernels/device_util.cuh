// SPDX-License-Identifier: Apache-2.0
// Small device helpers shared by the kernels in this directory (and bench/gpu/layer_ops_bench.cu):
// bf16 rounding and packing, 2^x on the special-function unit, shared-memory addresses and
// cp.async copies, and Bf16x8, eight bf16 values moved as one 16-byte vector. Device code only;
// include from .cu files.
#ifndef BLOCKRANK_KERNELS_DEVICE_UTIL_CUH_
#define BLOCKRANK_KERNELS_DEVICE_UTIL_CUH_

#include <cstdint>

#include <cuda_bf16.h>

namespace blockrank {
namespace kernels {

// fp32 rounded to the nearest bf16, as a float.
__device__ __forceinline__ float round_bf16(float v) {
  return __bfloat162float(__float2bfloat16_rn(v));
}

// Two floats rounded to bf16 and packed into one word (lo in the low half, the lower address).
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// The two bf16 of a packed word as floats (lo from the low half), the inverse of pack_bf16x2.
__device__ __forceinline__ float2 unpack_bf16x2(uint32_t w) {
  return make_float2(__uint_as_float(w << 16), __uint_as_float(w & 0xffff0000u));
}

// 2^x on the special-function unit (flush-to-zero; ex2(-inf) = +0).
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// The 32-bit shared-memory address of a generic pointer into shared memory.
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte global -> shared copy that bypasses the registers (sm80+). src_bytes 0 writes 16 zero
// bytes and reads nothing (the source must still be a valid address expression).
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, int src_bytes) {
  cp_async_16(smem_u32(dst), src, src_bytes);
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}

// The storage is a uint4 so that every copy is one ld/st.global.v4: a struct of four
// __nv_bfloat162 is copied member by member, 4 bytes at a time (seen in the PTX), which held the
// norm and SwiGLU kernels' loads in flight to a quarter of the bytes.
struct alignas(16) Bf16x8 {
  uint4 u;
  // Elements 2j and 2j + 1 as floats (exact: a bf16 is the high half of its float).
  __device__ __forceinline__ float2 get(int j) const {
    return unpack_bf16x2(j == 0 ? u.x : j == 1 ? u.y : j == 2 ? u.z : u.w);
  }
  // Elements 2j and 2j + 1 from floats, each rounded to nearest even.
  __device__ __forceinline__ void set(int j, float lo, float hi) {
    const uint32_t w = pack_bf16x2(lo, hi);
    if (j == 0) {
      u.x = w;
    } else if (j == 1) {
      u.y = w;
    } else if (j == 2) {
      u.z = w;
    } else {
      u.w = w;
    }
  }
};

// Packed bf16 arithmetic, each result rounded once to nearest even: one fma.rn.bf16x2 each
// (sm_80+; a * b + (-0), a * 1 + b, b * (-1) + a keep IEEE's signs of zero), and the .rn keeps
// a product and a sum from being contracted into one fma, which would round once where HF rounds
// twice.
__device__ __forceinline__ uint32_t bf16x2_fma(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t d;
  asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}
__device__ __forceinline__ uint32_t bf16x2_mul(uint32_t a, uint32_t b) {
  return bf16x2_fma(a, b, 0x80008000u);
}
__device__ __forceinline__ uint32_t bf16x2_add(uint32_t a, uint32_t b) {
  return bf16x2_fma(a, 0x3f803f80u, b);
}
__device__ __forceinline__ uint32_t bf16x2_sub(uint32_t a, uint32_t b) {
  return bf16x2_fma(b, 0xbf80bf80u, a);
}

// HF's rotate_half RoPE of eight frequencies in bf16: x1 holds elements i .. i + 7 of a head's
// first half, x2 the same of its second half, cs_lo / cs_hi the (cos, sin) words of those eight
// frequencies (rope_table's layout: bf16 cos in the low half). For each element
//   o1 = bf16(bf16(x1 c) - bf16(x2 s)),  o2 = bf16(bf16(x2 c) + bf16(x1 s)),
// the roundings HF's bf16 ops make. Those run in fp32 and round to bf16; the product of two bf16
// is exact in fp32 (outside fp32's subnormals), and so is the sum of two bf16 unless their
// exponents are more than 16 apart, where both give the larger: one packed bf16 op per step gives
// the same bits in a fifth of the instructions (it matters where warps of the attention kernel
// rotate Q beside its MMAs). Shared by layer_ops' RoPE kernel and the attention
// kernel that rotates Q in shared memory, so that both give the same bits.
__device__ __forceinline__ void rope_rotate8(const Bf16x8& x1,
                                             const Bf16x8& x2,
                                             const Bf16x8& cs_lo,
                                             const Bf16x8& cs_hi,
                                             Bf16x8& o1,
                                             Bf16x8& o2) {
  const uint32_t xa[4] = {x1.u.x, x1.u.y, x1.u.z, x1.u.w};
  const uint32_t xb[4] = {x2.u.x, x2.u.y, x2.u.z, x2.u.w};
  const uint32_t k[8] = {cs_lo.u.x, cs_lo.u.y, cs_lo.u.z, cs_lo.u.w,
                         cs_hi.u.x, cs_hi.u.y, cs_hi.u.z, cs_hi.u.w};
  uint32_t r1[4], r2[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    // frequencies 2j and 2j + 1: (cos, cos) from the words' low halves, (sin, sin) the high
    const uint32_t c = __byte_perm(k[2 * j], k[2 * j + 1], 0x5410);
    const uint32_t s = __byte_perm(k[2 * j], k[2 * j + 1], 0x7632);
    r1[j] = bf16x2_sub(bf16x2_mul(xa[j], c), bf16x2_mul(xb[j], s));
    r2[j] = bf16x2_add(bf16x2_mul(xb[j], c), bf16x2_mul(xa[j], s));
  }
  o1.u = make_uint4(r1[0], r1[1], r1[2], r1[3]);
  o2.u = make_uint4(r2[0], r2[1], r2[2], r2[3]);
}

}  // namespace kernels
}  // namespace blockrank

#endif  // BLOCKRANK_KERNELS_DEVICE_UTIL_CUH_
