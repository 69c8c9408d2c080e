// SPDX-License-Identifier: Apache-2.0
// The RerankBackend the HTTP server (and anything else outside the LibTorch module) uses: a
// Reranker (ranker/core) behind the plain-C++ interface of plugin/base/rerank_backend.h, created
// through an exported C function so the binary can dlopen() this module only when --model is given.
#include <thread>

#include "plugin/base/rerank_backend.h"
#include "ranker/core/reranker.h"

namespace blockrank {

namespace {

class TorchRerankBackend : public RerankBackend {
 public:
  TorchRerankBackend(std::unique_ptr<Reranker> reranker, std::string name)
      : reranker_(std::move(reranker)), name_(std::move(name)) {}

  Status rerank(const std::vector<RerankRequest>& requests,
                std::vector<RerankResult>* results) override {
    results->clear();
    results->reserve(requests.size());
    // One prompt per request: the ranker scores one BlockRank sequence per forward pass.
    for (const RerankRequest& req : requests) {
      Reranking ranking;
      BLOCKRANK_RETURN_IF_ERROR(
          reranker_->rerank(req.query, req.documents, RerankOptions(), &ranking));
      RerankResult out;
      out.scores.assign(req.documents.size(), 0.0f);
      for (const RankedDocument& d : ranking.ranked) {
        if (d.index < out.scores.size()) {
          out.scores[d.index] = static_cast<float>(d.score);
        }
      }
      out.total_tokens = ranking.prompt_tokens;
      results->push_back(std::move(out));
    }
    return Status::ok();
  }

  std::string model_name() const override { return name_; }

  RerankBackendCacheStats cache_stats() const override {
    const RankerCacheStats s = reranker_->ranker().cache_stats();
    RerankBackendCacheStats out;
    out.enabled = s.enabled;
    out.lookups = s.store.lookups;
    out.memory_hits = s.store.memory_hits;
    out.disk_hits = s.store.disk_hits;
    out.misses = s.store.misses;
    out.lookup_tokens = s.prefix_tokens;
    out.hit_tokens = s.reused_tokens;
    out.bytes_stored = s.store.bytes_stored;
    out.bytes_read = s.store.bytes_read;
    out.memory_evictions = s.store.memory_evictions;
    out.disk_evictions = s.store.disk_evictions;
    out.corruptions = s.store.corruptions;
    out.disk_errors = s.store.disk_errors;
    out.puts_dropped = s.puts_dropped;
    out.memory_entries = s.store.memory_entries;
    out.memory_bytes = s.store.memory_bytes;
    out.disk_entries = s.store.disk_entries;
    out.disk_bytes = s.store.disk_bytes;
    out.disk_enabled = s.store.disk_enabled;
    return out;
  }

 private:
  std::unique_ptr<Reranker> reranker_;
  std::string name_;
};

Status open_backend(const RerankBackendOptions& o, std::unique_ptr<RerankBackend>* out) {
  RerankerOptions ro;
  if (!o.kv_cache_dir.empty()) {
    // Attention-mode scoring reuses block 0's K/V (the server never decodes).
    ro.ranker.kv_cache = true;
    ro.ranker.kv_cache_dir = o.kv_cache_memory_only ? std::string() : o.kv_cache_dir;
    ro.ranker.kv_cache_memory_bytes = o.kv_cache_memory_mb << 20;
    ro.ranker.kv_cache_disk_bytes = o.kv_cache_disk_mb << 20;
    ro.ranker.logger = Logger::stderr_logger(LogLevel::kWarning);
  }
  ro.ranker.device = o.device;
  ro.ranker.dtype = o.dtype;
  ro.max_block_length = o.max_block_length;
  ro.ranker.num_threads = o.threads > 0
                              ? o.threads
                              : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::unique_ptr<Reranker> reranker;
  BLOCKRANK_RETURN_IF_ERROR(Reranker::open(o.model_dir, ro, &reranker));
  std::string dir = o.model_dir;
  while (dir.size() > 1 && dir.back() == '/') {
    dir.pop_back();
  }
  const std::string base = dir.substr(dir.rfind('/') == std::string::npos ? 0 : dir.rfind('/') + 1);
  out->reset(new TorchRerankBackend(std::move(reranker), "blockrank-" + base));
  return Status::ok();
}

}  // namespace

}  // namespace blockrank

/// Exported for plugin/base/module_loader.cc. Returns nullptr on success, else a heap Status the
/// caller deletes (so no Status object crosses the module boundary by value).
extern "C" __attribute__((visibility("default"))) blockrank::Status* blockrank_open_rerank_backend(
    const blockrank::RerankBackendOptions* options, blockrank::RerankBackend** out) {
  std::unique_ptr<blockrank::RerankBackend> backend;
  blockrank::Status st;
  try {
    st = blockrank::open_backend(*options, &backend);
  } catch (const std::exception& e) {
    st = blockrank::Status::internal(std::string("opening the model failed: ") + e.what());
  }
  if (!st.is_ok()) {
    return new blockrank::Status(st);
  }
  *out = backend.release();
  return nullptr;
}
