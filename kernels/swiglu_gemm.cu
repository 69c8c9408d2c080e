// SPDX-License-Identifier: Apache-2.0
// Hopper GEMMs with fused epilogues (SwiGLU gate|up; Q|K|V with RoPE); see swiglu_gemm.cuh. Built
// for sm_90a only (kernels/CMakeLists.txt). The bench twin with the other variants (direct stores,
// 2-CTA multicast) is bench/gpu/swiglu_gemm.cu.
#include <cuda.h>
#include <cuda_bf16.h>

#include "kernels/device_util.cuh"
#include "kernels/sm90_common.cuh"
#include "kernels/swiglu_gemm.cuh"

namespace blockrank {
namespace kernels {
namespace {

using sm90::fence_operand;
using sm90::mbar_arrive;
using sm90::mbar_expect_tx;
using sm90::mbar_init;
using sm90::mbar_wait;
using sm90::smem_align_1024;
using sm90::smem_desc;
using sm90::smem_u32;
using sm90::tma_load;
using sm90::wgmma_commit;
using sm90::wgmma_fence;
using sm90::wgmma_wait;

constexpr int kBM = 128, kBN = 256, kBK = 64, kBand = 16;
constexpr int kThreads = 384;  // warpgroup 0: producer; 1-2: consumers (64 rows each)
constexpr int kStageA = kBM * kBK, kStageB = kBN * kBK;  // elements
constexpr uint32_t kStageBytes = (kStageA + kStageB) * 2;

// The two epilogues. kSwiGlu: the 256 B rows of a tile are 128 gate rows and the matching 128 up
// rows, and each consumer writes a 64 x 128 act tile. kRope: the B rows are 256 consecutive output
// columns (two 128-wide heads), written as a 64 x 256 tile, rotated where they are Q or K columns,
// one head at a time through a 64 x 128 staging tile. Both have 4 stages: with 3 (a 64 x 256
// staging tile) the RoPE GEMM ran 28% behind cuBLAS (bench/gpu/NOTES.md, session 14).
enum class Epilogue { kSwiGlu, kRope };
template <Epilogue E>
struct Config {
  static constexpr int kOutCols = E == Epilogue::kSwiGlu ? 128 : 256;
  static constexpr int kStages = 4;
  static constexpr size_t kStaging = size_t{64} * 128 * 2;  // one consumer's 64 x 128 tile
  // Stages, the barriers' 1,024-byte slot, the two staging tiles, 1,024 bytes to align the base.
  static constexpr size_t kSmem = size_t{kStages} * kStageBytes + 2 * 1024 + 2 * kStaging;
  static_assert(kSmem <= 232448, "over the 227 KB of dynamic shared memory per block");
};

__device__ __forceinline__ void tma_store(const CUtensorMap* map, int c0, int c1, const void* src) {
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];" ::"l"(
                   reinterpret_cast<uint64_t>(map)),
               "r"(c0), "r"(c1), "r"(smem_u32(src))
               : "memory");
}
__device__ __forceinline__ void wgmma_m64n256k16(float (&d)[128],
                                                 uint64_t desc_a,
                                                 uint64_t desc_b,
                                                 int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, "
      "%9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, "
      "%27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, "
      "%45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, "
      "%63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, "
      "%81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, "
      "%99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, "
      "%114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, %128, "
      "%129, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]),
        "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
        "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]),
        "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]),
        "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]),
        "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]),
        "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]),
        "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]),
        "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),
        "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]),
        "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]),
        "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]),
        "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
      : "l"(desc_a), "l"(desc_b), "r"(scale_d));
}

// Barrier of the 128 threads of consumer warpgroup c (ids 1 and 2; 0 is __syncthreads).
__device__ __forceinline__ void consumer_sync(int c) {
  if (c == 0) {
    asm volatile("bar.sync 1, 128;" ::: "memory");
  } else {
    asm volatile("bar.sync 2, 128;" ::: "memory");
  }
}

// Tiles walk bands of kBand row tiles: within a band the row tile changes fastest, so a wave of
// CTAs shares a few weight tiles and one band of activations in L2.
__device__ __forceinline__ void tile_coords(int tile, int num_m, int num_n, int* m, int* n) {
  const int band = tile / (kBand * num_n);
  const int first = band * kBand;
  const int rows = min(kBand, num_m - first);
  const int local = tile - band * kBand * num_n;
  *m = first + local % rows;
  *n = local / rows;
}

// A consumer's finished tile, rounded to bf16 (the GEMM output the two-step paths round too), and
// its epilogue in kEpilogueChunks pieces, one after each of the next tile's first k-blocks, so the
// epilogue's math and shared-memory traffic run while the tensor cores work on the next tile (the
// cooperative kernel had them between tiles: gate|up stage of a Mistral N = 100 pass 89.1-89.8 ->
// 85.5-87.9 ms; bench/gpu/NOTES.md, session 14). v[2 j + h] holds fragment j's columns
// 8 j + 2 (lane % 4) + {0, 1} of row lr + 8 h.
//   - kSwiGlu: the gate and up values are held in registers, and each chunk writes silu(g) u of two
//     gate fragments to the staging tile, from the rounded values as cuBLAS + silu_mul computes it.
//   - kRope: registers do not hold both a whole tile and the next one's accumulators (ptxas
//     spills), so head 0 goes straight to the staging tile and only head 1 is held. Chunks 0-3
//     rotate head 0 in place (each thread its own elements: no barrier) and store it; chunks 4-7
//     rotate head 1 from the registers into the staging tile and store it. Bit for bit the RoPE
//     kernel applied to the rounded product.
constexpr int kEpilogueChunks = 8;

template <Epilogue E>
struct Epilogue_ {
  static constexpr bool kSwiGlu = E == Epilogue::kSwiGlu;
  uint32_t v[kSwiGlu ? 64 : 32];  // kRope: head 1's fragments 16-31 at v[2 (j - 16) + h]
  uint2 cs[2][2];  // kRope: (cos, sin) words of the next chunk, [h][ii], loaded a chunk ahead
  float rs[2];     // kSwiGlu: the row scales of rows lr and lr + 8 (1 without row_scale)
  uint8_t* tile_out;
  const CUtensorMap* map_out;
  const uint2* cos_sin;
  int rows, c, tid, lane, lr, m, n;
  bool active, rotate;

  // Fragment j (mod 16) of the 64 x 128 staging tile: columns 8 j + 2 (lane % 4) + {0, 1} of row
  // lr + 8 h, with TMA's 128-byte swizzle (16-byte chunk (j % 8) ^ (row % 8) of the row's 128
  // bytes in 64-column box j / 8; row % 8 == lr % 8): no bank conflicts. 32-bit shared-memory
  // addresses, so the compiler does not keep 64-bit pointers of every fragment live.
  uint32_t row_base[2];  // shared address of row lr + 8 h, column 2 (lane % 4)
  uint32_t swz;          // (lr % 8) * 16
  __device__ __forceinline__ uint32_t at(int j, int h) const {
    return row_base[h] + ((j / 8) % 2) * 8192 + (((j % 8) * 16) ^ swz);
  }
  __device__ __forceinline__ static void st(uint32_t a, uint32_t v) {
    asm volatile("st.shared.b32 [%0], %1;" ::"r"(a), "r"(v) : "memory");
  }
  __device__ __forceinline__ static uint32_t ld(uint32_t a) {
    uint32_t v;
    asm volatile("ld.shared.b32 %0, [%1];" : "=r"(v) : "r"(a) : "memory");
    return v;
  }
  __device__ __forceinline__ void init(uint8_t* staging) {
    tile_out = staging;
    const uint32_t base = smem_u32(staging) + (lane % 4) * 4;
    row_base[0] = base + lr * 128;
    row_base[1] = base + (lr + 8) * 128;
    swz = (lr % 8) * 16;
  }

  // The staging tile is free once the previous TMA store has read it.
  __device__ __forceinline__ void wait_staging() {
    if (tid == 0) {
      asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory");
    }
    consumer_sync(c);
  }

  __device__ __forceinline__ void hold(
      const float (&d)[128], int tm, int tn, int rope_cols, const float (&scale)[2]) {
    m = tm;
    n = tn;
    rs[0] = scale[0];
    rs[1] = scale[1];
    rotate = !kSwiGlu && n * 256 < rope_cols;
    active = true;
    if constexpr (kSwiGlu) {
#pragma unroll
      for (int j = 0; j < 32; ++j) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          v[2 * j + h] = pack_bf16x2(d[j * 4 + 2 * h], d[j * 4 + 2 * h + 1]);
        }
      }
    } else {
      if (rotate) {
        load_cs(0);
      }
      wait_staging();
#pragma unroll
      for (int j = 0; j < 16; ++j) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          st(at(j, h), pack_bf16x2(d[j * 4 + 2 * h], d[j * 4 + 2 * h + 1]));
          v[2 * j + h] = pack_bf16x2(d[(j + 16) * 4 + 2 * h], d[(j + 16) * 4 + 2 * h + 1]);
        }
      }
    }
  }

  // (cos, sin) of frequencies 8 i + 2 (lane % 4) + {0, 1} of global row `row` (0 past the rows).
  __device__ __forceinline__ uint2 cs_at(int row, int i) const {
    return row < rows ? cos_sin[(static_cast<int64_t>(row) * 64 + 8 * i + 2 * (lane % 4)) / 2]
                      : make_uint2(0, 0);
  }

  // The (cos, sin) words chunk ch rotates with: fragments 2 q + ii (q = ch % 4) of rows lr + 8 h.
  __device__ __forceinline__ void load_cs(int ch) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = m * kBM + c * 64 + lr + 8 * h;
#pragma unroll
      for (int ii = 0; ii < 2; ++ii) {
        cs[h][ii] = cs_at(row, 2 * (ch % 4) + ii);
      }
    }
  }

  // The RoPE kernel's rounding points: x1' = bf16(bf16(x1 c) - bf16(x2 s)),
  // x2' = bf16(bf16(x2 c) + bf16(x1 s)), for the two columns of a word (frequencies +0, +1).
  __device__ __forceinline__ static void rotate_pair(uint32_t& p1, uint32_t& p2, uint2 cs) {
    const float2 x1 = unpack_bf16x2(p1), x2 = unpack_bf16x2(p2);
    const float2 f0 = unpack_bf16x2(cs.x), f1 = unpack_bf16x2(cs.y);  // (cos, sin)
    p1 = pack_bf16x2(round_bf16(x1.x * f0.x) - round_bf16(x2.x * f0.y),
                     round_bf16(x1.y * f1.x) - round_bf16(x2.y * f1.y));
    p2 = pack_bf16x2(round_bf16(x2.x * f0.x) + round_bf16(x1.x * f0.y),
                     round_bf16(x2.y * f1.x) + round_bf16(x1.y * f1.y));
  }

  template <int CH>
  __device__ __forceinline__ void chunk_at() {
    if constexpr (kSwiGlu) {
      if constexpr (CH == 0) {
        wait_staging();
      }
      // Gate fragments j < 16, the same columns' up values at j + 16.
#pragma unroll
      for (int jj = 0; jj < 2; ++jj) {
        const int j = 2 * CH + jj;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          float2 gv = unpack_bf16x2(v[2 * j + h]), uv = unpack_bf16x2(v[2 * (j + 16) + h]);
          gv.x *= rs[h];
          gv.y *= rs[h];
          uv.x *= rs[h];
          uv.y *= rs[h];
          const float a0 = __fdividef(gv.x, 1.f + __expf(-gv.x)) * uv.x;
          const float a1 = __fdividef(gv.y, 1.f + __expf(-gv.y)) * uv.y;
          st(at(j, h), pack_bf16x2(a0, a1));
        }
      }
      if constexpr (CH == kEpilogueChunks - 1) {
        store(0);
      }
    } else {
      // A head is fragments [0, 16) of the staging tile (head 1: v); column i < 64 of the head
      // (fragment j < 8) pairs with i + 64 (fragment j + 8), frequency i. Chunk CH rotates
      // fragments 2 q and 2 q + 1 (q = CH % 4) and their partners of head CH / 4.
      constexpr int q = CH % 4;
      if constexpr (CH == 4) {
        wait_staging();  // head 0's store has read the staging tile
      }
      uint2 cur[2][2];
      if (rotate) {  // this chunk's (cos, sin), and the next chunk's loads in flight under it
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          cur[h][0] = cs[h][0];
          cur[h][1] = cs[h][1];
        }
        if constexpr (CH + 1 < kEpilogueChunks) {
          load_cs(CH + 1);
        }
      }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
#pragma unroll
        for (int ii = 0; ii < 2; ++ii) {
          const int j1 = 2 * q + ii, j2 = j1 + 8;
          if constexpr (CH < 4) {
            if (rotate) {
              uint32_t w1 = ld(at(j1, h)), w2 = ld(at(j2, h));
              rotate_pair(w1, w2, cur[h][ii]);
              st(at(j1, h), w1);
              st(at(j2, h), w2);
            }
          } else {
            uint32_t w1 = v[2 * j1 + h], w2 = v[2 * j2 + h];
            if (rotate) {
              rotate_pair(w1, w2, cur[h][ii]);
            }
            st(at(j1, h), w1);
            st(at(j2, h), w2);
          }
        }
      }
      if constexpr (CH == 3) {
        store(0);
      } else if constexpr (CH == kEpilogueChunks - 1) {
        store(1);
      }
    }
    if constexpr (CH == kEpilogueChunks - 1) {
      active = false;
    }
  }

  // The staging tile to global memory as output columns [128 half, 128 half + 128) of the tile
  // (TMA; rows past `rows` are clipped).
  __device__ __forceinline__ void store(int half) {
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");  // visible to the TMA store
    consumer_sync(c);
    if (tid == 0) {
      const int row0 = m * kBM + c * 64, col0 = n * Config<E>::kOutCols + 128 * half;
      tma_store(map_out, col0, row0, tile_out);
      tma_store(map_out, col0 + 64, row0, tile_out + 8192);
      asm volatile("cp.async.bulk.commit_group;" ::: "memory");
    }
  }

  // chunk_at<ch> for a run-time ch: the pieces need compile-time fragment indices (registers).
  template <int CH = 0>
  __device__ __forceinline__ void chunk(int ch) {
    if constexpr (CH < kEpilogueChunks) {
      if (ch == CH) {
        chunk_at<CH>();
      } else {
        chunk<CH + 1>(ch);
      }
    }
  }
};

// f: kSwiGlu: F (act columns; up rows start at F in w); kRope: N (output columns). rope_cols and
// cos_sin only for kRope; row_scale (optional) only for kSwiGlu.
template <Epilogue E>
__global__ void __launch_bounds__(kThreads, 1)
    blockrank_hopper_gemm(const __grid_constant__ CUtensorMap map_x,
                          const __grid_constant__ CUtensorMap map_w,
                          const __grid_constant__ CUtensorMap map_out,
                          int rows,
                          int k,
                          int f,
                          int rope_cols,
                          const uint2* __restrict__ cos_sin,
                          const float* __restrict__ row_scale) {
  using C = Config<E>;
  constexpr int kStages = C::kStages;
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  uint8_t* base = smem_align_1024(smem_raw);
  auto* stage_a = reinterpret_cast<__nv_bfloat16*>(base);
  auto* stage_b = stage_a + kStages * kStageA;
  auto* full = reinterpret_cast<uint64_t*>(base + size_t{kStages} * kStageBytes);
  uint64_t* empty = full + kStages;
  uint8_t* staging = base + size_t{kStages} * kStageBytes + 1024;  // after the barriers' slot

  const int wg = threadIdx.x / 128, tid = threadIdx.x % 128;
  if (threadIdx.x == 0) {
    for (int i = 0; i < kStages; ++i) {
      mbar_init(&full[i], 1);
      mbar_init(&empty[i], 2);  // one arrive per consumer warpgroup
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();

  const int num_m = (rows + kBM - 1) / kBM, num_n = f / C::kOutCols, num_k = k / kBK;
  const int num_tiles = num_m * num_n;
  if (wg == 0) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;");  // the producer needs few registers
    if (tid == 0) {
      uint32_t g = 0;
      for (int tile = blockIdx.x; tile < num_tiles; tile += gridDim.x) {
        int m, n;
        tile_coords(tile, num_m, num_n, &m, &n);
        for (int kb = 0; kb < num_k; ++kb, ++g) {
          const uint32_t st = g % kStages, round = g / kStages;
          mbar_wait(&empty[st], (round & 1) ^ 1);
          mbar_expect_tx(&full[st], kStageBytes);
          __nv_bfloat16* b = stage_b + st * kStageB;
          tma_load(stage_a + st * kStageA, &map_x, kb * kBK, m * kBM, &full[st]);
          if constexpr (E == Epilogue::kSwiGlu) {
            tma_load(b, &map_w, kb * kBK, n * 128, &full[st]);
            tma_load(b + 128 * kBK, &map_w, kb * kBK, f + n * 128, &full[st]);
          } else {
            tma_load(b, &map_w, kb * kBK, n * 256, &full[st]);
            tma_load(b + 128 * kBK, &map_w, kb * kBK, n * 256 + 128, &full[st]);
          }
        }
      }
    }
    return;
  }
  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;");  // ... and the consumers the rest
  const int c = wg - 1;                                  // rows [64 c, 64 c + 64) of each tile
  const int lane = tid % 32;
  Epilogue_<E> epi;
  epi.map_out = &map_out;
  epi.cos_sin = cos_sin;
  epi.rows = rows;
  epi.c = c;
  epi.tid = tid;
  epi.lane = lane;
  epi.lr = (tid / 32) * 16 + lane / 4;  // this thread's rows lr and lr + 8 of the 64
  epi.active = false;
  epi.init(staging + c * C::kStaging);  // 64 x 64 boxes: columns [0, 64), [64, 128)
  float d[128];
#pragma unroll
  for (int i = 0; i < 128; ++i) {
    d[i] = 0.f;
  }
  uint32_t g = 0;
  for (int tile = blockIdx.x; tile < num_tiles; tile += gridDim.x) {
    int m, n;
    tile_coords(tile, num_m, num_n, &m, &n);
    // This tile's row scales, loaded now and first used at the hold, after the main loop.
    float scale[2] = {1.f, 1.f};
    if (row_scale != nullptr) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = m * kBM + c * 64 + epi.lr + 8 * h;
        scale[h] = row < rows ? __ldg(row_scale + row) : 0.f;
      }
    }
    for (int kb = 0; kb < num_k; ++kb, ++g) {
      const uint32_t st = g % kStages, round = g / kStages;
      mbar_wait(&full[st], round & 1);
      const __nv_bfloat16* a = stage_a + st * kStageA + c * 64 * kBK;
      const __nv_bfloat16* b = stage_b + st * kStageB;
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kBK / 16; ++kk) {
        wgmma_m64n256k16(d, smem_desc(a + kk * 16), smem_desc(b + kk * 16), kb > 0 || kk > 0);
      }
      wgmma_commit();
      // The previous tile's epilogue, one chunk per k-block while this one's MMAs run.
      if (epi.active && kb < kEpilogueChunks) {
        epi.chunk(kb);
      }
      wgmma_wait<1>();  // the previous k-block's MMAs are done: release its stage
      if (kb > 0 && tid == 0) {
        mbar_arrive(&empty[(g - 1) % kStages]);
      }
    }
    if (epi.active) {  // fewer k-blocks than chunks: the rest under the last k-block
      for (int ch = num_k; ch < kEpilogueChunks; ++ch) {
        epi.chunk(ch);
      }
    }
    wgmma_wait<0>();
    if (tid == 0) {
      mbar_arrive(&empty[(g - 1) % kStages]);
    }
#pragma unroll
    for (int i = 0; i < 128; ++i) {
      fence_operand(d[i]);
    }
    epi.hold(d, m, n, rope_cols, scale);
  }
  if (epi.active) {
    for (int ch = 0; ch < kEpilogueChunks; ++ch) {
      epi.chunk(ch);
    }
  }
  if (tid == 0) {
    asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");  // stores done before exit
  }
}

// 2-D bf16 tensor [outer, inner] (row stride inner), boxes of 64 x box_outer, 128-byte swizzle.
bool make_map(CUtensorMap* map, const void* ptr, int inner, int outer, int box_outer) {
  static_assert(kBK == 64, "encode_bf16_map's boxes are 64 columns wide");
  return sm90::encode_bf16_map(map, ptr, static_cast<uint64_t>(outer), static_cast<uint64_t>(inner),
                               static_cast<uint64_t>(inner), static_cast<uint32_t>(box_outer));
}

}  // namespace

bool swiglu_gemm_supported(int device) {
  int major = 0, minor = 0;
  return cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
         cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) == cudaSuccess &&
         major == 9 && minor == 0;
}

namespace {

// Checks the device, builds the maps (x [rows, k]; w [w_rows, k]; out [rows, out_cols]) and
// launches one CTA per SM (fewer when there are fewer tiles).
template <Epilogue E>
cudaError_t launch(const void* x,
                   const void* w,
                   int w_rows,
                   void* out,
                   int out_cols,
                   int rows,
                   int k,
                   int f,
                   int rope_cols,
                   const void* cos_sin,
                   const float* row_scale,
                   cudaStream_t stream) {
  int device = 0, sms = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) {
    return err;
  }
  if (!swiglu_gemm_supported(device)) {
    return cudaErrorInvalidValue;
  }
  err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  if (err != cudaSuccess) {
    return err;
  }
  CUtensorMap map_x, map_w, map_out;
  if (!make_map(&map_x, x, k, rows, kBM) || !make_map(&map_w, w, k, w_rows, 128) ||
      !make_map(&map_out, out, out_cols, rows, 64)) {
    return cudaErrorInvalidValue;
  }
  constexpr int smem = static_cast<int>(Config<E>::kSmem);
  const auto kernel = blockrank_hopper_gemm<E>;
  err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (err != cudaSuccess) {
    return err;
  }
  const int tiles = ((rows + kBM - 1) / kBM) * (out_cols / Config<E>::kOutCols);
  const int ctas = tiles < sms ? tiles : sms;
  kernel<<<ctas, kThreads, smem, stream>>>(map_x, map_w, map_out, rows, k, f, rope_cols,
                                           static_cast<const uint2*>(cos_sin), row_scale);
  return cudaGetLastError();
}

bool aligned16(const void* q) {
  return reinterpret_cast<uintptr_t>(q) % 16 == 0;
}

}  // namespace

cudaError_t swiglu_gemm(const SwigluGemmParams& p, cudaStream_t stream) {
  if (p.rows < 1 || p.k < kBK || p.k % kBK != 0 || p.f < 128 || p.f % 128 != 0 || !aligned16(p.x) ||
      !aligned16(p.w_gate_up) || !aligned16(p.out)) {
    return cudaErrorInvalidValue;
  }
  return launch<Epilogue::kSwiGlu>(p.x, p.w_gate_up, 2 * p.f, p.out, p.f, p.rows, p.k, p.f, 0,
                                   nullptr, p.row_scale, stream);
}

cudaError_t rope_gemm(const RopeGemmParams& p, cudaStream_t stream) {
  if (p.rows < 1 || p.k < kBK || p.k % kBK != 0 || p.n < 256 || p.n % 256 != 0 || p.rope_cols < 0 ||
      p.rope_cols % 256 != 0 || p.rope_cols > p.n ||
      (p.rope_cols > 0 && (p.cos_sin == nullptr || reinterpret_cast<uintptr_t>(p.cos_sin) % 8)) ||
      !aligned16(p.x) || !aligned16(p.w) || !aligned16(p.out)) {
    return cudaErrorInvalidValue;
  }
  return launch<Epilogue::kRope>(p.x, p.w, p.n, p.out, p.n, p.rows, p.k, p.n, p.rope_cols,
                                 p.cos_sin, nullptr, stream);
}

}  // namespace kernels
}  // namespace blockrank
