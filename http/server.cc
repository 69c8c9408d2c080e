// SPDX-License-Identifier: Apache-2.0
// Beast plumbing: one Session per connection reads a request, routes it, and writes the response,
// either at once or when the model worker calls back (posted onto the session's executor).
#include "http/server.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <thread>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "http/model_worker.h"
#include "http/search_service.h"
#include "plugin/base/strings.h"

namespace blockrank {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

http::status http_status_for(const Status& st) {
  switch (st.code()) {
    case StatusCode::kOk:
      return http::status::ok;
    case StatusCode::kInvalidArgument:
      return http::status::bad_request;
    case StatusCode::kNotFound:
      return http::status::not_found;
    case StatusCode::kUnavailable:
    case StatusCode::kResourceExhausted:
    case StatusCode::kCancelled:
      return http::status::service_unavailable;
    case StatusCode::kDeadlineExceeded:
      return http::status::gateway_timeout;
    case StatusCode::kUnimplemented:
      return http::status::not_implemented;
    default:
      return http::status::internal_server_error;
  }
}

struct Reply {
  http::status status = http::status::ok;
  std::string content_type = "application/json";
  std::string body;
  bool retry_after = false;
};

Reply error_reply(const Status& st) {
  Reply r;
  r.status = http_status_for(st);
  r.body = error_json(status_code_name(st.code()), st.message());
  r.retry_after = r.status == http::status::service_unavailable;
  return r;
}

Reply error_reply(http::status status, const std::string& code, const std::string& message) {
  Reply r;
  r.status = status;
  r.body = error_json(code, message);
  return r;
}

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// The reranker's KV-cache counters in Prometheus text format (empty without a cache). Read from
// the backend at scrape time: the counters live in the cache, not in the registry.
std::string render_kv_cache_metrics(const RerankBackendCacheStats& s) {
  if (!s.enabled) {
    return "";
  }
  std::string out;
  auto family = [&](const char* name, const char* type, const char* help) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  auto value = [&](const std::string& series, uint64_t v) {
    out += series + " " + std::to_string(v) + "\n";
  };
  family("blockrank_kv_cache_hits_total", "counter", "Instruction-prefix KV cache hits by tier");
  value("blockrank_kv_cache_hits_total{tier=\"memory\"}", s.memory_hits);
  value("blockrank_kv_cache_hits_total{tier=\"disk\"}", s.disk_hits);
  family("blockrank_kv_cache_misses_total", "counter", "KV cache lookups that found no prefix");
  value("blockrank_kv_cache_misses_total", s.misses);
  family("blockrank_kv_cache_lookup_tokens_total", "counter",
         "Instruction-block tokens looked up in the KV cache");
  value("blockrank_kv_cache_lookup_tokens_total", s.lookup_tokens);
  family("blockrank_kv_cache_hit_tokens_total", "counter",
         "Instruction-block tokens whose K/V came from the cache");
  value("blockrank_kv_cache_hit_tokens_total", s.hit_tokens);
  family("blockrank_kv_cache_disk_bytes_total", "counter", "KV cache bytes written/read on disk");
  value("blockrank_kv_cache_disk_bytes_total{op=\"write\"}", s.bytes_stored);
  value("blockrank_kv_cache_disk_bytes_total{op=\"read\"}", s.bytes_read);
  family("blockrank_kv_cache_evictions_total", "counter", "KV cache evictions by tier");
  value("blockrank_kv_cache_evictions_total{tier=\"memory\"}", s.memory_evictions);
  value("blockrank_kv_cache_evictions_total{tier=\"disk\"}", s.disk_evictions);
  family("blockrank_kv_cache_corruptions_total", "counter",
         "Corrupt KV cache entries dropped (and recomputed)");
  value("blockrank_kv_cache_corruptions_total", s.corruptions);
  family("blockrank_kv_cache_disk_errors_total", "counter", "RocksDB failures of the KV cache");
  value("blockrank_kv_cache_disk_errors_total", s.disk_errors);
  family("blockrank_kv_cache_dropped_puts_total", "counter",
         "KV cache entries not stored: the background writer's queue was full");
  value("blockrank_kv_cache_dropped_puts_total", s.puts_dropped);
  family("blockrank_kv_cache_entries", "gauge", "KV cache entries by tier");
  value("blockrank_kv_cache_entries{tier=\"memory\"}", s.memory_entries);
  value("blockrank_kv_cache_entries{tier=\"disk\"}", s.disk_entries);
  family("blockrank_kv_cache_bytes", "gauge", "KV cache bytes held by tier");
  value("blockrank_kv_cache_bytes{tier=\"memory\"}", s.memory_bytes);
  value("blockrank_kv_cache_bytes{tier=\"disk\"}", s.disk_bytes);
  family("blockrank_kv_cache_disk_enabled", "gauge", "1 while the KV cache's disk tier is in use");
  value("blockrank_kv_cache_disk_enabled", s.disk_enabled ? 1 : 0);
  return out;
}
// Adds one replica's cache counters to `sum`.
void add_cache_stats(const RerankBackendCacheStats& s, RerankBackendCacheStats* sum) {
  sum->enabled = sum->enabled || s.enabled;
  sum->disk_enabled = sum->disk_enabled || s.disk_enabled;
  for (auto field :
       {&RerankBackendCacheStats::lookups, &RerankBackendCacheStats::memory_hits,
        &RerankBackendCacheStats::disk_hits, &RerankBackendCacheStats::misses,
        &RerankBackendCacheStats::lookup_tokens, &RerankBackendCacheStats::hit_tokens,
        &RerankBackendCacheStats::bytes_stored, &RerankBackendCacheStats::bytes_read,
        &RerankBackendCacheStats::memory_evictions, &RerankBackendCacheStats::disk_evictions,
        &RerankBackendCacheStats::corruptions, &RerankBackendCacheStats::disk_errors,
        &RerankBackendCacheStats::puts_dropped, &RerankBackendCacheStats::memory_entries,
        &RerankBackendCacheStats::memory_bytes, &RerankBackendCacheStats::disk_entries,
        &RerankBackendCacheStats::disk_bytes}) {
    sum->*field += s.*field;
  }
}
}  // namespace

struct Server::Impl {
  ServerOptions options;
  SearchService* search = nullptr;
  RerankBackend* backend = nullptr;  // replicas[0]: the model's name
  std::vector<RerankBackend*> replicas;
  Metrics metrics;
  net::io_context ioc;
  tcp::acceptor acceptor{ioc};
  std::unique_ptr<ModelWorker> worker;
  std::vector<std::thread> threads;
  std::atomic<int> in_flight{0};
  std::atomic<bool> draining{false};
  std::atomic<uint64_t> rerank_ids{0};
  std::mutex done_mu;
  std::condition_variable done_cv;
  bool done = false;
  std::once_flag shutdown_once;
  std::unique_ptr<net::signal_set> signals;

  void accept();
  void route(const http::request<http::string_body>& req, std::function<void(Reply)> respond);
  void handle_search(const std::string& body, std::function<void(Reply)> respond);
  void handle_rerank(const std::string& body, std::function<void(Reply)> respond);
  Reply handle_documents_post(const std::string& body);
  Reply handle_document(http::verb method, const std::string& id);
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, Server::Impl* server) : stream_(std::move(socket)), server_(server) {}

  void start() {
    net::dispatch(stream_.get_executor(),
                  beast::bind_front_handler(&Session::read, shared_from_this()));
  }

 private:
  void read() {
    parser_.emplace();
    parser_->body_limit(server_->options.max_body_bytes);
    stream_.expires_after(std::chrono::milliseconds(server_->options.request_timeout_ms));
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::on_read, shared_from_this()));
  }

  void on_read(beast::error_code ec, std::size_t) {
    if (ec == http::error::end_of_stream || ec == net::error::operation_aborted ||
        ec == beast::error::timeout) {
      close();
      return;
    }
    if (ec) {
      // Malformed HTTP or an oversized body: answer once, then close the connection.
      Reply r = ec == http::error::body_limit
                    ? error_reply(http::status::payload_too_large, "payload_too_large",
                                  "request body exceeds " +
                                      std::to_string(server_->options.max_body_bytes) + " bytes")
                    : error_reply(http::status::bad_request, "bad_request",
                                  "malformed HTTP request: " + ec.message());
      keep_alive_ = false;
      version_ = 11;
      begin_ = Clock::now();
      route_label_ = "other";
      server_->in_flight.fetch_add(1);
      send(std::move(r));
      return;
    }
    req_ = parser_->release();
    keep_alive_ = req_.keep_alive() && !server_->draining.load();
    version_ = req_.version();
    begin_ = Clock::now();
    route_label_ = route_label(req_);
    server_->in_flight.fetch_add(1);
    auto self = shared_from_this();
    server_->route(req_, [self](Reply r) {
      // May run on the model worker's thread: hop back onto this connection's executor.
      net::post(self->stream_.get_executor(),
                [self, r = std::move(r)]() mutable { self->send(std::move(r)); });
    });
  }

  static std::string route_label(const http::request<http::string_body>& req) {
    const std::string target(req.target());
    const std::string path = target.substr(0, target.find('?'));
    if (starts_with(path, "/v1/documents/")) {
      return "/v1/documents/{id}";
    }
    static const char* kRoutes[] = {"/v1/search",    "/v1/rerank", "/rerank", "/v2/rerank",
                                    "/v1/documents", "/health",    "/ready",  "/metrics",
                                    "/openapi.json", "/"};
    for (const char* r : kRoutes) {
      if (path == r) {
        return r;
      }
    }
    return "other";
  }

  void send(Reply r) {
    auto res = std::make_shared<http::response<http::string_body>>(r.status, version_);
    res->set(http::field::server, "blockrank/0.1");
    res->set(http::field::content_type, r.content_type);
    if (r.retry_after) {
      res->set(http::field::retry_after, "1");
    }
    res->keep_alive(keep_alive_ && !server_->draining.load());
    res->body() = std::move(r.body);
    res->prepare_payload();
    const std::string labels = "route=\"" + route_label_ + "\",status=\"" +
                               std::to_string(static_cast<int>(r.status)) + "\"";
    server_->metrics.inc("blockrank_http_requests_total", labels);
    server_->metrics.observe("blockrank_http_request_duration_seconds",
                             "route=\"" + route_label_ + "\"", ms_since(begin_) / 1000.0,
                             latency_buckets());
    res_ = res;
    stream_.expires_after(std::chrono::milliseconds(server_->options.request_timeout_ms));
    http::async_write(stream_, *res_,
                      beast::bind_front_handler(&Session::on_write, shared_from_this()));
  }

  void on_write(beast::error_code ec, std::size_t) {
    const bool close_after = !res_->keep_alive();
    res_.reset();
    server_->in_flight.fetch_sub(1);
    if (ec || close_after) {
      close();
      return;
    }
    read();
  }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  Server::Impl* server_;
  boost::optional<http::request_parser<http::string_body>> parser_;
  http::request<http::string_body> req_;
  std::shared_ptr<http::response<http::string_body>> res_;
  bool keep_alive_ = false;
  unsigned version_ = 11;
  Clock::time_point begin_;
  std::string route_label_;
};

}  // namespace

void Server::Impl::accept() {
  acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec == net::error::operation_aborted || draining.load()) {
        return;
      }
    } else {
      std::make_shared<Session>(std::move(socket), this)->start();
    }
    if (!draining.load()) {
      accept();
    }
  });
}

void Server::Impl::route(const http::request<http::string_body>& req,
                         std::function<void(Reply)> respond) {
  const std::string target(req.target());
  const std::string path = target.substr(0, target.find('?'));
  const http::verb m = req.method();
  auto method_not_allowed = [&](const char* allowed) {
    Reply r = error_reply(
        http::status::method_not_allowed, "method_not_allowed",
        std::string(req.method_string()) + " is not allowed on " + path + " (use " + allowed + ")");
    respond(std::move(r));
  };
  try {
    if (path == "/v1/search") {
      if (m != http::verb::post) {
        return method_not_allowed("POST");
      }
      return handle_search(req.body(), std::move(respond));
    }
    if (path == "/v1/rerank" || path == "/rerank" || path == "/v2/rerank") {
      if (m != http::verb::post) {
        return method_not_allowed("POST");
      }
      return handle_rerank(req.body(), std::move(respond));
    }
    if (path == "/v1/documents") {
      if (m != http::verb::post) {
        return method_not_allowed("POST");
      }
      return respond(handle_documents_post(req.body()));
    }
    if (starts_with(path, "/v1/documents/")) {
      if (m != http::verb::get && m != http::verb::delete_) {
        return method_not_allowed("GET or DELETE");
      }
      return respond(handle_document(m, path.substr(std::strlen("/v1/documents/"))));
    }
    if (m != http::verb::get && m != http::verb::head) {
      if (path == "/health" || path == "/ready" || path == "/metrics" || path == "/openapi.json" ||
          path == "/") {
        return method_not_allowed("GET");
      }
    }
    Reply r;
    if (path == "/health") {
      r.body =
          simple_json({{"replicas", static_cast<double>(replicas.size())}}, {{"status", "ok"}});
    } else if (path == "/ready") {
      const bool ready = !draining.load();
      r.status = ready ? http::status::ok : http::status::service_unavailable;
      r.body = simple_json({{"documents", static_cast<double>(search->doc_count())}},
                           {{"status", ready ? "ready" : "draining"},
                            {"model", backend != nullptr ? backend->model_name() : ""}});
    } else if (path == "/metrics") {
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
      r.body = metrics.render();
    } else if (path == "/openapi.json") {
      r.body = openapi_json();
    } else if (path == "/") {
      r.content_type = "text/html; charset=utf-8";
      r.body = search_page_html();
    } else {
      r = error_reply(http::status::not_found, "not_found", "no route " + path);
    }
    respond(std::move(r));
  } catch (const std::exception& e) {
    respond(error_reply(Status::internal(std::string("unexpected error: ") + e.what())));
  }
}

void Server::Impl::handle_search(const std::string& body, std::function<void(Reply)> respond) {
  const auto t0 = Clock::now();
  SearchApiRequest req;
  Status st = parse_search_request(body, options.limits, &req);
  if (!st.is_ok()) {
    return respond(error_reply(st));
  }
  const bool rerank = req.rerank && backend != nullptr;
  const int depth = rerank ? std::max(req.k, req.candidates) : req.k;
  auto hits = std::make_shared<std::vector<SearchHit>>();
  st = search->search(req.query, depth, options.snippet_bytes, hits.get());
  if (!st.is_ok()) {
    return respond(error_reply(st));
  }
  auto response = std::make_shared<SearchApiResponse>();
  response->retrieve_ms = ms_since(t0);
  const FusionOptions fusion = req.has_fusion ? req.fusion : options.fusion;
  auto finish = [response, hits, t0, k = req.k, fusion](const std::vector<float>* scores) {
    std::vector<size_t> order(hits->size());
    for (size_t i = 0; i < order.size(); ++i) {
      order[i] = i;
    }
    std::vector<double> final_scores;
    if (scores != nullptr) {
      std::vector<double> first(hits->size()), model(scores->begin(), scores->end());
      for (size_t i = 0; i < hits->size(); ++i) {
        first[i] = (*hits)[i].score;
      }
      StatusOr<std::vector<double>> fused = fuse_scores(first, model, fusion);
      if (!fused.is_ok()) {  // a non-finite model score: an error, not a silently wrong order
        return error_reply(
            Status::internal("fusing BM25 and reranker scores: " + fused.status().message()));
      }
      final_scores = std::move(*fused);
      std::stable_sort(order.begin(), order.end(),
                       [&](size_t a, size_t b) { return final_scores[a] > final_scores[b]; });
    }
    for (size_t i = 0; i < order.size() && static_cast<int>(i) < k; ++i) {
      const SearchHit& h = (*hits)[order[i]];
      SearchApiHit out;
      out.rank = static_cast<int>(i) + 1;
      out.bm25_rank = h.rank;
      out.doc_id = h.id;
      out.bm25_score = h.score;
      out.score = scores != nullptr ? final_scores[order[i]] : h.score;
      out.rerank_score = scores != nullptr ? (*scores)[order[i]] : 0.0;
      out.title = h.title;
      out.snippet = h.snippet;
      response->results.push_back(std::move(out));
    }
    response->reranked = scores != nullptr;
    response->fusion = fusion_name(fusion);
    response->total_ms = ms_since(t0);
    Reply r;
    r.body = to_json(*response);
    return r;
  };
  if (!rerank || hits->empty()) {
    return respond(finish(nullptr));
  }
  RerankRequest rr;
  rr.query = req.query;
  for (const SearchHit& h : *hits) {
    rr.documents.push_back(RerankDocument{h.id, h.title, h.text});
  }
  const auto t1 = Clock::now();
  const auto deadline = t0 + std::chrono::milliseconds(options.request_timeout_ms);
  st = worker->submit(std::move(rr), deadline,
                      [respond, finish, response, t1](const Status& s, RerankResult&& result) {
                        if (!s.is_ok()) {
                          respond(error_reply(s));
                          return;
                        }
                        response->rerank_ms = ms_since(t1);
                        respond(finish(&result.scores));
                      });
  if (!st.is_ok()) {
    respond(error_reply(st));
  }
}

void Server::Impl::handle_rerank(const std::string& body, std::function<void(Reply)> respond) {
  if (backend == nullptr) {
    return respond(
        error_reply(Status::unavailable("no model is loaded; start the server with --model DIR")));
  }
  auto req = std::make_shared<RerankApiRequest>();
  Status st = parse_rerank_request(body, options.limits, req.get());
  if (!st.is_ok()) {
    return respond(error_reply(st));
  }
  const auto deadline = Clock::now() + std::chrono::milliseconds(options.request_timeout_ms);
  const std::string id = "rerank-" + std::to_string(rerank_ids.fetch_add(1) + 1);
  const std::string model = backend->model_name();
  RerankRequest copy = req->request;
  st = worker->submit(
      std::move(copy), deadline, [respond, req, id, model](const Status& s, RerankResult&& result) {
        if (!s.is_ok()) {
          respond(error_reply(s));
          return;
        }
        RerankApiResponse out;
        out.id = id;
        out.model = model;
        out.return_documents = req->return_documents;
        out.total_tokens = result.total_tokens;
        std::vector<int> order(result.scores.size());
        for (size_t i = 0; i < order.size(); ++i) {
          order[i] = static_cast<int>(i);
        }
        std::stable_sort(order.begin(), order.end(),
                         [&](int a, int b) { return result.scores[a] > result.scores[b]; });
        const size_t n = req->top_n > 0 ? std::min<size_t>(req->top_n, order.size()) : order.size();
        for (size_t i = 0; i < n; ++i) {
          RerankApiResponse::Item item;
          item.index = order[i];
          item.relevance_score = result.scores[order[i]];
          item.text = req->request.documents[order[i]].text;
          item.title = req->request.documents[order[i]].title;
          out.results.push_back(std::move(item));
        }
        Reply r;
        r.body = to_json(out);
        respond(std::move(r));
      });
  if (!st.is_ok()) {
    respond(error_reply(st));
  }
}

Reply Server::Impl::handle_documents_post(const std::string& body) {
  DocumentsApiRequest req;
  Status st = parse_documents_request(body, options.limits, &req);
  if (!st.is_ok()) {
    return error_reply(st);
  }
  int added = 0;
  int replaced = 0;
  st = search->upsert(req.documents, &added, &replaced);
  if (!st.is_ok()) {
    return error_reply(st);
  }
  Reply r;
  r.body = simple_json({{"added", added}, {"replaced", replaced}});
  return r;
}

Reply Server::Impl::handle_document(http::verb method, const std::string& id) {
  if (id.empty()) {
    return error_reply(http::status::not_found, "not_found", "missing document id");
  }
  if (method == http::verb::delete_) {
    bool found = false;
    const Status st = search->remove(id, &found);
    if (!st.is_ok()) {
      return error_reply(st);
    }
    if (!found) {
      return error_reply(Status::not_found("no document with id '" + id + "'"));
    }
    Reply r;
    r.body = simple_json({}, {{"deleted", id}});
    return r;
  }
  SearchHit hit;
  const Status st = search->get(id, &hit);
  if (!st.is_ok()) {
    return error_reply(st);
  }
  Reply r;
  r.body = document_json(hit.id, hit.title, hit.text);
  return r;
}

Status ServerOptions::validate() const {
  if (port < 0 || port > 65535) {
    return Status::invalid_argument("port must be 0..65535");
  }
  if (io_threads < 1 || queue_capacity < 1 || max_batch < 1 || request_timeout_ms < 1) {
    return Status::invalid_argument(
        "io threads, queue capacity, max batch and request timeout must be positive");
  }
  return fusion.validate();
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  shutdown();
}

Status Server::start(const ServerOptions& options,
                     SearchService* search,
                     RerankBackend* backend,
                     std::unique_ptr<Server>* out) {
  std::vector<RerankBackend*> replicas;
  if (backend != nullptr) {
    replicas.push_back(backend);
  }
  return start(options, search, std::move(replicas), out);
}

Status Server::start(const ServerOptions& options,
                     SearchService* search,
                     std::vector<RerankBackend*> replicas,
                     std::unique_ptr<Server>* out) {
  BLOCKRANK_RETURN_IF_ERROR(options.validate());
  for (const RerankBackend* r : replicas) {
    if (r == nullptr) {
      return Status::invalid_argument("Server::start: a null model replica");
    }
  }
  // Replica 0 answers for the model (name, "is there a model"); they all load the same one.
  RerankBackend* backend = replicas.empty() ? nullptr : replicas.front();
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->search = search;
  impl->backend = backend;
  impl->replicas = replicas;
  try {
    const tcp::endpoint ep(net::ip::make_address(options.host),
                           static_cast<unsigned short>(options.port));
    impl->acceptor.open(ep.protocol());
    impl->acceptor.set_option(net::socket_base::reuse_address(true));
    impl->acceptor.bind(ep);
    impl->acceptor.listen(net::socket_base::max_listen_connections);
  } catch (const boost::system::system_error& e) {
    return Status::unavailable("cannot listen on " + options.host + ":" +
                               std::to_string(options.port) + ": " + e.code().message());
  }
  Impl* raw = impl.get();
  if (backend != nullptr) {
    impl->worker = std::make_unique<ModelWorker>(replicas, options.queue_capacity,
                                                 options.max_batch, &impl->metrics);
    impl->metrics.gauge("blockrank_rerank_queue_depth", "Rerank requests waiting for the model",
                        [raw]() { return static_cast<double>(raw->worker->depth()); });
    // Each replica has its own cache (memory tier; the disk tier on at most one): summed.
    impl->metrics.collector([replicas]() {
      RerankBackendCacheStats sum;
      for (const RerankBackend* r : replicas) {
        add_cache_stats(r->cache_stats(), &sum);
      }
      return render_kv_cache_metrics(sum);
    });
  }
  impl->metrics.gauge("blockrank_model_replicas", "Model replicas serving rerank batches",
                      [raw]() { return static_cast<double>(raw->replicas.size()); });
  impl->metrics.gauge("blockrank_http_in_flight", "Requests being processed",
                      [raw]() { return static_cast<double>(raw->in_flight.load()); });
  impl->metrics.gauge("blockrank_index_documents", "Documents in the index",
                      [raw]() { return static_cast<double>(raw->search->doc_count()); });
  impl->metrics.describe("blockrank_http_requests_total", "counter",
                         "HTTP requests by route and status");
  impl->metrics.describe("blockrank_http_request_duration_seconds", "histogram",
                         "HTTP request latency by route");
  impl->metrics.describe("blockrank_rerank_batch_size", "histogram",
                         "Requests handed to the model together");
  impl->metrics.describe("blockrank_rerank_queue_wait_seconds", "histogram",
                         "Time rerank work waited for the model");
  impl->accept();
  for (int i = 0; i < options.io_threads; ++i) {
    impl->threads.emplace_back([raw]() { raw->ioc.run(); });
  }
  BLOCKRANK_LOG_INFO(options.logger, "serving on http://%s:%d/ (%s)", options.host.c_str(),
                     static_cast<int>(impl->acceptor.local_endpoint().port()),
                     backend != nullptr ? ("model " + backend->model_name() + ", " +
                                           std::to_string(replicas.size()) + " replica(s)")
                                              .c_str()
                                        : "BM25 only, no model");
  out->reset(new Server(std::move(impl)));
  return Status::ok();
}

int Server::port() const {
  return impl_->acceptor.local_endpoint().port();
}

Metrics& Server::metrics() {
  return impl_->metrics;
}

void Server::shutdown() {
  if (!impl_) {
    return;
  }
  std::call_once(impl_->shutdown_once, [this]() {
    Impl* s = impl_.get();
    s->draining.store(true);
    net::post(s->ioc, [s]() {
      beast::error_code ec;
      s->acceptor.close(ec);
      if (s->signals) {
        s->signals->cancel(ec);
      }
    });
    // Let requests that are already running finish.
    const auto limit = Clock::now() + std::chrono::milliseconds(s->options.request_timeout_ms);
    while (s->in_flight.load() > 0 && Clock::now() < limit) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (s->worker) {
      s->worker->stop();
    }
    s->ioc.stop();
    for (std::thread& t : s->threads) {
      if (t.joinable() && t.get_id() != std::this_thread::get_id()) {
        t.join();
      }
    }
    {
      std::lock_guard<std::mutex> lock(s->done_mu);
      s->done = true;
    }
    s->done_cv.notify_all();
  });
}

void Server::wait() {
  std::unique_lock<std::mutex> lock(impl_->done_mu);
  impl_->done_cv.wait(lock, [this]() { return impl_->done; });
}

void Server::shutdown_on_signals() {
  Impl* s = impl_.get();
  s->signals = std::make_unique<net::signal_set>(s->ioc, SIGINT, SIGTERM);
  s->signals->async_wait([this](const beast::error_code& ec, int) {
    if (ec) {
      return;
    }
    BLOCKRANK_LOG_INFO(impl_->options.logger, "signal received: draining and shutting down");
    // shutdown() joins the I/O threads, so run it off them.
    std::thread([this]() { shutdown(); }).detach();
  });
}

}  // namespace blockrank
