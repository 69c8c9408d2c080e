// SPDX-License-Identifier: Apache-2.0
// Device helpers shared by the Hopper (sm_90a) kernels: the wgmma fence /
// commit / wait, and the shared-memory matrix descriptors of 128-byte-swizzled operands. Include
// only from .cu files built for sm_90a (kernels/CMakeLists.txt's blockrank_kernels_sm90a).
#ifndef BLOCKRANK_KERNELS_SM90_COMMON_CUH_
#define BLOCKRANK_KERNELS_SM90_COMMON_CUH_

#include <cstdint>

#include <cuda.h>

#include "kernels/device_util.cuh"

namespace blockrank {
namespace kernels {
namespace sm90 {

using kernels::smem_u32;  // (device_util.cuh)

// The first 1,024-byte boundary in dynamic shared memory (the 128-byte swizzle's atom; the
// launch asks for 1 KB more than it uses).
__device__ __forceinline__ uint8_t* smem_align_1024(uint8_t* raw) {
  return reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(raw) + 1023) & ~uintptr_t{1023});
}

// Operand in shared memory with the 128-byte swizzle (16-byte chunk c of 128-byte row r at chunk
// c ^ (r % 8), rows 128 bytes apart, 1,024-byte aligned 8-row groups). K-major (the reduction
// dimension contiguous, as TMA writes a [rows, 64] box): 8-row groups 1,024 bytes apart (SBO), LBO
// unused (1), layout type 1 (128B swizzle) in bits 62-63.
__device__ __forceinline__ uint64_t smem_desc(const void* p) {
  const uint64_t a = smem_u32(p);
  return ((a & 0x3FFFF) >> 4) | (uint64_t{1} << 16) | (uint64_t{1024 >> 4} << 32) |
         (uint64_t{1} << 62);
}

// MN-major (the output dimension contiguous: 64 elements per 128-byte row, one row per reduction
// index) with the 128-byte swizzle, for wgmma's transposed B (CUTLASS's canonical
// ((8,8,m),(8,k)) : ((1,8,LBO),(64,SBO)) in 16-byte units): 8-row groups `sbo` bytes apart along
// the reduction dimension, 64-element column panels `lbo` bytes apart.
__device__ __forceinline__ uint64_t smem_desc_mn(const void* p, uint32_t lbo, uint32_t sbo) {
  const uint64_t a = smem_u32(p);
  return ((a & 0x3FFFF) >> 4) | (uint64_t{(lbo >> 4) & 0x3FFF} << 16) |
         (uint64_t{(sbo >> 4) & 0x3FFF} << 32) | (uint64_t{1} << 62);
}

// mbarrier (shared::cta) helpers: init with an arrival count, arrive with expected TMA bytes,
// plain arrive, and the wait for the phase of the given parity to complete; and a 2-D TMA tile
// load signalling its bytes on an mbarrier.
__device__ __forceinline__ void mbar_init(uint64_t* bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(bar)), "r"(count));
}
__device__ __forceinline__ void mbar_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(bar)),
               "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_u32(bar)) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  uint32_t done = 0;
  while (!done) {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(smem_u32(bar)), "r"(parity)
        : "memory");
  }
}
__device__ __forceinline__ void tma_load(
    void* dst, const CUtensorMap* map, int c0, int c1, uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3}], [%4];" ::"r"(smem_u32(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(smem_u32(bar))
      : "memory");
}
// Host: a 2-D TMA map over a bf16 matrix of `rows` rows of `cols` elements, `row_stride` elements
// apart, in boxes of `box_rows` rows x 64 columns with the 128-byte swizzle the descriptors above
// describe (16-byte chunk c of a box's row r at r * 128 + ((c ^ (r % 8)) << 4)).
inline bool encode_bf16_map(CUtensorMap* map,
                            const void* ptr,
                            uint64_t rows,
                            uint64_t cols,
                            uint64_t row_stride,
                            uint32_t box_rows) {
  const cuuint64_t dims[2] = {cols, rows};
  const cuuint64_t strides[1] = {row_stride * 2};
  const cuuint32_t box[2] = {64, box_rows};
  const cuuint32_t elem[2] = {1, 1};
  return cuTensorMapEncodeTiled(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void*>(ptr),
                                dims, strides, box, elem, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// Keeps a register's value where it is across the asynchronous wgmma (CUTLASS's
// warpgroup_fence_operand): the compiler may neither move it nor reuse its register early.
__device__ __forceinline__ void fence_operand(float& r) {
  asm volatile("" : "+f"(r)::"memory");
}
__device__ __forceinline__ void fence_operand(uint32_t& r) {
  asm volatile("" : "+r"(r)::"memory");
}

__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}

}  // namespace sm90
}  // namespace kernels
}  // namespace blockrank

#endif  // BLOCKRANK_KERNELS_SM90_COMMON_CUH_
