// SPDX-License-Identifier: Apache-2.0
// The glue between the Ranker and the instruction-prefix KV cache store (ranker/kv_cache, issue 6):
// the model fingerprint, K/V tensors <-> cache payloads (device tensors stay on the device in the
// memory tier; disk values are uploaded through KvCacheOptions::memory_allocator), the choice of
// how much of a hit to use, and a background writer so that puts (RocksDB writes, device-to-host
// copies) stay off the request path. Internal header (ATen types); ranker.h exposes only options
// and stats.
//
// Thread-safety: every method may be called concurrently.
#ifndef BLOCKRANK_RANKER_CORE_PREFIX_CACHE_H_
#define BLOCKRANK_RANKER_CORE_PREFIX_CACHE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include "blockrank/status.h"
#include "ranker/core/model.h"
#include "ranker/kv_cache/kv_cache.h"

namespace blockrank::internal {

/// Counters of the ranker side of the cache (the store counts lookups, hits and bytes itself).
struct PrefixCacheCounters {
  uint64_t prefix_tokens = 0;  ///< Block-0 tokens of the scored prompts.
  uint64_t reused_tokens = 0;  ///< Of those, tokens whose K/V came from the cache.
  uint64_t puts_queued = 0;
  uint64_t puts_dropped = 0;  ///< The writer queue was full: the entry was not stored.
  uint64_t put_errors = 0;    ///< KvCache::put refused an entry (logged).
};

/// What lookup() decided for one prompt.
struct PrefixLookup {
  /// K/V of block 0's first `past.size(3)` tokens on the model's device, or undefined.
  at::Tensor past;
  /// Keeps the bytes `past` views alive (a host payload viewed in place).
  std::shared_ptr<const KvPayload> holder;
};

/// The fingerprint of `model` scoring at `layer` (K/V of layers 0..layer-1 are stored). Besides the
/// architecture, weights and tokenizer digests, dtype and shapes, position_scheme carries rope
/// theta, the BlockRank position convention, the device type and the forward path (the fused
/// CUDA loop and the ATen loop round differently), so values are only reused by the code that
/// computes them bit for bit.
KvModelFingerprint make_kv_fingerprint(const Model& model,
                                       int64_t layer,
                                       const std::string& tokenizer_digest,
                                       bool fused_path);

class PrefixCache {
 public:
  /// Opens the store (KvCache::open's errors: kInvalidArgument for bad options; disk problems
  /// degrade to memory only) with a device memory tier when `device` is CUDA, and starts the
  /// writer thread. `queue_capacity` puts may wait; more are dropped and counted.
  static Status open(KvCacheOptions options,
                     KvModelFingerprint fingerprint,
                     c10::Device device,
                     c10::ScalarType dtype,
                     size_t queue_capacity,
                     std::unique_ptr<PrefixCache>* out);

  /// Finishes the queued puts, then closes the store.
  ~PrefixCache();
  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;

  /// Looks up block 0's `tokens` and keeps the longest usable part of a hit: all of them, or the
  /// first `split` tokens (a row-group boundary, see PrefixKv); a hit ending elsewhere is cut
  /// back to `split` (or ignored below it), so that the scores stay bitwise equal to an uncached
  /// run. Never fails for cache reasons.
  Status lookup(const std::vector<int32_t>& tokens, int64_t split, PrefixLookup* out);

  /// Queues `kv` ([layers, 2, Hkv, tokens.size(), D], contiguous, not modified afterwards) for
  /// storing under `tokens`. Returns at once; drops the put when the queue is full.
  void put_async(std::vector<int32_t> tokens, at::Tensor kv);

  /// Blocks until every queued put has been written (tests, benchmarks).
  void flush();

  /// Block-aligned length of `num_tokens` (the store's block size).
  int64_t block_aligned_length(int64_t num_tokens) const;

  KvCacheStats store_stats() const;
  PrefixCacheCounters counters() const;
  Status disk_status() const;
  const KvModelFingerprint& fingerprint() const;
  /// Drops every entry (tests, benchmarks).
  Status clear();

 private:
  PrefixCache();
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace blockrank::internal

#endif  // BLOCKRANK_RANKER_CORE_PREFIX_CACHE_H_
