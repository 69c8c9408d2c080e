// SPDX-License-Identifier: Apache-2.0
// `blockrank serve`: the HTTP API over an index, with a reranker when --model is given: one
// replica, or one per device with --gpus 0,1 / --devices cpu,cpu / --replicas N (issue #11), all
// fed from one queue.
#include <algorithm>
#include <string>
#include <vector>

#include "http/api.h"
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
  std::string devices;  // "cpu,cpu", "cuda:0,cuda:1"
  std::string gpus;     // "0,1"
  int replicas = 1;
  std::string dtype = "auto";
  int model_threads = 0;
  std::string fusion = "model";  // "model" (blockrank.json's "fusion"), "rerank", "interpolate:A"
  ServerOptions server;
  double k1 = SearchOptions().bm25_k1;
  double b = SearchOptions().bm25_b;
};

std::vector<std::string> split_list(const std::string& list) {
  std::vector<std::string> out;
  size_t begin = 0;
  while (true) {
    const size_t end = list.find(',', begin);
    out.push_back(list.substr(begin, end == std::string::npos ? std::string::npos : end - begin));
    if (end == std::string::npos) {
      return out;
    }
    begin = end + 1;
  }
}

// The model devices, one replica each: --gpus 0,1 (cuda:0, cuda:1), --devices cpu,cpu, or
// --replicas copies of --device. kInvalidArgument for an empty entry, a GPU index that is not a
// number, a GPU listed twice, or a replica count below 1.
Status replica_devices(const ServeArgs& a, std::vector<std::string>* out) {
  out->clear();
  if (!a.gpus.empty()) {
    for (const std::string& g : split_list(a.gpus)) {
      if (g.empty() || g.size() > 4 || g.find_first_not_of("0123456789") != std::string::npos) {
        return Status::invalid_argument("--gpus '" + a.gpus +
                                        "': expected comma-separated GPU indices, e.g. 0,1");
      }
      const std::string device = "cuda:" + std::to_string(std::stoi(g));
      if (std::find(out->begin(), out->end(), device) != out->end()) {
        return Status::invalid_argument("--gpus '" + a.gpus + "': GPU " + g +
                                        " listed twice (--devices cuda:" + g + ",cuda:" + g +
                                        " puts two replicas on one GPU)");
      }
      out->push_back(device);
    }
    return Status::ok();
  }
  if (!a.devices.empty()) {
    for (const std::string& d : split_list(a.devices)) {
      if (d.empty()) {
        return Status::invalid_argument(
            "--devices '" + a.devices +
            "': an empty entry (expected e.g. cpu,cpu or cuda:0,cuda:1)");
      }
      out->push_back(d);
    }
    return Status::ok();
  }
  if (a.replicas < 1) {
    return Status::invalid_argument("--replicas must be >= 1");
  }
  out->assign(static_cast<size_t>(a.replicas), a.device);
  return Status::ok();
}

Status serve(const ServeArgs& a, const std::shared_ptr<Logger>& logger) {
  // The fusion first: a bad --fusion or blockrank.json "fusion" fails before minutes of loading.
  ServerOptions opts = a.server;
  if (a.model.empty() && a.fusion != "model") {
    return Status::invalid_argument("--fusion " + a.fusion +
                                    " needs --model (without one search serves BM25 only)");
  }
  if (!a.model.empty()) {  // "model": the model's blockrank.json (rerank when it names none)
    StatusOr<FusionOptions> f = resolve_fusion(a.fusion, a.model);
    if (!f.is_ok()) {
      return f.status().with_context("--fusion '" + a.fusion + "'");
    }
    opts.fusion = *f;
  }
  std::vector<std::unique_ptr<RerankBackend>> backends;
  std::vector<RerankBackend*> replicas;
  if (!a.model.empty()) {
    std::vector<std::string> devices;
    BLOCKRANK_RETURN_IF_ERROR(replica_devices(a, &devices));
    for (size_t i = 0; i < devices.size(); ++i) {
      RerankBackendOptions ro;
      ro.model_dir = a.model;
      ro.device = devices[i];
      ro.dtype = a.dtype;
      ro.threads = a.model_threads;
      ro.kv_cache_dir = a.kv_cache;
      ro.kv_cache_memory_mb = a.kv_cache_memory_mb;
      ro.kv_cache_disk_mb = a.kv_cache_disk_mb;
      // One process may open a RocksDB directory once: replica 0 keeps the disk tier, the others
      // a memory tier of their own.
      ro.kv_cache_memory_only = i > 0;
      BLOCKRANK_LOG_INFO(logger, "loading model %s on %s (replica %zu of %zu)", a.model.c_str(),
                         devices[i].c_str(), i + 1, devices.size());
      std::unique_ptr<RerankBackend> backend;
      const Status st = open_rerank_backend(ro, &backend);
      if (!st.is_ok()) {
        return Status(st.code(), "replica " + std::to_string(i) + " on device '" + devices[i] +
                                     "': " + st.message());
      }
      replicas.push_back(backend.get());
      backends.push_back(std::move(backend));
    }
  } else if (!a.gpus.empty() || !a.devices.empty() || a.replicas != 1) {
    return Status::invalid_argument("--gpus, --devices and --replicas need --model");
  }
  if (!a.model.empty()) {
    BLOCKRANK_LOG_INFO(logger, "search orders reranked candidates by %s",
                       fusion_name(opts.fusion).c_str());
  }
  SearchOptions so;
  so.bm25_k1 = a.k1;
  so.bm25_b = a.b;
  std::unique_ptr<SearchService> search;
  BLOCKRANK_RETURN_IF_ERROR(SearchService::open(a.db, so, logger, &search));
  opts.logger = logger;
  std::unique_ptr<Server> server;
  BLOCKRANK_RETURN_IF_ERROR(Server::start(opts, search.get(), replicas, &server));
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
                  "Instruction-prefix KV cache directory (RocksDB; needs --model). With several "
                  "replicas each has its own memory tier and only replica 0 the disk tier");
  cmd->add_option("--kv-cache-memory-mb", a->kv_cache_memory_mb,
                  "KV cache memory tier (device memory on CUDA)")
      ->capture_default_str();
  cmd->add_option("--kv-cache-disk-mb", a->kv_cache_disk_mb, "KV cache disk tier")
      ->capture_default_str();
  cmd->add_option("--device", a->device, "Model device: cpu, cuda, cuda:N")->capture_default_str();
  auto* gpus = cmd->add_option("--gpus", a->gpus,
                               "One model replica per listed GPU, e.g. 0,1 (cuda:0, cuda:1); "
                               "batches spread over them");
  auto* devices = cmd->add_option("--devices", a->devices,
                                  "One model replica per listed device, e.g. cpu,cpu or "
                                  "cuda:0,cuda:1");
  auto* replicas = cmd->add_option("--replicas", a->replicas, "Model replicas on --device")
                       ->capture_default_str();
  gpus->excludes(devices)->excludes(replicas);
  devices->excludes(replicas);
  cmd->add_option("--dtype", a->dtype, "Model dtype: auto, float32, bfloat16")
      ->capture_default_str();
  cmd->add_option("--model-threads", a->model_threads, "CPU threads for the model (0: all)")
      ->capture_default_str();
  cmd->add_option("--fusion", a->fusion,
                  "How search orders reranked candidates: model (the model's blockrank.json "
                  "\"fusion\", else rerank), rerank, or interpolate:ALPHA (BM25 weight of min-max "
                  "scores); a request's \"fusion\" overrides it")
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
