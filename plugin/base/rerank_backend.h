// SPDX-License-Identifier: Apache-2.0
// The seam between components that need reranking (HTTP server, Xapian plugin) and the LibTorch
// ranker, which lives in a module loaded on demand. Plain C++ types only: no LibTorch, no JSON.
//
// Thread-safety: implementations must allow rerank() from one thread at a time at least; the HTTP
// server calls it only from its single model-owning worker.
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
};

/// Opens a LibTorch reranker by loading libblockrank_torch_cli.so (beside the binary).
/// kUnimplemented when the build has no LibTorch module.
Status open_rerank_backend(const RerankBackendOptions& options,
                           std::unique_ptr<RerankBackend>* out);

}  // namespace blockrank

#endif  // BLOCKRANK_BASE_RERANK_BACKEND_H_
