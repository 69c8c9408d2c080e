// SPDX-License-Identifier: Apache-2.0
// The grouped part of the ragged BlockRank attention (block_attention.cuh: the work items from
// num_streamed_items on, every query head of a KV group over the item's shared K/V) as a persistent
// Hopper kernel with TMA copies and wgmma; see block_attention_sm90.cuh. Built for sm_90a only.
//
// Q [64, 128], the K tiles and the V tiles sit in shared memory as two 64-column panels each,
// 128-byte swizzled (the layout TMA's SWIZZLE_128B writes and wgmma's descriptors read). Per query
// head: S = Q Kᵀ for all of the item's keys at once (wgmma.m64n64k16 per tile, both operands from
// shared memory), the exact softmax over the resident keys in registers (no running rescale: every
// key is in S), the probabilities re-packed as the register A operand of O = P V
// (wgmma.m64n128k16 with V as the MN-major B). Same masks and zero rows as the mma.sync kernel in
// block_attention.cu.
#include <cuda.h>
#include <cuda_bf16.h>

#include "kernels/attention_rows.cuh"
#include "kernels/block_attention.cuh"
#include "kernels/block_attention_sm90.cuh"
#include "kernels/device_util.cuh"
#include "kernels/sm90_common.cuh"

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
using sm90::smem_desc_mn;
using sm90::tma_load;
using sm90::wgmma_commit;
using sm90::wgmma_fence;
using sm90::wgmma_wait;

constexpr int kD = 128;
constexpr int kTiles = kAttentionResidentTiles;
constexpr int kPanel = 64 * 128;        // bytes: 64 rows x 64 bf16 columns
constexpr int kTileBytes = 2 * kPanel;  // 64 rows x 128 columns
constexpr float kLog2e = 1.4426950408889634f;

static_assert(kAttentionTileRows == 64, "one warpgroup covers an item's 64 rows");

// D (64 x 64, fp32) (+)= A (64 x 16, shared) * B (16 x 64, shared), both K-major.
__device__ __forceinline__ void wgmma_m64n64k16_ss(float (&d)[32],
                                                   uint64_t desc_a,
                                                   uint64_t desc_b,
                                                   int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, "
      "%9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, "
      "%27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, "
      "0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(desc_a), "l"(desc_b), "r"(scale_d));
}

// D (64 x 128, fp32) (+)= A (64 x 16, registers: the m16n8k16 A fragment of each warp's 16 rows)
// * B (16 x 128, shared, MN-major: imm-trans-b 1).
__device__ __forceinline__ void wgmma_m64n128k16_rs(float (&d)[64],
                                                    const uint32_t (&a)[4],
                                                    uint64_t desc_b,
                                                    int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, "
      "%9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, "
      "%27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, "
      "%45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, "
      "%63}, {%64, %65, %66, %67}, "
      "%68, p, 1, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]),
        "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
        "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]),
        "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d));
}

// ---------------------------------------------------------------------------------------------
// The persistent TMA form of the grouped items, BlockAttentionParams::wgmma_grouped == 3 (the
// default; bench/gpu/NOTES.md sessions 10-11 have the reasoning and the measurements). One CTA
// per SM, two warpgroups; CTA c takes units (grouped item, KV head) c, c + grid, ... in item order
// (longest first). Warpgroup w runs query heads w, w + 2, ... of each unit over the unit's K/V,
// both warpgroups over the same resident tiles.
//   - Keys are split into the instruction's tiles (token rows 64 i ..., keys >= a_end masked) and
//     the item's own tiles (token rows b_start + 64 j ..., masked causally), so every tile is 64
//     consecutive token rows: one TMA box per 64-column panel. Rows past a key range or the item
//     are whatever tokens follow (finite; masked) or TMA's zero fill past T.
//   - K/V double-buffered: warpgroup 0's elected thread loads the next unit's K/V into the other
//     buffer as soon as both warpgroups are done with it (kv_empty), so no unit starts with a load.
//   - Each warpgroup's elected thread loads its own next Q (the next head, or the next unit's
//     first) as soon as every thread of the warpgroup has its S: TMA completes on the slot's own
//     mbarrier, independent of the K/V copies (cp.async would order them per thread).
//   - Each head's output leaves registers as packed bf16 (PendingOut) and is stored while the
//     warpgroup's next S MMAs run.
//   - Each warpgroup runs its heads strictly in order (S, softmax, P V). Two FA3 schedules were
//     measured and were slower here, where the kernel is latency-bound at one warp per scheduler
//     per warpgroup: the warpgroups taking turns (session 11), and the next head's S issued with
//     this head's P V so its softmax runs under it (session 12; 255 registers with spills). Four
//     warpgroups of one head each with an online softmax per key tile (session 15, branch
//     wip/attention-hp) were slower too: spills at 128 registers and no more issue rate. What
//     paid was issuing fewer instructions (per-lane mask limits, uniform descriptors).
// Precondition (the host checks it: CudaBlockPlan::max_split_tiles): ceil(a_end / 64) +
// ceil((row_end - b_start) / 64) <= kTiles and partial < 0 for every grouped item; heads
// contiguous in a row.
// ---------------------------------------------------------------------------------------------
// Two consumer warpgroups, then the Q RoPE warps (rope_q_loop): kRopeWarpsPerSlot per consumer
// warpgroup, each rotating 1 / kRopeWarpsPerSlot of its Q tiles.
constexpr int kRopeWarpsPerSlot = 2;
constexpr int kTmaThreads = 256 + 2 * 32 * kRopeWarpsPerSlot;
constexpr int kKvBufBytes = 2 * kTiles * kTileBytes;  // K tiles 0..2, then V tiles 0..2
// Two K/V buffers, a Q slot per warpgroup, the barriers' slot, 1,024 bytes to align the base.
constexpr size_t kTmaSmem = size_t{2} * kKvBufBytes + 2 * kTileBytes + 1024 + 1024;
static_assert(kTmaSmem <= 232448, "over the 227 KB of dynamic shared memory per block");

__device__ __forceinline__ void warpgroup_sync(int w) {
  if (w == 0) {
    asm volatile("bar.sync 1, 128;" ::: "memory");
  } else {
    asm volatile("bar.sync 2, 128;" ::: "memory");
  }
}

struct SplitTiles {
  int instr;  // tiles of instruction keys (token rows 0 ...)
  int own;    // tiles of the item's own keys (token rows b_start ...)
};

__device__ __forceinline__ SplitTiles split_tiles(const AttentionWorkItem& it) {
  SplitTiles t{(it.a_end + 63) / 64, (it.row_end - it.b_start + 63) / 64};
  if (t.instr + t.own > kTiles || t.own < 1) {
    __trap();  // the host's max_split_tiles check was skipped
  }
  return t;
}

// Q of `head` for the item's rows into `slot` (two 64-column boxes), completing on `bar`.
__device__ __forceinline__ void tma_q(
    const CUtensorMap* map_q, const AttentionWorkItem& it, int head, uint8_t* slot, uint64_t* bar) {
  mbar_expect_tx(bar, kTileBytes);
  tma_load(slot, map_q, head * kD, it.row_begin, bar);
  tma_load(slot + kPanel, map_q, head * kD + 64, it.row_begin, bar);
}

// The unit's K and V tiles into `buf` (K tile i at buf + i * kTileBytes, V tile i kTiles tiles
// later), completing on `bar`; with `instr_resident` only the own tiles (the instruction's are
// still in the buffer from its previous unit: same KV head, same a_end).
__device__ __forceinline__ void tma_kv(const CUtensorMap* map_k,
                                       const CUtensorMap* map_v,
                                       const AttentionWorkItem& it,
                                       int kv_head,
                                       uint8_t* buf,
                                       uint64_t* bar,
                                       bool instr_resident) {
  const SplitTiles t = split_tiles(it);
  const int first = instr_resident ? t.instr : 0;
  mbar_expect_tx(bar, static_cast<uint32_t>((t.instr + t.own - first) * 2 * kTileBytes));
  for (int i = first; i < t.instr + t.own; ++i) {
    const int row = i < t.instr ? 64 * i : it.b_start + 64 * (i - t.instr);
    uint8_t* kt = buf + i * kTileBytes;
    uint8_t* vt = buf + (kTiles + i) * kTileBytes;
    tma_load(kt, map_k, kv_head * kD, row, bar);
    tma_load(kt + kPanel, map_k, kv_head * kD + 64, row, bar);
    tma_load(vt, map_v, kv_head * kD, row, bar);
    tma_load(vt + kPanel, map_v, kv_head * kD + 64, row, bar);
  }
}

// Shared-memory steps whose loads are issued before their stores in rope_q_loop.
constexpr int kRopeBatch = 4;

// The Q RoPE warps (p.q_rope_cos_sin set), kRopeWarpsPerSlot per consumer warpgroup, warp `part`
// of them rotating steps part * kSteps .. of each tile (a step: 4 rows x 8 chunks, 512 bytes of
// each 64-column panel). Each follows its warpgroup's sequence of Q tiles (units c, c + grid, ...;
// heads w, w + 2, ... of each): it loads the unit's (cos, sin) rows into registers before the
// unit's first Q lands (the heads of a unit share its rows; measured no faster than loading them
// per tile, session 18: the warps are issue-bound, hence the packed bf16 rope_rotate8), then
// rotates its part of each tile as soon as the TMA landed (q_full[w]) and arrives on q_ready[w];
// the warpgroup starts once every part has arrived.
//
// Rows 0 .. row_end - row_begin - 1 of the item from token row q_rope_row0 on are rotated (the
// rest of the 64 belong to other items, are masked, and stay as they are). Chunk j (8 columns)
// of tile row r sits at r * 128 + ((j ^ (r & 7)) * 16) in each panel (SWIZZLE_128B), so column c
// of a head's first half and its partner c + 64 are at the same offset of the two panels. The
// proxy fence orders these generic writes before the consumers' MMAs read the tile (async proxy).
// Not inlined: in the kernel's body its registers counted against the consumers' (spills); its
// own allocation has room. Scalars, not the params struct: a reference to the kernel parameter
// would copy it to the stack.
__device__ __noinline__ void rope_q_loop(const AttentionWorkItem* const items,
                                         const int num_units,
                                         const int num_kv_heads,
                                         const int group,
                                         const void* const cos_sin,
                                         const int row0,
                                         uint8_t* const q_slots,
                                         uint64_t* const q_full,
                                         uint64_t* const q_ready) {
  constexpr int kSteps = 16 / kRopeWarpsPerSlot;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp = (static_cast<int>(threadIdx.x) - 256) / 32;
  const int w = warp / kRopeWarpsPerSlot, part = warp % kRopeWarpsPerSlot;
  const auto* table = static_cast<const uint4*>(cos_sin);
  uint8_t* const slot = q_slots + w * kTileBytes;
  uint32_t phase = 0;
  for (int u = static_cast<int>(blockIdx.x); u < num_units && w < group;
       u += static_cast<int>(gridDim.x)) {
    const AttentionWorkItem it = items[u / num_kv_heads];
    const int rows = it.row_end - it.row_begin;
    uint4 cs[kSteps][2];  // (cos, sin) of frequencies 8 j .. 8 j + 7 of the step's row
    uint32_t off[kSteps];
    bool live[kSteps];
#pragma unroll
    for (int s = 0; s < kSteps; ++s) {
      const int pair = lane + 32 * (part * kSteps + s);
      const int r = pair >> 3, j = pair & 7;
      // Rows below q_rope_row0 (a cached prefix: their output is not used) have no table row.
      live[s] = r < rows && it.row_begin + r >= row0;
      off[s] = static_cast<uint32_t>(r * 128 + ((j ^ (r & 7)) << 4));
      if (live[s]) {
        const uint4* row = table + static_cast<int64_t>(it.row_begin + r - row0) * (kD / 8) + 2 * j;
        cs[s][0] = __ldg(row);
        cs[s][1] = __ldg(row + 1);
      }
    }
    for (int h = w; h < group; h += 2) {
      mbar_wait(&q_full[w], phase & 1);
      ++phase;
#pragma unroll
      for (int b = 0; b < kSteps; b += kRopeBatch) {
        Bf16x8 x1[kRopeBatch], x2[kRopeBatch];
#pragma unroll
        for (int i = 0; i < kRopeBatch; ++i) {
          if (live[b + i]) {
            x1[i] = *reinterpret_cast<const Bf16x8*>(slot + off[b + i]);
            x2[i] = *reinterpret_cast<const Bf16x8*>(slot + kPanel + off[b + i]);
          }
        }
#pragma unroll
        for (int i = 0; i < kRopeBatch; ++i) {
          if (live[b + i]) {
            Bf16x8 c0, c1, o1, o2;
            c0.u = cs[b + i][0];
            c1.u = cs[b + i][1];
            rope_rotate8(x1[i], x2[i], c0, c1, o1, o2);
            *reinterpret_cast<Bf16x8*>(slot + off[b + i]) = o1;
            *reinterpret_cast<Bf16x8*>(slot + kPanel + off[b + i]) = o2;
          }
        }
      }
      asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
      __syncwarp();
      if (lane == 0) {
        mbar_arrive(&q_ready[w]);
      }
    }
  }
}

// One exchange of the quad transpose (PendingOut::flush) with the lane `mask` apart: a lane with
// `keep_q` sends (p0, p1) and puts the partner's words in their place, the other lane sends
// (q0, q1) and does the same there.
__device__ __forceinline__ void quad_exchange(
    bool keep_q, int mask, uint32_t& p0, uint32_t& p1, uint32_t& q0, uint32_t& q1) {
  uint32_t x0 = keep_q ? p0 : q0, x1 = keep_q ? p1 : q1;
  x0 = __shfl_xor_sync(0xffffffffu, x0, mask);
  x1 = __shfl_xor_sync(0xffffffffu, x1, mask);
  p0 = keep_q ? x0 : p0;
  p1 = keep_q ? x1 : p1;
  q0 = keep_q ? q0 : x0;
  q1 = keep_q ? q1 : x1;
}

// A head's finished output, normalised and packed to bf16 pairs, waiting to be stored: the
// store runs under the next head's S MMAs instead of after its own P V. v[2 dt] is the lane's row
// r0 pair at column dt * 8 + 2 t4, v[2 dt + 1] row r0 + 8's; out0 / out1 point at column 0 of
// those rows of the head (nullptr: the row is past the item, or nothing is pending).
//
// flush() transposes each group of four dt among the quad (two shuffle rounds), so that lane t4
// holds the eight columns of dt = 4 g + t4 of its rows and stores them as one 16-byte word: a
// quad writes 64 contiguous bytes of a row per store. Stored as the accumulator layout gives them
// (4 bytes per lane, a quad's 16 bytes per row), the output took 32 stores per thread and head,
// each touching 8 rows' lines; they were ~15% of the kernel's stall samples (Nsight, session 16).
struct PendingOut {
  uint32_t v[2 * kD / 8];
  __nv_bfloat16* out0;
  __nv_bfloat16* out1;

  // Every lane of the warp calls it (shuffles); rows without a pointer store nothing. With
  // `lane_order` (BlockAttentionParams::out_lane_order) the lane's words of dt = 4 g .. 4 g + 3
  // are already consecutive columns of that layout: stored as they are, no shuffles.
  __device__ __forceinline__ void flush(bool lane_order) {
    const int t4 = static_cast<int>(threadIdx.x) & 3;
    if (lane_order) {
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) {
        __nv_bfloat16* const out = rr == 0 ? out0 : out1;
#pragma unroll
        for (int g = 0; g < kD / 32; ++g) {
          if (out != nullptr) {
            *reinterpret_cast<uint4*>(out + 32 * g + 8 * t4) =
                make_uint4(v[2 * (4 * g) + rr], v[2 * (4 * g + 1) + rr], v[2 * (4 * g + 2) + rr],
                           v[2 * (4 * g + 3) + rr]);
          }
        }
      }
      out0 = out1 = nullptr;
      return;
    }
    const bool b1 = (t4 & 2) != 0, b0 = (t4 & 1) != 0;
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      __nv_bfloat16* const out = rr == 0 ? out0 : out1;
#pragma unroll
      for (int g = 0; g < kD / 32; ++g) {
        // a[j]: this lane's word of dt = 4 g + j. Afterwards a[k]: lane k's word of dt = 4 g + t4.
        uint32_t a0 = v[2 * (4 * g) + rr], a1 = v[2 * (4 * g + 1) + rr];
        uint32_t a2 = v[2 * (4 * g + 2) + rr], a3 = v[2 * (4 * g + 3) + rr];
        // Swap the off-diagonal 2 x 2 blocks with the lane two apart, then transpose each 2 x 2
        // block with the neighbouring lane.
        quad_exchange(b1, 2, a0, a1, a2, a3);
        quad_exchange(b0, 1, a0, a2, a1, a3);
        if (out != nullptr) {
          *reinterpret_cast<uint4*>(out + (4 * g + t4) * 8) = make_uint4(a0, a1, a2, a3);
        }
      }
    }
    out0 = out1 = nullptr;
  }
};

// The lane's two rows of the warpgroup's 64 (row0 and row0 + 8 of the m64 accumulator layout).
struct LaneRows {
  int row0, row1, t4;
  bool valid0, valid1;
  __device__ __forceinline__ LaneRows(const AttentionWorkItem& it, int tid) {
    const int warp = tid / 32, lane = tid % 32;
    t4 = lane & 3;
    row0 = it.row_begin + warp * 16 + (lane >> 2);
    row1 = row0 + 8;
    valid0 = row0 < it.row_end;
    valid1 = row1 < it.row_end;
  }
};

// The descriptor of the operand `bytes` after the one `d` describes: the start address field
// (bits 0-13, in 16-byte units) plus bytes / 16 with one 32-bit add. Shared addresses stay below
// 256 KB, so the field never carries into the bits above it.
__device__ __forceinline__ uint64_t desc_plus(uint64_t d, uint32_t bytes) {
  return (d & 0xFFFFFFFF00000000ull) | (static_cast<uint32_t>(d) + (bytes >> 4));
}

// Issues (and commits, without waiting) S = Q Kᵀ of the head in `q_s` over the NT resident key
// tiles. The first MMA of each tile ignores s's old contents (scale_d 0).
template <int NT>
__device__ __forceinline__ void issue_s(float (&s)[NT][32],
                                        const uint8_t* q_s,
                                        const uint8_t* k_s) {
  const uint64_t dq = smem_desc(q_s), dk = smem_desc(k_s);
  wgmma_fence();
#pragma unroll
  for (int i = 0; i < NT; ++i) {
#pragma unroll
    for (int kk = 0; kk < kD / 16; ++kk) {
      const uint32_t off = (kk >> 2) * kPanel + (kk & 3) * 32;
      wgmma_m64n64k16_ss(s[i], desc_plus(dq, off), desc_plus(dk, i * kTileBytes + off), kk > 0);
    }
  }
  wgmma_commit();
}

// The masks of the split key layout (whole items only: partial < 0) and the exact softmax of a
// landed S, packed as the register A operand of P V; l0 / l1 get the lane's partial row sums.
// An instruction tile's column c is key 64 i + c, visible below a_end; an own tile's column c is
// token b_start + 64 j + c, visible up to the row (causal).
template <int NT>
__device__ __forceinline__ void softmax_to_p(float (&s)[NT][32],
                                             uint32_t (&pa)[NT][4][4],
                                             const AttentionWorkItem& it,
                                             const LaneRows& r,
                                             int instr_tiles,
                                             float scale_log2,
                                             float& l0,
                                             float& l1) {
  // Four partial maxima and sums per row (lane element (nt, e) goes to partial (nt % 2) * 2 +
  // (e & 1), resp. nt % 4): dependency chains of 12-24 instead of 48-96 at two warps per
  // scheduler.
  float mx[2][4];
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    mx[0][q] = mx[1][q] = -INFINITY;
  }
#pragma unroll
  for (int i = 0; i < NT; ++i) {
    const bool instr = i < instr_tiles;
    const int first = instr ? 64 * i : it.b_start + 64 * (i - instr_tiles);
    const bool full = instr ? first + 64 <= it.a_end : first + 63 <= it.row_begin;
    // The lane's element (nt, e) is column c = nt * 8 + 2 t4 + (e & 1) of the tile, i.e. key
    // first + c: visible when nt * 8 + (e & 1) <= lim (instruction: key < a_end; own: key <=
    // row; -1 for a row past the item). One compare per element against a compile-time column:
    // the per-element key and row arithmetic was ~half of the kernel's instructions (Nsight,
    // session 15).
    // The masks in their own loop behind the (warp-uniform) branch, so that a full tile skips
    // their compares and selects instead of issuing them predicated off (Nsight, session 16: FSEL
    // 2.16 -> 0.93M and ISETP 2.66 -> 1.43M warp instructions per launch, 229 -> 178 registers;
    // with the 16-byte output stores 230 -> 188).
    if (!full) {
      int lim0 = (instr ? it.a_end - 1 : r.row0) - first - 2 * r.t4;
      int lim1 = instr ? lim0 : lim0 + 8;
      lim0 = r.valid0 ? lim0 : -1;
      lim1 = r.valid1 ? lim1 : -1;
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float& x = s[i][nt * 4 + e];
          x = nt * 8 + (e & 1) <= (e < 2 ? lim0 : lim1) ? x : -INFINITY;
        }
      }
    }
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float& m = mx[e / 2][(nt % 2) * 2 + (e & 1)];
        m = fmaxf(m, s[i][nt * 4 + e]);
      }
    }
  }
  float mx0 = fmaxf(fmaxf(mx[0][0], mx[0][1]), fmaxf(mx[0][2], mx[0][3]));
  float mx1 = fmaxf(fmaxf(mx[1][0], mx[1][1]), fmaxf(mx[1][2], mx[1][3]));
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
  const float base0 = mx0 == -INFINITY ? 0.f : mx0 * scale_log2;
  const float base1 = mx1 == -INFINITY ? 0.f : mx1 * scale_log2;
  float ls[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
  for (int i = 0; i < NT; ++i) {
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
      float* x = &s[i][nt * 4];
      x[0] = fast_exp2(fmaf(x[0], scale_log2, -base0));
      x[1] = fast_exp2(fmaf(x[1], scale_log2, -base0));
      x[2] = fast_exp2(fmaf(x[2], scale_log2, -base1));
      x[3] = fast_exp2(fmaf(x[3], scale_log2, -base1));
      ls[0][nt % 4] += x[0] + x[1];
      ls[1][nt % 4] += x[2] + x[3];
    }
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      const float* a = &s[i][8 * kk];
      pa[i][kk][0] = pack_bf16x2(a[0], a[1]);
      pa[i][kk][1] = pack_bf16x2(a[2], a[3]);
      pa[i][kk][2] = pack_bf16x2(a[4], a[5]);
      pa[i][kk][3] = pack_bf16x2(a[6], a[7]);
    }
  }
  l0 = (ls[0][0] + ls[0][1]) + (ls[0][2] + ls[0][3]);
  l1 = (ls[1][0] + ls[1][1]) + (ls[1][2] + ls[1][3]);
}

// Issues (and commits, without waiting) O = P V over the NT resident value tiles.
template <int NT>
__device__ __forceinline__ void issue_pv(float (&o)[64],
                                         const uint32_t (&pa)[NT][4][4],
                                         const uint8_t* v_s) {
  const uint64_t dv = smem_desc_mn(v_s, kPanel, 1024);
  wgmma_fence();
#pragma unroll
  for (int i = 0; i < NT; ++i) {
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      wgmma_m64n128k16_rs(o, pa[i][kk], desc_plus(dv, i * kTileBytes + kk * 2048), i > 0 || kk > 0);
    }
  }
  wgmma_commit();
}

// After the wait on a P V: pins its operands (the asynchronous MMA read pa and wrote o), then
// normalises the rows as attention_rows::write does for a whole item (the quad's row sums; zeros
// for a row that saw nothing) and leaves the head's output packed in `pend`, which must be empty.
template <int NT>
__device__ __forceinline__ void finish_head(float (&o)[64],
                                            uint32_t (&pa)[NT][4][4],
                                            float l0,
                                            float l1,
                                            const BlockAttentionParams& p,
                                            const LaneRows& r,
                                            int head,
                                            PendingOut& pend) {
#pragma unroll
  for (int i = 0; i < NT; ++i) {
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        fence_operand(pa[i][kk][e]);
      }
    }
  }
#pragma unroll
  for (int e = 0; e < 64; ++e) {
    fence_operand(o[e]);
  }
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  // l >= 1 for a row that saw a key (its maximum contributes exp2(0)): the fast reciprocal, with
  // no IEEE slow path.
  const float inv0 = l0 > 0.f ? __fdividef(1.f, l0) : 0.f;
  const float inv1 = l1 > 0.f ? __fdividef(1.f, l1) : 0.f;
#pragma unroll
  for (int dt = 0; dt < kD / 8; ++dt) {
    pend.v[2 * dt] = pack_bf16x2(o[dt * 4] * inv0, o[dt * 4 + 1] * inv0);
    pend.v[2 * dt + 1] = pack_bf16x2(o[dt * 4 + 2] * inv1, o[dt * 4 + 3] * inv1);
  }
  auto* const out = static_cast<__nv_bfloat16*>(p.out) + head * p.out_head_stride;
  pend.out0 = r.valid0 ? out + static_cast<int64_t>(r.row0) * p.out_row_stride : nullptr;
  pend.out1 = r.valid1 ? out + static_cast<int64_t>(r.row1) * p.out_row_stride : nullptr;
}

template <int NT>
__device__ __forceinline__ void fence_s(float (&s)[NT][32]) {
#pragma unroll
  for (int i = 0; i < NT; ++i) {
#pragma unroll
    for (int e = 0; e < 32; ++e) {
      fence_operand(s[i][e]);
    }
  }
}

// One query head over the unit's resident tiles (NT = instr + own), strictly in order: S, the
// softmax, O = P V. The previous head's output (`pend`) is stored while this head's S MMAs run;
// this head's is left in `pend`. release_q() runs once every thread has its S.
template <int NT, typename ReleaseQ>
__device__ __forceinline__ void tma_attend_head(const BlockAttentionParams& p,
                                                const AttentionWorkItem& it,
                                                int instr_tiles,
                                                int head,
                                                const uint8_t* q_s,
                                                const uint8_t* k_s,
                                                const uint8_t* v_s,
                                                int tid,
                                                float scale_log2,
                                                ReleaseQ release_q,
                                                PendingOut& pend) {
  const LaneRows r(it, tid);
  float s[NT][32];
  issue_s<NT>(s, q_s, k_s);
  pend.flush(p.out_lane_order != 0);
  wgmma_wait<0>();
  fence_s<NT>(s);
  release_q();
  float l0, l1;
  uint32_t pa[NT][4][4];
  softmax_to_p<NT>(s, pa, it, r, instr_tiles, scale_log2, l0, l1);
  float o[64];
  issue_pv<NT>(o, pa, v_s);
  wgmma_wait<0>();
  finish_head<NT>(o, pa, l0, l1, p, r, head, pend);
}

// The loop of warpgroup W (a template parameter, so that its Q slot's address, and with it every
// shared-memory descriptor, is warp-uniform: the compiler builds them in uniform registers instead
// of per-thread arithmetic and R2UR moves before each MMA).
template <int W>
__device__ __forceinline__ void tma_kernel_loop(const BlockAttentionParams& p,
                                                const CUtensorMap& map_q,
                                                const CUtensorMap& map_k,
                                                const CUtensorMap& map_v,
                                                uint8_t* const base,
                                                uint8_t* const q_slots,
                                                uint64_t* const kv_full,
                                                uint64_t* const kv_empty,
                                                uint64_t* const q_full,
                                                uint64_t* const q_ready,
                                                AttentionWorkItem* const unit_items) {
  constexpr int w = W;
  const int tid = threadIdx.x % 128;

  const int group = p.num_heads / p.num_kv_heads;
  const int num_units = (p.num_items - p.num_streamed_items) * p.num_kv_heads;
  const int stride = static_cast<int>(gridDim.x);
  const auto item_of = [&](int u) { return p.items[p.num_streamed_items + u / p.num_kv_heads]; };
  // The unit's item into the buffer's slot, then its K/V (the elected thread of warpgroup 0).
  // Every document item of a KV head reads the same instruction tiles (keys [0, a_end)), and a
  // buffer's units keep one KV head when 2 x grid is a multiple of Hkv (the H200's 132 CTAs and
  // Hkv = 8: units c, c + 264, ... in buffer 0): those tiles are loaded once per buffer and
  // kept while its units have the same KV head and a_end (the own tiles start after them, so
  // they are never overwritten). BlockAttentionParams::resident_instruction. The (KV head,
  // a_end) of each buffer's instruction tiles sits in shared memory after the unit items (only
  // this thread uses it; in registers it cost the consumers spills).
  int2* const resident_of = reinterpret_cast<int2*>(unit_items + 2);
  const auto load_unit = [&](int u, int b) {
    const AttentionWorkItem it = item_of(u);
    unit_items[b] = it;
    const int kv = u % p.num_kv_heads;
    const int2 was = resident_of[b];
    const bool resident =
        p.resident_instruction != 0 && it.a_end > 0 && was.x == kv && was.y == it.a_end;
    resident_of[b] = make_int2(kv, it.a_end);
    tma_kv(&map_k, &map_v, it, kv, base + b * kKvBufBytes, &kv_full[b], resident);
  };
  uint8_t* const q_s = q_slots + w * kTileBytes;
  const float scale_log2 = p.scale * kLog2e;
  const bool elected = tid == 0;
  const int first = static_cast<int>(blockIdx.x);
  if (first >= num_units) {
    return;
  }
  // Prologue: the first unit's K/V (warpgroup 0) and each warpgroup's first Q.
  if (w == 0 && elected) {
    load_unit(first, 0);
  }
  if (w < group && elected) {
    tma_q(&map_q, item_of(first), (first % p.num_kv_heads) * group + w, q_s, &q_full[w]);
  }
  __syncwarp();  // converged again before any warpgroup-wide instruction
  PendingOut pend;
  pend.out0 = pend.out1 = nullptr;
  uint32_t q_phase = 0;
  uint64_t* const q_wait = p.q_rope_cos_sin != nullptr ? &q_ready[w] : &q_full[w];
  int k = 0;
  for (int u = first; u < num_units; u += stride, ++k) {
    const int buf = k & 1;
    const int kv_head = u % p.num_kv_heads;
    mbar_wait(&kv_full[buf], (k >> 1) & 1);
    // The next unit's K/V into the other buffer once both warpgroups left it (unit k - 1). Only
    // after this unit's K/V landed: at the start every CTA loads at once, and the first unit's
    // copies should not share the memory system with the second's (Nsight, session 15: ~8% of
    // the stall samples were on this unit's K/V).
    if (w == 0 && elected && u + stride < num_units) {
      if (k >= 1) {
        mbar_wait(&kv_empty[buf ^ 1], ((k - 1) >> 1) & 1);
      }
      load_unit(u + stride, buf ^ 1);
    }
    __syncwarp();
    const AttentionWorkItem it = unit_items[buf];
    const uint8_t* k_s = base + buf * kKvBufBytes;
    const uint8_t* v_s = k_s + kTiles * kTileBytes;
    const SplitTiles t = split_tiles(it);
    for (int h = w; h < group; h += 2) {
      mbar_wait(q_wait, q_phase & 1);  // landed (and rotated, with p.q_rope_cos_sin)
      ++q_phase;
      const auto release_q = [&] {
        warpgroup_sync(w);  // every thread's S is done: the slot may be refilled
        if (elected) {
          if (h + 2 < group) {
            tma_q(&map_q, it, kv_head * group + h + 2, q_s, &q_full[w]);
          } else if (u + stride < num_units) {
            const int nu = u + stride;
            tma_q(&map_q, item_of(nu), (nu % p.num_kv_heads) * group + w, q_s, &q_full[w]);
          }
        }
        __syncwarp();
      };
      const int head = kv_head * group + h;
      const int nt = t.instr + t.own;
      if (nt == 1) {
        tma_attend_head<1>(p, it, t.instr, head, q_s, k_s, v_s, tid, scale_log2, release_q, pend);
      } else if (nt == 2) {
        tma_attend_head<2>(p, it, t.instr, head, q_s, k_s, v_s, tid, scale_log2, release_q, pend);
      } else {
        tma_attend_head<3>(p, it, t.instr, head, q_s, k_s, v_s, tid, scale_log2, release_q, pend);
      }
    }
    warpgroup_sync(w);  // every P V of this unit is done
    if (elected) {
      mbar_arrive(&kv_empty[buf]);
    }
  }
  pend.flush(p.out_lane_order != 0);
}

__global__ void __launch_bounds__(kTmaThreads, 1)
    blockrank_attention_tma_kernel(const BlockAttentionParams p,
                                   const __grid_constant__ CUtensorMap map_q,
                                   const __grid_constant__ CUtensorMap map_k,
                                   const __grid_constant__ CUtensorMap map_v) {
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  uint8_t* const base = smem_align_1024(smem_raw);
  uint8_t* const q_slots = base + 2 * kKvBufBytes;  // warpgroup w's at q_slots + w * kTileBytes
  auto* bars = reinterpret_cast<uint64_t*>(q_slots + 2 * kTileBytes);
  uint64_t* const kv_full = bars;       // [2] the buffer's K/V (and its unit's item) landed
  uint64_t* const kv_empty = bars + 2;  // [2] both warpgroups are done with the buffer
  uint64_t* const q_full = bars + 4;    // [2] warpgroup w's Q landed
  uint64_t* const q_ready = bars + 6;   // [2] ... and the RoPE warps rotated it (q_rope_cos_sin)
  // [2] the unit of each K/V buffer: written by the thread that loads the buffer before its
  // arrive on kv_full (release), read by everyone after the wait (acquire).
  auto* const unit_items = reinterpret_cast<AttentionWorkItem*>(bars + 8);
  // [2] after them: the (KV head, a_end) of each K/V buffer's instruction tiles (load_unit).

  if (threadIdx.x == 0) {
    for (int i = 0; i < 2; ++i) {
      mbar_init(&kv_full[i], 1);
      mbar_init(&kv_empty[i], 2);
      mbar_init(&q_full[i], 1);
      mbar_init(&q_ready[i], kRopeWarpsPerSlot);
      reinterpret_cast<int2*>(unit_items + 2)[i] = make_int2(-1, -1);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  if (threadIdx.x < 128) {
    tma_kernel_loop<0>(p, map_q, map_k, map_v, base, q_slots, kv_full, kv_empty, q_full, q_ready,
                       unit_items);
  } else if (threadIdx.x < 256) {
    tma_kernel_loop<1>(p, map_q, map_k, map_v, base, q_slots, kv_full, kv_empty, q_full, q_ready,
                       unit_items);
  } else if (p.q_rope_cos_sin != nullptr) {
    rope_q_loop(p.items + p.num_streamed_items,
                (p.num_items - p.num_streamed_items) * p.num_kv_heads, p.num_kv_heads,
                p.num_heads / p.num_kv_heads, p.q_rope_cos_sin, p.q_rope_row0, q_slots, q_full,
                q_ready);
  }
}

// ---------------------------------------------------------------------------------------------
// The streamed split-K pieces of token keys (the query block's) on wgmma,
// BlockAttentionParams::wgmma_pieces (bench/gpu/NOTES.md, session 19: on mma.sync each warp reads a
// whole K and V tile from shared memory for its 16 rows, which bounds those CTAs). One CTA per
// (piece, KV head): a producer warp streams the piece's K/V tiles through a ring of kPieceStages
// slots; two consumer warpgroups each hold a 64-row Q tile of two query heads of the group stacked
// (rows 0-31 head 2 w, rows 32-63 head 2 w + 1: the item's at most 32 rows each, two 32-row TMA
// boxes) and run, per key tile, S = Q Kᵀ, the online softmax (running maximum and sum, O rescaled)
// and O += P V; at the end the unnormalised O and (maximum in log2 units, sum) per row go to the
// item's partial slot, as attention_rows::write leaves them for the combine. Preconditions (the
// host's, CudaBlockPlan::streamed_token_pieces): head_dim 128, a group of 4 query heads per KV
// head, every streamed item a split-K piece (partial >= 0) of token keys (a_end 0) with at most 32
// rows; Q already rotated.
// ---------------------------------------------------------------------------------------------
constexpr int kPieceStages = 4;
constexpr int kPieceGroup = 4;
constexpr int kPieceThreads = 256 + 32;  // two consumer warpgroups, the producer warp
// The ring (K tile, then V tile per stage), a Q tile per warpgroup, the barriers' slot, alignment.
constexpr size_t kPieceSmem = size_t{kPieceStages} * 2 * kTileBytes + 2 * kTileBytes + 1024 + 1024;
static_assert(kPieceSmem <= 232448, "over the 227 KB of dynamic shared memory per block");

__device__ __forceinline__ void issue_pv_acc(float (&o)[64],
                                             const uint32_t (&pa)[4][4],
                                             const uint8_t* v_s,
                                             bool accumulate) {
  const uint64_t dv = smem_desc_mn(v_s, kPanel, 1024);
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    wgmma_m64n128k16_rs(o, pa[kk], desc_plus(dv, kk * 2048), accumulate || kk > 0);
  }
  wgmma_commit();
}

__global__ void __launch_bounds__(kPieceThreads, 1)
    blockrank_attention_pieces_kernel(const BlockAttentionParams p,
                                      const __grid_constant__ CUtensorMap map_q32,
                                      const __grid_constant__ CUtensorMap map_k,
                                      const __grid_constant__ CUtensorMap map_v) {
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  uint8_t* const base = smem_align_1024(smem_raw);
  uint8_t* const q_slots = base + kPieceStages * 2 * kTileBytes;
  auto* const bars = reinterpret_cast<uint64_t*>(q_slots + 2 * kTileBytes);
  uint64_t* const full = bars;                  // [kPieceStages] the stage's K and V landed
  uint64_t* const empty = bars + kPieceStages;  // [kPieceStages] both warpgroups are done with it
  uint64_t* const q_full = bars + 2 * kPieceStages;  // [2] warpgroup w's Q landed

  const int item = static_cast<int>(blockIdx.x) / p.num_kv_heads;
  const int kv_head = static_cast<int>(blockIdx.x) % p.num_kv_heads;
  const AttentionWorkItem it = p.items[item];
  const int num_tiles = (it.key_end - it.key_begin + 63) / 64;
  if (threadIdx.x == 0) {
    for (int i = 0; i < kPieceStages; ++i) {
      mbar_init(&full[i], 1);
      mbar_init(&empty[i], 2);
    }
    mbar_init(&q_full[0], 1);
    mbar_init(&q_full[1], 1);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  if (threadIdx.x >= 256) {  // the producer warp
    if (threadIdx.x == 256) {
      for (int w = 0; w < 2; ++w) {
        uint8_t* const slot = q_slots + w * kTileBytes;
        mbar_expect_tx(&q_full[w], kTileBytes);
        for (int hh = 0; hh < 2; ++hh) {
          const int head = kv_head * kPieceGroup + 2 * w + hh;
          tma_load(slot + hh * 32 * 128, &map_q32, head * kD, it.row_begin, &q_full[w]);
          tma_load(slot + kPanel + hh * 32 * 128, &map_q32, head * kD + 64, it.row_begin,
                   &q_full[w]);
        }
      }
      for (int i = 0; i < num_tiles; ++i) {
        const int st = i % kPieceStages;
        if (i >= kPieceStages) {
          mbar_wait(&empty[st], ((i / kPieceStages) - 1) & 1);
        }
        uint8_t* const kt = base + st * 2 * kTileBytes;
        uint8_t* const vt = kt + kTileBytes;
        const int row = it.key_begin + 64 * i;
        mbar_expect_tx(&full[st], 2 * kTileBytes);
        tma_load(kt, &map_k, kv_head * kD, row, &full[st]);
        tma_load(kt + kPanel, &map_k, kv_head * kD + 64, row, &full[st]);
        tma_load(vt, &map_v, kv_head * kD, row, &full[st]);
        tma_load(vt + kPanel, &map_v, kv_head * kD + 64, row, &full[st]);
      }
    }
    return;
  }
  const int w = static_cast<int>(threadIdx.x) / 128, tid = static_cast<int>(threadIdx.x) % 128;
  const int warp = tid / 32, lane = tid % 32, t4 = lane & 3;
  // Tile rows 0-31: head 2 w, rows 32-63: head 2 w + 1; tile row r is the item's row r % 32.
  const int head = kv_head * kPieceGroup + 2 * w + (warp >> 1);
  const int lr0 = (warp & 1) * 16 + (lane >> 2), lr1 = lr0 + 8;
  const int row0 = it.row_begin + lr0, row1 = it.row_begin + lr1;
  const bool valid0 = row0 < it.row_end, valid1 = row1 < it.row_end;
  const uint8_t* const q_s = q_slots + w * kTileBytes;
  const float scale_log2 = p.scale * kLog2e;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
  float o[64];
#pragma unroll
  for (int e = 0; e < 64; ++e) {
    o[e] = 0.f;
  }
  // Tile i's softmax on its landed S: the masks, the running maxima (m0, m1) and the per-lane
  // partial sums (l0, l1) updated, P packed into `pa` as the register A operand of its P V, and
  // the factors (a0, a1) by which O must be scaled before that P V.
  // Reads S only (its registers are the next S MMA's: written here while the previous P V runs,
  // ptxas would serialise the MMAs, C7513); the masked scores and probabilities live in `x`.
  const auto softmax_tile = [&](const float(&sc)[1][32], int i, uint32_t(&pa)[4][4], float& a0,
                                float& a1) {
    float x[32];
#pragma unroll
    for (int e = 0; e < 32; ++e) {
      x[e] = sc[0][e];
    }
    // Keys first + c: visible below key_end and up to the row (the query block's own keys). Rows
    // past the item keep finite scores; the combine never reads their slot rows.
    const auto score = [&](int nt, int e) -> float& { return x[nt * 4 + e]; };
    const int first = it.key_begin + 64 * i;
    if (first + 64 > it.key_end || first + 63 > it.row_begin) {
      attention_rows::mask_columns(score, valid0 ? min(it.key_end - 1, row0) - first - 2 * t4 : -1,
                                   valid1 ? min(it.key_end - 1, row1) - first - 2 * t4 : -1);
    }
    const float2 alpha = attention_rows::online_softmax_tile(score, m0, m1, l0, l1, scale_log2);
    a0 = alpha.x;
    a1 = alpha.y;
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      const float* y = &x[8 * kk];
      pa[kk][0] = pack_bf16x2(y[0], y[1]);
      pa[kk][1] = pack_bf16x2(y[2], y[3]);
      pa[kk][2] = pack_bf16x2(y[4], y[5]);
      pa[kk][3] = pack_bf16x2(y[6], y[7]);
    }
  };
  // O *= (a0, a1) per row: before tile i's P V, and before any MMA is issued in between (else
  // ptxas serialises the MMAs around the multiplies, C7513).
  const auto rescale_o = [&](int i, float a0, float a1) {
    if (i > 0) {
#pragma unroll
      for (int dt = 0; dt < kD / 8; ++dt) {
        o[dt * 4] *= a0;
        o[dt * 4 + 1] *= a0;
        o[dt * 4 + 2] *= a1;
        o[dt * 4 + 3] *= a1;
      }
    }
  };
  // O += P V of tile i (its stage's V), issued and committed.
  const auto issue_tile_pv = [&](int i, const uint32_t(&pa)[4][4]) {
    issue_pv_acc(o, pa, base + (i % kPieceStages) * 2 * kTileBytes + kTileBytes, i > 0);
  };
  // After the wait for tile i's P V: pins its operands, releases its stage.
  const auto finish_tile_pv = [&](int i, uint32_t(&pa)[4][4]) {
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        fence_operand(pa[kk][e]);
      }
    }
#pragma unroll
    for (int e = 0; e < 64; ++e) {
      fence_operand(o[e]);
    }
    warpgroup_sync(w);  // every thread's MMAs on this stage are done
    if (tid == 0) {
      mbar_arrive(&empty[i % kPieceStages]);
    }
  };
  mbar_wait(&q_full[w], 0);
  float sc[1][32];
  // P (and O's scale factors) of the tile whose P V is next and of the tile after it: two sets
  // used alternately (the loop runs two tiles per trip). Copying one into the other after each
  // tile let the compiler give both the same registers, so the softmax wrote the operands of the
  // P V still running and ptxas serialised them (C7513).
  uint32_t pa[4][4], pb[4][4];
  float a0, a1, b0, b1;
  // S of tile 0 alone; then per tile i >= 1 (FA3's intra-warpgroup overlap): S of tile i and
  // P V of tile i - 1 issued together, tile i's softmax while that P V runs, then its wait.
  mbar_wait(&full[0], 0);
  issue_s<1>(sc, q_s, base);
  wgmma_wait<0>();
  fence_s<1>(sc);
  softmax_tile(sc, 0, pa, a0, a1);
  const auto step = [&](int i, uint32_t(&prev)[4][4], float p0, float p1, uint32_t(&next)[4][4],
                        float& n0, float& n1) {
    const int st = i % kPieceStages;
    mbar_wait(&full[st], (i / kPieceStages) & 1);
    rescale_o(i - 1, p0, p1);
    issue_s<1>(sc, q_s, base + st * 2 * kTileBytes);
    issue_tile_pv(i - 1, prev);
    wgmma_wait<1>();  // S of tile i (committed first) has landed
    fence_s<1>(sc);
    softmax_tile(sc, i, next, n0, n1);
    wgmma_wait<0>();  // P V of tile i - 1
    finish_tile_pv(i - 1, prev);
  };
  // The last tile's P V alone.
  const auto last = [&](uint32_t(&pl)[4][4], float f0, float f1) {
    rescale_o(num_tiles - 1, f0, f1);
    issue_tile_pv(num_tiles - 1, pl);
    wgmma_wait<0>();
    finish_tile_pv(num_tiles - 1, pl);
  };
  int i = 1;
  for (; i + 1 < num_tiles; i += 2) {
    step(i, pa, a0, a1, pb, b0, b1);
    step(i + 1, pb, b0, b1, pa, a0, a1);
  }
  if (i < num_tiles) {  // an even tile count: one more, its P in pb
    step(i, pa, a0, a1, pb, b0, b1);
    last(pb, b0, b1);
  } else {
    last(pa, a0, a1);
  }
  // The item's partial slot (it.partial >= 0): unnormalised O and (max in log2 units, sum).
  attention_rows::write<kD>(p, it, head, lr0, t4, l0, l1, m0, m1, scale_log2,
                            [&](int dt, int e) { return o[dt * 4 + e]; });
}

// 2-D bf16 tensor map over rows of `cols` elements `row_stride` apart, 64 x 64 boxes (one panel
// of a Q, K or V tile).
bool make_attention_map(CUtensorMap* map,
                        const void* ptr,
                        int64_t rows,
                        int64_t cols,
                        int64_t row_stride,
                        uint32_t box_rows = 64) {
  return sm90::encode_bf16_map(map, ptr, static_cast<uint64_t>(rows), static_cast<uint64_t>(cols),
                               static_cast<uint64_t>(row_stride), box_rows);
}

}  // namespace

bool block_attention_sm90_supported(int device) {
  int major = 0, minor = 0;
  return cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
         cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) == cudaSuccess &&
         major == 9 && minor == 0;
}

cudaError_t block_attention_grouped_sm90(const BlockAttentionParams& p, cudaStream_t stream) {
  if (p.head_dim != kD || p.num_heads <= 0 || p.num_kv_heads <= 0 ||
      p.num_heads % p.num_kv_heads != 0 || p.num_streamed_items < 0 ||
      p.num_streamed_items > p.num_items || !(p.scale > 0.f)) {
    return cudaErrorInvalidValue;
  }
  const int64_t units = static_cast<int64_t>(p.num_items - p.num_streamed_items) * p.num_kv_heads;
  if (units == 0) {
    return cudaSuccess;
  }
  if (p.wgmma_grouped != 3 || p.q_head_stride != kD || p.k_head_stride != kD ||
      p.v_head_stride != kD || p.q_row_stride % 8 != 0 || p.k_row_stride % 8 != 0 ||
      p.v_row_stride % 8 != 0 || p.out_row_stride % 8 != 0 || p.out_head_stride % 8 != 0 ||
      reinterpret_cast<uintptr_t>(p.out) % 16 != 0) {  // 16-byte output stores (PendingOut)
    return cudaErrorInvalidValue;
  }
  CUtensorMap map_q, map_k, map_v;
  if (!make_attention_map(&map_q, p.q, p.num_tokens, int64_t{p.num_heads} * kD, p.q_row_stride) ||
      !make_attention_map(&map_k, p.k, p.num_tokens, int64_t{p.num_kv_heads} * kD,
                          p.k_row_stride) ||
      !make_attention_map(&map_v, p.v, p.num_tokens, int64_t{p.num_kv_heads} * kD,
                          p.v_row_stride)) {
    return cudaErrorInvalidValue;
  }
  int device = 0, sms = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err == cudaSuccess) {
    err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  }
  if (err == cudaSuccess) {
    err = cudaFuncSetAttribute(blockrank_attention_tma_kernel,
                               cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(kTmaSmem));
  }
  if (err != cudaSuccess) {
    return err;
  }
  const int64_t grid = units < sms ? units : sms;
  blockrank_attention_tma_kernel<<<static_cast<unsigned>(grid), kTmaThreads, kTmaSmem, stream>>>(
      p, map_q, map_k, map_v);
  return cudaGetLastError();
}

cudaError_t block_attention_pieces_sm90(const BlockAttentionParams& p, cudaStream_t stream) {
  if (p.head_dim != kD || p.num_kv_heads <= 0 || p.num_heads != kPieceGroup * p.num_kv_heads ||
      p.num_streamed_items < 0 || p.num_streamed_items > p.num_items || !(p.scale > 0.f) ||
      p.q_head_stride != kD || p.k_head_stride != kD || p.v_head_stride != kD ||
      p.q_row_stride % 8 != 0 || p.k_row_stride % 8 != 0 || p.v_row_stride % 8 != 0 ||
      p.partial_out == nullptr || p.partial_ml == nullptr) {
    return cudaErrorInvalidValue;
  }
  const int64_t ctas = static_cast<int64_t>(p.num_streamed_items) * p.num_kv_heads;
  if (ctas == 0) {
    return cudaSuccess;
  }
  CUtensorMap map_q32, map_k, map_v;
  if (!make_attention_map(&map_q32, p.q, p.num_tokens, int64_t{p.num_heads} * kD, p.q_row_stride,
                          32) ||
      !make_attention_map(&map_k, p.k, p.num_tokens, int64_t{p.num_kv_heads} * kD,
                          p.k_row_stride) ||
      !make_attention_map(&map_v, p.v, p.num_tokens, int64_t{p.num_kv_heads} * kD,
                          p.v_row_stride)) {
    return cudaErrorInvalidValue;
  }
  const cudaError_t err = cudaFuncSetAttribute(blockrank_attention_pieces_kernel,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(kPieceSmem));
  if (err != cudaSuccess) {
    return err;
  }
  blockrank_attention_pieces_kernel<<<static_cast<unsigned>(ctas), kPieceThreads, kPieceSmem,
                                      stream>>>(p, map_q32, map_k, map_v);
  return cudaGetLastError();
}

}  // namespace kernels
}  // namespace blockrank
