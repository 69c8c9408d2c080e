// SPDX-License-Identifier: Apache-2.0
// Bf16x8: eight bf16 values moved as one 16-byte vector, for the bandwidth-bound kernels
// (kernels/layer_ops.cu) and their benchmark (bench/gpu/layer_ops_bench.cu).
#pragma once

#include <cstdint>

#include <cuda_bf16.h>

namespace blockrank {
namespace kernels {

// The storage is a uint4 so that every copy is one ld/st.global.v4: a struct of four
// __nv_bfloat162 is copied member by member, 4 bytes at a time (seen in the PTX), which held the
// norm and SwiGLU kernels' loads in flight to a quarter of the bytes.
struct alignas(16) Bf16x8 {
  uint4 u;
  // Elements 2j and 2j + 1 as floats (exact: a bf16 is the high half of its float).
  __device__ __forceinline__ float2 get(int j) const {
    const uint32_t w = j == 0 ? u.x : j == 1 ? u.y : j == 2 ? u.z : u.w;
    return make_float2(__uint_as_float(w << 16), __uint_as_float(w & 0xffff0000u));
  }
  // Elements 2j and 2j + 1 from floats, each rounded to nearest even.
  __device__ __forceinline__ void set(int j, float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo
    const uint32_t w = *reinterpret_cast<const uint32_t*>(&v);
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
