// SPDX-License-Identifier: Apache-2.0
// Instruction-prefix KV cache (issue 6, storage half): stores the per-layer K and V that the ranker
// computed for a prompt prefix, so a later request that starts with the same tokens skips that part
// of the forward pass. Two tiers: an LRU in memory (byte budget) in front of a RocksDB store on
// disk (its own byte budget, LRU eviction, survives restarts). No LibTorch here: a value is a typed
// header plus opaque bytes (KvPayload), so the model code hands in its tensors' bytes, or a payload
// subclass that wraps a device buffer.
//
// Keys are a hash chain over fixed-size token blocks, as in vLLM's automatic prefix caching and
// LMCache (docs/ANCHORS.md section 3): h_0 = SHA-256(model fingerprint), h_i = SHA-256(h_{i-1} ||
// tokens of block i). An entry of n tokens is stored under h_{n/B} when B divides n, else under an
// "exact" key SHA-256(h_{n/B} || the n mod B tail tokens). lookup(tokens) probes the exact key of
// all of `tokens`, then h_m, h_{m-1}, ..., h_1, and returns the longest entry it finds. So a prefix
// stored at a block boundary (the fixed instruction text, cut down to a multiple of B) hits for
// every prompt that starts with it, and a whole prefix stored as is (instruction + query) hits when
// the same prompt comes again. Each entry holds the K/V of all its tokens (one read per hit, no
// gather across blocks); kv_cache.cc says why entries are per prefix, not per block.
//
// How the ranker uses it (ranker/core/prefix_cache.h and Ranker::score; per request, prefix =
// the prompt tokens before the first document block, K/V of layers 0..l*-1: at l* the scorer
// takes only Q of the signal rows and K of the documents, so block 0's K/V there is never used):
//   1. lookup(fp, prefix, &r). r.num_tokens == prefix.size(): skip the prefix forward and use
//      r.value as past K/V. 0 < r.num_tokens < prefix.size(): run the prefix forward only for
//      tokens [r.num_tokens, n) with r.value as past K/V. Miss: run it all.
//   2. After computing, put(fp, prefix, all K/V), and once per instruction text
//      put(fp, first block_aligned_length(instruction length) tokens, that slice of the K/V),
//      so new queries hit the instruction part.
// The payload layout is fixed (see KvTensorHeader): the first t tokens of a stored value are
// narrow(/*dim=*/3, 0, t).contiguous() of its [layers, 2, heads, tokens, dim] tensor; causal
// attention makes them equal to the K/V of those t tokens alone.
//
// Failure model: a cache miss is a value, not an error. A corrupt, truncated or mismatched entry on
// disk is dropped and reported as a miss (warning + stats().corruptions). If RocksDB cannot be
// opened (bad path, LOCK held by another process) or fails later (I/O error), the cache keeps
// working with the memory tier only and says why in disk_status().
//
// Thread-safety: every method of KvCache may be called concurrently from any number of threads.
// Payloads are immutable and shared: a payload returned by lookup() stays valid for as long as the
// caller holds it, even after the cache evicts or clears the entry.
#ifndef BLOCKRANK_RANKER_KV_CACHE_KV_CACHE_H_
#define BLOCKRANK_RANKER_KV_CACHE_KV_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "blockrank/status.h"
#include "plugin/base/logging.h"

namespace blockrank {

/// Element type of the stored K/V. The values are stable: they are written into stored headers.
enum class KvDtype : uint8_t { kFloat32 = 1, kFloat16 = 2, kBFloat16 = 3 };

/// Bytes per element of `dtype` (0 for an unknown value).
size_t kv_dtype_size(KvDtype dtype);
/// "float32", "float16", "bfloat16" (or "unknown").
const char* kv_dtype_name(KvDtype dtype);

/// Everything that changes the K/V computed for a given token sequence. It seeds the key chain, so
/// changing any field (new weights, another dtype, another l*) makes every old entry unreachable:
/// a stale entry can never be hit. Old entries then age out through LRU eviction.
struct KvModelFingerprint {
  /// Model architecture name, e.g. "Qwen2ForCausalLM".
  std::string architecture;
  /// Digest of the weights, e.g. SHA-256 of the safetensors files (or of their index + sizes).
  std::string weights_digest;
  /// Digest of tokenizer.json (the tokenizer's own content digest).
  std::string tokenizer_digest;
  /// Position scheme and anything else the forward pass depends on, e.g.
  /// "rope;theta=1000000;blockrank-positions=v1".
  std::string position_scheme;
  /// Element type of the stored K/V.
  KvDtype dtype = KvDtype::kBFloat16;
  /// Number of layers whose K/V is stored: layers 0..num_layers-1 (l* + 1 for BlockRank).
  int32_t num_layers = 0;
  /// K/V heads per layer (GQA groups), e.g. 2 for Qwen2.5-0.5B, 8 for Mistral-7B.
  int32_t num_kv_heads = 0;
  /// Dimension of one head, e.g. 64 for Qwen2.5-0.5B, 128 for Mistral-7B.
  int32_t head_dim = 0;
  /// Optional isolation salt (tenant, experiment), like vLLM's cache_salt. Default: "".
  std::string salt;

  /// kInvalidArgument when a size is not positive or architecture/weights_digest is empty.
  Status validate() const;
  /// Bytes of K+V for one token: num_layers * 2 * num_kv_heads * head_dim * dtype size.
  uint64_t bytes_per_token() const;
};

/// Shape of one stored value. The payload layout is row-major
/// [layer][k=0,v=1][kv_head][token][head_dim] of `dtype`, little-endian; the cache checks only
/// that the payload has exactly the bytes this shape needs, the layout is the model code's
/// contract.
struct KvTensorHeader {
  KvDtype dtype = KvDtype::kBFloat16;
  int32_t num_layers = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t num_tokens = 0;
  /// Bytes the payload must have for this shape.
  uint64_t payload_bytes() const;
};

/// The bytes of one value, immutable once built. Subclass it to hand the cache memory you own
/// (a tensor's storage, a device buffer) without copying; size() is what the memory budget counts.
class KvPayload {
 public:
  virtual ~KvPayload() = default;
  /// Number of bytes.
  virtual size_t size() const = 0;
  /// The bytes in host memory, or nullptr when they live elsewhere (device memory).
  virtual const uint8_t* host_data() const = 0;
  /// Copies the bytes to host memory `dst` (size() bytes); used to write to disk when host_data()
  /// is nullptr. The default copies from host_data().
  virtual Status copy_to_host(uint8_t* dst) const;

  /// A payload owning `bytes` in host memory.
  static std::shared_ptr<const KvPayload> from_host(std::string bytes);
  /// A payload owning a copy of `size` bytes at `data`.
  static std::shared_ptr<const KvPayload> copy_from_host(const void* data, size_t size);
};

/// Turns a value read from disk (host bytes, valid only during the call) into the payload the
/// memory tier will hold, e.g. an upload to a device buffer. It may fail (out of device memory):
/// the lookup is then a miss and the disk entry is kept.
using KvPayloadAllocator = std::function<Status(
    const uint8_t* host_bytes, size_t size, std::shared_ptr<const KvPayload>*)>;

/// One cached value.
struct KvValue {
  KvTensorHeader header;
  std::shared_ptr<const KvPayload> payload;
};

/// Where a lookup was served from.
enum class KvTier { kNone = 0, kMemory = 1, kDisk = 2 };

/// What lookup() found: the longest cached prefix of the tokens, or nothing.
struct KvLookupResult {
  /// Length of the cached prefix in tokens: 0 on a miss, else a multiple of the block size or the
  /// full length of the looked-up tokens.
  int32_t num_tokens = 0;
  KvTier tier = KvTier::kNone;
  /// The K/V of tokens [0, num_tokens); header.num_tokens == num_tokens. Empty on a miss.
  KvValue value;
  bool hit() const { return num_tokens > 0; }
};

/// Counters since open() plus the current sizes of both tiers; a snapshot, read without locks
/// (counters may be mutually a few operations apart under concurrent use).
struct KvCacheStats {
  uint64_t lookups = 0;
  uint64_t memory_hits = 0;    ///< Lookups served from the memory tier.
  uint64_t disk_hits = 0;      ///< Lookups served from disk (the value is then promoted).
  uint64_t misses = 0;         ///< Lookups that found no prefix at all.
  uint64_t lookup_tokens = 0;  ///< Tokens asked for, summed over lookups.
  uint64_t hit_tokens = 0;     ///< Tokens served from the cache, summed over lookups.
  uint64_t puts = 0;
  uint64_t bytes_stored = 0;  ///< Payload bytes written to the disk tier.
  uint64_t bytes_read = 0;    ///< Payload bytes read from the disk tier.
  uint64_t memory_evictions = 0;
  uint64_t disk_evictions = 0;
  uint64_t corruptions = 0;  ///< Corrupt, truncated or mismatched disk entries dropped.
  uint64_t disk_errors = 0;  ///< RocksDB failures (each one logged as a warning).
  uint64_t memory_entries = 0;
  uint64_t memory_bytes = 0;  ///< Payload bytes held by the memory tier.
  uint64_t disk_entries = 0;
  uint64_t disk_bytes = 0;  ///< Stored value bytes (header + payload) in the disk tier.
  /// Bytes of RocksDB's live SST and blob files: above disk_bytes until compaction has reclaimed
  /// deleted values.
  uint64_t disk_file_bytes = 0;
  bool disk_enabled = false;
};

/// Options read once by KvCache::open().
struct KvCacheOptions {
  /// Directory of the RocksDB store; empty means memory tier only. Default: "".
  std::string disk_path;
  /// Byte budget of the memory tier (payload bytes); 0 disables the tier. A value larger than the
  /// budget is not kept in memory. Default: 1 GiB.
  uint64_t memory_budget_bytes = uint64_t{1} << 30;
  /// Byte budget of the disk tier (stored value bytes); LRU entries are deleted past it. RocksDB
  /// reclaims the space of deleted blobs during compaction, so the directory can run somewhat over
  /// this between compactions. Default: 16 GiB.
  uint64_t disk_budget_bytes = uint64_t{16} << 30;
  /// Tokens per block of the key chain. Changing it makes old entries unreachable. Default: 16
  /// (vLLM's default block size).
  int32_t block_size = 16;
  /// Create disk_path when it does not exist (the CLI turns this off to inspect a store).
  /// Default: true.
  bool create_if_missing = true;
  /// Write RocksDB's WAL. Off because the cache can always be recomputed: entries written since the
  /// last memtable flush are lost on a crash (a clean close flushes them) and the WAL would double
  /// the bytes written. Default: false.
  bool use_wal = false;
  /// Makes memory-tier payloads out of values read from disk. Default: empty, which keeps the host
  /// bytes RocksDB returned (no copy).
  KvPayloadAllocator memory_allocator;
  /// Receives warnings (corrupt entries, disk failures). Default: Logger::null_logger().
  std::shared_ptr<Logger> logger = Logger::null_logger();

  /// kInvalidArgument for a block size outside [1, 4096] or a zero disk budget with a disk path.
  Status validate() const;
};

/// The cache. Create it with open(); destroying it flushes the disk tier and closes it.
class KvCache {
 public:
  /// Opens the cache. Returns kInvalidArgument when options.validate() fails; every disk problem
  /// (cannot create or open disk_path, LOCK held by another process, corrupt store) is logged as a
  /// warning and leaves a working memory-only cache (see disk_status()), so this returns ok then.
  static Status open(const KvCacheOptions& options, std::unique_ptr<KvCache>* cache);

  ~KvCache();
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  /// Finds the longest cached prefix of `tokens` for `fingerprint` (see the file comment for which
  /// lengths are candidates) and fills *result; result->hit() is false on a miss. A disk hit is
  /// checked (checksum, header, key) and promoted to the memory tier. Returns kInvalidArgument
  /// for an invalid fingerprint; never fails for cache reasons (corruption, I/O) — those are
  /// misses.
  Status lookup(const KvModelFingerprint& fingerprint,
                const std::vector<int32_t>& tokens,
                KvLookupResult* result);

  /// Stores the K/V of exactly `tokens` (payload laid out as described at KvTensorHeader, shape
  /// from the fingerprint and tokens.size()) in the memory tier and writes it through to disk,
  /// evicting least recently used entries past either budget. Storing a key again replaces it.
  /// Returns kInvalidArgument for an invalid fingerprint, empty tokens, or a payload whose size
  /// does not match the shape. Disk write failures are not errors (warning, memory tier kept).
  Status put(const KvModelFingerprint& fingerprint,
             const std::vector<int32_t>& tokens,
             std::shared_ptr<const KvPayload> payload);

  /// Drops every entry of both tiers and compacts the disk store so its space is returned.
  /// Returns kIOError when the disk store fails to delete (the memory tier is cleared anyway).
  Status clear();

  /// Counters and tier sizes.
  KvCacheStats stats() const;

  /// ok while the disk tier is in use; otherwise why it is not (kUnavailable when no disk_path was
  /// given, or the open/I-O error that turned it off).
  Status disk_status() const;

  /// The longest prefix of `num_tokens` tokens that lookup() can hit for longer prompts: num_tokens
  /// rounded down to a multiple of the block size. Store the fixed instruction text at this length.
  int32_t block_aligned_length(int32_t num_tokens) const;

 private:
  class Impl;
  explicit KvCache(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace blockrank

#endif  // BLOCKRANK_RANKER_KV_CACHE_KV_CACHE_H_
