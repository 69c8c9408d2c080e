// SPDX-License-Identifier: Apache-2.0
// `blockrank serve`: the HTTP API over an index, with a reranker when --model is given.
#include "http/search_service.h"
#include "http/server.h"
#include "plugin/base/cli_command.h"
#include "plugin/cli/commands.h"

#include <CLI/CLI.hpp>

namespace blockrank {

namespace {
struct ServeArgs {
  std::string db;
  std::string model;
  std::string kv_cache;
  uint64_t kv_cache_memory_mb = RerankBackendOptions().kv_cache_memory_mb;
  uint64_t kv_cache_disk_mb = RerankBackendOptions().kv_cache_disk_mb;
  std::string device = "cpu";
  std::string dtype = "auto";
  int model_threads = 0;
  ServerOptions server;
  double k1 = SearchOptions().bm25_k1;
  double b = SearchOptions().bm25_b;
};

Status serve(const ServeArgs& a, const std::shared_ptr<Logger>& logger) {
  std::unique_ptr<RerankBackend> backend;
  if (!a.model.empty()) {
    RerankBackendOptions ro;
    ro.model_dir = a.model;
    ro.device = a.device;
    ro.dtype = a.dtype;
    ro.threads = a.model_threads;
    ro.kv_cache_dir = a.kv_cache;
    ro.kv_cache_memory_mb = a.kv_cache_memory_mb;
    ro.kv_cache_disk_mb = a.kv_cache_disk_mb;
    BLOCKRANK_LOG_INFO(logger, "loading model %s", a.model.c_str());
    BLOCKRANK_RETURN_IF_ERROR(open_rerank_backend(ro, &backend));
  }
  SearchOptions so;
  so.bm25_k1 = a.k1;
  so.bm25_b = a.b;
  std::unique_ptr<SearchService> search;
  BLOCKRANK_RETURN_IF_ERROR(SearchService::open(a.db, so, logger, &search));
  ServerOptions opts = a.server;
  opts.logger = logger;
  std::unique_ptr<Server> server;
  BLOCKRANK_RETURN_IF_ERROR(Server::start(opts, search.get(), backend.get(), &server));
  server->shutdown_on_signals();
  server->wait();
  server.reset();
  const Status st = search->close();
  BLOCKRANK_LOG_INFO(logger, "stopped; index committed");
  return st;
}
}  // namespace

void add_serve_command(CLI::App& app, CommandContext& ctx) {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "serve", "HTTP API: search with reranking, /v1/rerank, live indexing, metrics");
  cmd->add_option("--db", a->db, "Index directory (created if missing)")->required();
  cmd->add_option("--model", a->model, "Model directory for reranking (none: BM25 only)");
  cmd->add_option("--kv-cache", a->kv_cache,
                  "Instruction-prefix KV cache directory (RocksDB; needs --model)");
  cmd->add_option("--kv-cache-memory-mb", a->kv_cache_memory_mb,
                  "KV cache memory tier (device memory on CUDA)")
      ->capture_default_str();
  cmd->add_option("--kv-cache-disk-mb", a->kv_cache_disk_mb, "KV cache disk tier")
      ->capture_default_str();
  cmd->add_option("--device", a->device, "Model device: cpu, cuda, cuda:N")->capture_default_str();
  cmd->add_option("--dtype", a->dtype, "Model dtype: auto, float32, bfloat16")
      ->capture_default_str();
  cmd->add_option("--model-threads", a->model_threads, "CPU threads for the model (0: all)")
      ->capture_default_str();
  cmd->add_option("--host", a->server.host, "Address to bind")->capture_default_str();
  cmd->add_option("--port", a->server.port, "Port (0: any free port)")->capture_default_str();
  cmd->add_option("--io-threads", a->server.io_threads, "HTTP I/O threads")->capture_default_str();
  cmd->add_option("--max-body-bytes", a->server.max_body_bytes, "Largest request body")
      ->capture_default_str();
  cmd->add_option("--max-documents", a->server.limits.max_documents, "Most documents per request")
      ->capture_default_str();
  cmd->add_option("--max-document-bytes", a->server.limits.max_document_bytes, "Longest document")
      ->capture_default_str();
  cmd->add_option("--queue", a->server.queue_capacity, "Rerank queue capacity (then 503)")
      ->capture_default_str();
  cmd->add_option("--max-batch", a->server.max_batch, "Requests the model takes at once")
      ->capture_default_str();
  cmd->add_option("--timeout-ms", a->server.request_timeout_ms, "Per-request deadline")
      ->capture_default_str();
  cmd->add_option("--k1", a->k1, "BM25 k1")->capture_default_str();
  cmd->add_option("--b", a->b, "BM25 b")->capture_default_str();
  cmd->callback([a, &ctx]() { ctx.exit_code = report_status("serve", serve(*a, ctx.logger)); });
}

}  // namespace blockrank
