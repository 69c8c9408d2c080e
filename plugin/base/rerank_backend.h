// SPDX-License-Identifier: Apache-2.0
// The seam between components that need reranking (HTTP server, Xapian plugin) and the LibTorch
// ranker, which lives in a module loaded on demand. Plain C++ types only: no LibTorch, no JSON.
//
// Thread-safety: implementations must allow rerank() from one thread at a time at least; the HTTP
// server calls each backend (replica) only from that replica's model-owning thread.
#ifndef BLOCKRANK_BASE_RERANK_BACKEND_H_
#define BLOCKRANK_BASE_RERANK_BACKEND_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "blockrank/status.h"

namespace blockrank {

struct RerankDocument {
  std::string id;
  std::string title;
  std::string text;
};

struct RerankRequest {
  std::string query;
  std::vector<RerankDocument> documents;
  /// Truncate each document to this many tokens (0: the model's max block length).
  int max_tokens_per_doc = 0;
};

/// Counters of the backend's instruction-prefix KV cache (issue 6), for the server's /metrics.
struct RerankBackendCacheStats {
  bool enabled = false;
  uint64_t lookups = 0;
  uint64_t memory_hits = 0;
  uint64_t disk_hits = 0;
  uint64_t misses = 0;
  uint64_t lookup_tokens = 0;  ///< Instruction-block tokens looked up.
  uint64_t hit_tokens = 0;     ///< Of those, tokens whose K/V came from the cache.
  uint64_t bytes_stored = 0;   ///< Written to the disk tier.
  uint64_t bytes_read = 0;     ///< Read from the disk tier.
  uint64_t memory_evictions = 0;
  uint64_t disk_evictions = 0;
  uint64_t corruptions = 0;
  uint64_t disk_errors = 0;
  uint64_t puts_dropped = 0;  ///< Background writer queue full.
  uint64_t memory_entries = 0;
  uint64_t memory_bytes = 0;
  uint64_t disk_entries = 0;
  uint64_t disk_bytes = 0;
  bool disk_enabled = false;
};

struct RerankResult {
  /// One score per input document, in input order (BlockRank: attention mass, sums to 1).
  std::vector<float> scores;
  /// Tokens in the prompt that was scored (for usage accounting).
  int64_t total_tokens = 0;
};

class RerankBackend {
 public:
  virtual ~RerankBackend() = default;
  /// Scores the documents of each request against its query. `results` gets one entry per request.
  /// A request-level problem (e.g. a prompt too long) fails the whole call with kInvalidArgument.
  virtual Status rerank(const std::vector<RerankRequest>& requests,
                        std::vector<RerankResult>* results) = 0;
  /// A name for API responses ("blockrank-<model dir name>").
  virtual std::string model_name() const = 0;
  /// The KV cache's counters (enabled = false without one). Safe to call from any thread while
  /// rerank() runs. Default: no cache.
  virtual RerankBackendCacheStats cache_stats() const { return {}; }
};

/// Options for opening a LibTorch ranker through the module.
struct RerankBackendOptions {
  std::string model_dir;
  /// "cpu", "cuda", "cuda:1". Default: "cpu".
  std::string device = "cpu";
  /// "auto", "float32", "bfloat16". Default: "auto".
  std::string dtype = "auto";
  /// CPU threads (0: all cores). Default: 0.
  int threads = 0;
  /// Longest block in tokens (§1.4); 0 uses the model's blockrank.json. Default: 0.
  int64_t max_block_length = 0;
  /// Instruction-prefix KV cache directory (empty: none).
  std::string kv_cache_dir;
  /// KV cache memory tier in MiB (device memory on CUDA). Default: 1024.
  uint64_t kv_cache_memory_mb = 1024;
  /// KV cache disk tier in MiB. Default: 16384.
  uint64_t kv_cache_disk_mb = 16384;
  /// With kv_cache_dir set: keep the cache in memory only and leave the directory alone. For the
  /// second and later replicas of one process, which may not open the RocksDB store that the
  /// first holds (its LOCK is per process). Default: false.
  bool kv_cache_memory_only = false;
};

/// Opens a LibTorch reranker by loading libblockrank_torch_cli.so (beside the binary).
/// kUnimplemented when the build has no LibTorch module.
Status open_rerank_backend(const RerankBackendOptions& options,
                           std::unique_ptr<RerankBackend>* out);

}  // namespace blockrank

#endif  // BLOCKRANK_BASE_RERANK_BACKEND_H_
