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

}  // namespace kernels
}  // namespace blockrank

#endif  // BLOCKRANK_KERNELS_DEVICE_UTIL_CUH_
