// SPDX-License-Identifier: Apache-2.0
// Fused BlockRank document scoring; see doc_scores.cuh. The work is tiny next to the layers below
// l* (R = 2 rows against T_docs keys: ~1 GFLOP at 64k tokens for Mistral-7B), so the kernels use
// plain fp32 FMAs: one thread per key and KV head, K read with 16-byte loads, the signal rows
// broadcast from shared memory. Logits are in base-2 units (scale * log2 e) so exp2f is the only
// transcendental.
#include <cmath>
#include <cstdint>

#include <cuda_bf16.h>

#include "kernels/doc_scores.cuh"

namespace blockrank {
namespace kernels {
namespace {

constexpr int kThreads = 128;
// One key per thread and CTA: Mistral-7B at N = 100 gives 100 x Hkv = 800 CTAs per pass (512 keys
// per CTA and pass 2 looping over the KV heads left it at 25 CTAs and ~0.5 ms).
constexpr int kKeysPerCta = kThreads;
constexpr float kLog2e = 1.4426950408889634f;

int num_splits(int32_t num_doc_tokens) {
  return (num_doc_tokens + kKeysPerCta - 1) / kKeysPerCta;
}

// Signal rows per chunk: a CTA of passes 1 and 2 holds at most kDocScoreMaxPairs (head, row) pairs
// of its KV group, i.e. the group's heads times one chunk of the rows (grid dimension z).
__host__ __device__ inline int rows_per_chunk(int num_rows, int group) {
  return num_rows < kDocScoreMaxPairs / group ? num_rows : kDocScoreMaxPairs / group;
}
int num_chunks(int num_rows, int group) {
  const int rc = rows_per_chunk(num_rows, group);
  return (num_rows + rc - 1) / rc;
}

// The pairs of one CTA: the KV group's heads x rows [row_begin, row_begin + rows); local pair i is
// (head_begin + i / rows, row_begin + i % rows), global pair (head * R + row) indexes the (max,
// sum) partials and the log-sum-exps.
struct PairRange {
  int head_begin, row_begin, rows, count;
  __device__ int global(const DocScoreParams& p, int i) const {
    return (head_begin + i / rows) * p.num_rows + row_begin + i % rows;
  }
};

__device__ PairRange chunk_pairs(const DocScoreParams& p, int kv_head, int chunk) {
  const int group = p.num_heads / p.num_kv_heads;
  const int rc = rows_per_chunk(p.num_rows, group);
  PairRange r;
  r.head_begin = kv_head * group;
  r.row_begin = chunk * rc;
  r.rows = min(rc, p.num_rows - r.row_begin);
  r.count = group * r.rows;
  return r;
}

// (max, sum of 2^(x - max)) merge; -inf maxima carry no mass.
__device__ __forceinline__ void merge_ml(float& m, float& l, float m2, float l2) {
  const float mx = fmaxf(m, m2);
  if (mx == -INFINITY) {
    return;
  }
  l = l * exp2f(m - mx) + l2 * exp2f(m2 - mx);
  m = mx;
}

// acc[pair] = q_pair · k_row for `pairs` (<= P) rows of q (fp32 in shared memory, D apart). P, the
// register arrays' size, is the smallest of 8 / 16 / 32 that holds a CTA's pairs: with 32 always,
// pass 1 took 164 registers, 3 CTAs per SM and three rounds for Mistral N = 100's 800 CTAs.
template <int D, int P>
__device__ __forceinline__ void dot_rows(const __nv_bfloat16* k_row,
                                         const float* q_smem,
                                         int pairs,
                                         float (&acc)[P]) {
#pragma unroll
  for (int i = 0; i < P; ++i) {
    acc[i] = 0.f;
  }
#pragma unroll 2
  for (int c = 0; c < D; c += 8) {
    const uint4 raw = *reinterpret_cast<const uint4*>(k_row + c);
    const __nv_bfloat162* h2 = reinterpret_cast<const __nv_bfloat162*>(&raw);
    float kf[8];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float2 f = __bfloat1622float2(h2[j]);
      kf[2 * j] = f.x;
      kf[2 * j + 1] = f.y;
    }
#pragma unroll
    for (int i = 0; i < P; ++i) {
      if (i < pairs) {
        const float* qp = q_smem + i * D + c;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          acc[i] = fmaf(qp[j], kf[j], acc[i]);
        }
      }
    }
  }
}

// Loads the q rows of the CTA's pairs as fp32 [pairs.count, D] (local pair order), pre-multiplied
// by scale * log2 e. 16-byte loads where q allows them.
template <int D>
__device__ void load_q(const DocScoreParams& p, const PairRange& pairs, float* q_smem) {
  const auto* q = static_cast<const __nv_bfloat16*>(p.q);
  const float s = p.scale * kLog2e;
  if (reinterpret_cast<uintptr_t>(q) % 16 == 0 && p.q_row_stride % 8 == 0 &&
      p.q_head_stride % 8 == 0) {
    for (int i = threadIdx.x; i < pairs.count * (D / 8); i += blockDim.x) {
      const int pair = i / (D / 8), d = (i % (D / 8)) * 8;
      const int h = pairs.head_begin + pair / pairs.rows, r = pairs.row_begin + pair % pairs.rows;
      const uint4 raw =
          *reinterpret_cast<const uint4*>(q + r * p.q_row_stride + h * p.q_head_stride + d);
      const __nv_bfloat162* h2 = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float2 f = __bfloat1622float2(h2[j]);
        q_smem[pair * D + d + 2 * j] = f.x * s;
        q_smem[pair * D + d + 2 * j + 1] = f.y * s;
      }
    }
    return;
  }
  for (int i = threadIdx.x; i < pairs.count * D; i += blockDim.x) {
    const int pair = i / D, d = i % D;
    const int h = pairs.head_begin + pair / pairs.rows, r = pairs.row_begin + pair % pairs.rows;
    q_smem[i] = __bfloat162float(q[r * p.q_row_stride + h * p.q_head_stride + d]) * s;
  }
}

// Pass 1: grid (splits, Hkv, row chunks). Per (head, row) pair of the KV group and row chunk,
// (max, sum) over the CTA's keys.
template <int D, int P>
__global__ void __launch_bounds__(kThreads) blockrank_doc_scores_pass1(const DocScoreParams p) {
  __shared__ float q_smem[P * D];
  __shared__ float red[kThreads / 32][P][2];
  const int split = blockIdx.x, kv_head = blockIdx.y;
  const PairRange range = chunk_pairs(p, kv_head, blockIdx.z);
  const int pairs = range.count;
  load_q<D>(p, range, q_smem);
  __syncthreads();
  float m[P], l[P], acc[P];
#pragma unroll
  for (int i = 0; i < P; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.f;
  }
  const auto* k = static_cast<const __nv_bfloat16*>(p.k);
  const int end = min(p.num_doc_tokens, (split + 1) * kKeysPerCta);
  for (int j = split * kKeysPerCta + threadIdx.x; j < end; j += kThreads) {
    dot_rows<D, P>(k + j * p.k_row_stride + kv_head * p.k_head_stride, q_smem, pairs, acc);
#pragma unroll
    for (int i = 0; i < P; ++i) {
      if (i < pairs) {
        merge_ml(m[i], l[i], acc[i], 1.f);
      }
    }
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int i = 0; i < P; ++i) {
    if (i < pairs) {
      for (int off = 16; off > 0; off >>= 1) {
        merge_ml(m[i], l[i], __shfl_xor_sync(0xffffffffu, m[i], off),
                 __shfl_xor_sync(0xffffffffu, l[i], off));
      }
      if (lane == 0) {
        red[warp][i][0] = m[i];
        red[warp][i][1] = l[i];
      }
    }
  }
  __syncthreads();
  if (threadIdx.x < pairs) {
    const int i = threadIdx.x;
    float mm = -INFINITY, ll = 0.f;
    for (int w = 0; w < kThreads / 32; ++w) {
      merge_ml(mm, ll, red[w][i][0], red[w][i][1]);
    }
    // Workspace [Hq * R pairs][splits][2], pair = head * R + row.
    const int pair = range.global(p, i);
    float* ws = p.workspace + (static_cast<int64_t>(pair) * gridDim.x + split) * 2;
    ws[0] = mm;
    ws[1] = ll;
  }
}

// Combine: one warp per (head, row) pair: lse (base 2) over all splits, after the partials. Lane k
// merges splits k, k + 32, ..., then the warp merges its lanes (a fixed order; one thread walking
// all splits was a chain of ~100 dependent loads, 17 us at Mistral N = 100).
constexpr int kLseWarpsPerCta = 4;
__global__ void __launch_bounds__(32 * kLseWarpsPerCta)
    blockrank_doc_scores_lse(const DocScoreParams p, int splits) {
  const int pair = blockIdx.x * kLseWarpsPerCta + threadIdx.x / 32, lane = threadIdx.x % 32;
  const int pairs = p.num_heads * p.num_rows;
  if (pair >= pairs) {
    return;
  }
  float m = -INFINITY, l = 0.f;
  for (int s = lane; s < splits; s += 32) {
    const float2 ml = *reinterpret_cast<const float2*>(
        p.workspace + (static_cast<int64_t>(pair) * splits + s) * 2);
    merge_ml(m, l, ml.x, ml.y);
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    merge_ml(m, l, __shfl_xor_sync(0xffffffffu, m, off), __shfl_xor_sync(0xffffffffu, l, off));
  }
  if (lane == 0) {
    p.workspace[static_cast<int64_t>(pairs) * splits * 2 + pair] = m + log2f(l);
  }
}

// Pass 2: grid (splits, Hkv, row chunks). token[chunk][kv][j] = Σ over the KV group's pairs of
// the chunk of 2^(logit - lse).
template <int D, int P>
__global__ void __launch_bounds__(kThreads)
    blockrank_doc_scores_pass2(const DocScoreParams p, int splits) {
  __shared__ float q_smem[P * D];
  __shared__ float lse[P];
  const int kv_head = blockIdx.y;
  const PairRange range = chunk_pairs(p, kv_head, blockIdx.z);
  const int pairs = range.count, all_pairs = p.num_heads * p.num_rows;
  load_q<D>(p, range, q_smem);
  const float* lse_g = p.workspace + static_cast<int64_t>(all_pairs) * splits * 2;
  if (static_cast<int>(threadIdx.x) < pairs) {
    lse[threadIdx.x] = lse_g[range.global(p, threadIdx.x)];
  }
  __syncthreads();
  float* token = p.workspace + static_cast<int64_t>(all_pairs) * splits * 2 + all_pairs +
                 (static_cast<int64_t>(blockIdx.z) * p.num_kv_heads + kv_head) * p.num_doc_tokens;
  const auto* k = static_cast<const __nv_bfloat16*>(p.k);
  const int end = min(p.num_doc_tokens, (blockIdx.x + 1) * kKeysPerCta);
  float acc[P];
  for (int j = blockIdx.x * kKeysPerCta + threadIdx.x; j < end; j += kThreads) {
    dot_rows<D, P>(k + j * p.k_row_stride + kv_head * p.k_head_stride, q_smem, pairs, acc);
    float total = 0.f;
#pragma unroll
    for (int i = 0; i < P; ++i) {
      if (i < pairs) {
        total += exp2f(acc[i] - lse[i]);
      }
    }
    token[j] = total;
  }
}

// Pass 3: one warp per document sums its tokens over the row chunks and KV heads, divided by the
// pair count.
__global__ void blockrank_doc_scores_pass3(const DocScoreParams p, int splits, int chunks) {
  const int doc = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (doc >= p.num_docs) {
    return;
  }
  const int pairs = p.num_heads * p.num_rows;
  const float* token = p.workspace + static_cast<int64_t>(pairs) * splits * 2 + pairs;
  float s = 0.f;
  for (int plane = 0; plane < chunks * p.num_kv_heads; ++plane) {  // (row chunk, KV head)
    const float* t = token + static_cast<int64_t>(plane) * p.num_doc_tokens;
    for (int j = p.doc_offsets[doc] + lane; j < p.doc_offsets[doc + 1]; j += 32) {
      s += t[j];
    }
  }
  for (int off = 16; off > 0; off >>= 1) {
    s += __shfl_xor_sync(0xffffffffu, s, off);
  }
  if (lane == 0) {
    p.scores[doc] = s / static_cast<float>(pairs);
  }
}

template <int D, int P>
cudaError_t launch(const DocScoreParams& p, cudaStream_t stream) {
  const int splits = num_splits(p.num_doc_tokens);
  const int pairs = p.num_heads * p.num_rows;
  const int chunks = num_chunks(p.num_rows, p.num_heads / p.num_kv_heads);
  const dim3 grid(static_cast<unsigned>(splits), static_cast<unsigned>(p.num_kv_heads),
                  static_cast<unsigned>(chunks));
  blockrank_doc_scores_pass1<D, P><<<grid, kThreads, 0, stream>>>(p);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    return err;
  }
  blockrank_doc_scores_lse<<<(pairs + kLseWarpsPerCta - 1) / kLseWarpsPerCta, 32 * kLseWarpsPerCta,
                             0, stream>>>(p, splits);
  if ((err = cudaGetLastError()) != cudaSuccess) {
    return err;
  }
  blockrank_doc_scores_pass2<D, P><<<grid, kThreads, 0, stream>>>(p, splits);
  if ((err = cudaGetLastError()) != cudaSuccess) {
    return err;
  }
  blockrank_doc_scores_pass3<<<(p.num_docs + 3) / 4, 128, 0, stream>>>(p, splits, chunks);
  return cudaGetLastError();
}

// launch<D, P> with P the smallest of 8 / 16 / 32 that holds `cta_pairs`.
template <int D>
cudaError_t launch_sized(const DocScoreParams& p, int cta_pairs, cudaStream_t stream) {
  static_assert(kDocScoreMaxPairs == 32, "the sizes below");
  return cta_pairs <= 8    ? launch<D, 8>(p, stream)
         : cta_pairs <= 16 ? launch<D, 16>(p, stream)
                           : launch<D, 32>(p, stream);
}

}  // namespace

size_t doc_scores_workspace_floats(int32_t num_doc_tokens,
                                   int32_t num_rows,
                                   int32_t num_heads,
                                   int32_t num_kv_heads) {
  const size_t pairs = static_cast<size_t>(num_rows) * static_cast<size_t>(num_heads);
  const int group = num_kv_heads > 0 ? num_heads / num_kv_heads : 0;
  const size_t chunks =
      num_rows > 0 && group >= 1 && group <= kDocScoreMaxPairs ? num_chunks(num_rows, group) : 1;
  return pairs * static_cast<size_t>(num_splits(num_doc_tokens)) * 2 + pairs +
         chunks * static_cast<size_t>(num_kv_heads) * static_cast<size_t>(num_doc_tokens);
}

cudaError_t document_scores(const DocScoreParams& p, cudaStream_t stream) {
  if (p.num_docs <= 0 || p.num_doc_tokens <= 0 || p.num_rows <= 0 || p.num_kv_heads <= 0 ||
      p.num_heads % p.num_kv_heads != 0 || p.num_heads / p.num_kv_heads > kDocScoreMaxPairs ||
      num_chunks(p.num_rows, p.num_heads / p.num_kv_heads) > 65535) {
    return cudaErrorInvalidValue;
  }
  // Pairs per CTA of passes 1 and 2 pick the register arrays' size (dot_rows).
  const int group = p.num_heads / p.num_kv_heads;
  const int cta_pairs = group * rows_per_chunk(p.num_rows, group);
  switch (p.head_dim) {
    case 64:
      return launch_sized<64>(p, cta_pairs, stream);
    case 128:
      return launch_sized<128>(p, cta_pairs, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace kernels
}  // namespace blockrank
