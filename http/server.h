// SPDX-License-Identifier: Apache-2.0
// The HTTP server (Boost.Beast, asynchronous, a few I/O threads). Routes parse the request into
// native structs (http/api.h), run BM25 inline (milliseconds) and queue model work for the
// ModelWorker (one thread per model replica), answering when it calls back. Beast and JSON types
// never leave http/.
//
// Thread-safety: start() once; shutdown() may be called from any thread (e.g. a signal watcher).
#ifndef BLOCKRANK_HTTP_SERVER_H_
#define BLOCKRANK_HTTP_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "http/api.h"
#include "http/metrics.h"
#include "plugin/base/logging.h"
#include "plugin/base/rerank_backend.h"

namespace blockrank {

class SearchService;

struct ServerOptions {
  /// Address to bind. Default: "127.0.0.1" (loopback only).
  std::string host = "127.0.0.1";
  /// Port; 0 picks a free one (see Server::port()). Default: 8080.
  int port = 8080;
  /// I/O threads (BM25 runs on them). Default: 2.
  int io_threads = 2;
  /// Largest request body; larger gets 413. Default: 8 MiB.
  size_t max_body_bytes = 8u << 20;
  ApiLimits limits;
  /// Rerank requests waiting for the model before new ones get 503. Default: 64.
  size_t queue_capacity = 64;
  /// Requests the model worker takes at once. Default: 8.
  size_t max_batch = 8;
  /// Per-request deadline (queue wait + model), and the idle keep-alive timeout. Default: 30000.
  int request_timeout_ms = 30000;
  /// Snippet length in search results. Default: 200.
  size_t snippet_bytes = 200;
  /// How /v1/search orders reranked candidates (blockrank/fusion.h): the reranker's scores alone,
  /// or interpolated with BM25's; a request's "fusion" field overrides it. `blockrank serve` sets
  /// the model's recommendation (model_fusion). Default: kRerank.
  FusionOptions fusion;
  std::shared_ptr<Logger> logger = Logger::null_logger();
  Status validate() const;
};

class Server {
 public:
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Binds and starts serving. `search` must outlive the server; `backend` may be null (BM25 only).
  static Status start(const ServerOptions& options,
                      SearchService* search,
                      RerankBackend* backend,
                      std::unique_ptr<Server>* out);
  /// As above with several replicas of one model (e.g. one per GPU): each gets its own model
  /// thread, all take batches from the one queue. Empty: BM25 only. None may be null; all must
  /// outlive the server. kInvalidArgument for a null entry.
  static Status start(const ServerOptions& options,
                      SearchService* search,
                      std::vector<RerankBackend*> replicas,
                      std::unique_ptr<Server>* out);
  /// The bound port (useful with port 0).
  int port() const;
  /// Stops accepting, lets in-flight requests finish (up to the request timeout), stops the model
  /// worker and the I/O threads. Idempotent.
  void shutdown();
  /// Blocks until shutdown() has completed (from another thread or a signal).
  void wait();
  /// Arranges for SIGINT/SIGTERM to call shutdown().
  void shutdown_on_signals();
  Metrics& metrics();

  struct Impl;  // implementation detail (public so the connection code in server.cc can see it)

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace blockrank

#endif  // BLOCKRANK_HTTP_SERVER_H_
