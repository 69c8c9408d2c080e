// SPDX-License-Identifier: Apache-2.0
// The HTTP server on loopback, driven over real sockets: every endpoint, the error paths (malformed
// JSON, wrong types, missing fields, empty query, too many/long documents, invalid UTF-8, oversized
// bodies, unknown routes and methods), the model worker (batching, a full queue → 503 +
// Retry-After, deadlines), and a restart that keeps documents added over HTTP. A deterministic fake
// reranker stands in for the model so the tests need no LibTorch.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <thread>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <gtest/gtest.h>

#include "http/api.h"
#include "http/search_service.h"
#include "http/server.h"
#include "indexer/index_writer.h"
#include "test_util.h"

#include <nlohmann/json.hpp>
#include <sys/stat.h>

namespace blockrank {
namespace {

namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace net = boost::asio;
using json = nlohmann::json;

struct Response {
  int status = 0;
  std::string body;
  std::string retry_after;
  std::string content_type;
};

Response request(int port,
                 bhttp::verb method,
                 const std::string& target,
                 const std::string& body = "",
                 const std::string& raw = "") {
  net::io_context ioc;
  net::ip::tcp::socket socket(ioc);
  socket.connect({net::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)});
  if (!raw.empty()) {
    net::write(socket, net::buffer(raw));
  } else {
    bhttp::request<bhttp::string_body> req{method, target, 11};
    req.set(bhttp::field::host, "127.0.0.1");
    req.set(bhttp::field::content_type, "application/json");
    req.body() = body;
    req.prepare_payload();
    // The server may answer (413) and stop reading before the body is sent: ignore write errors
    // and read whatever response came back.
    beast::error_code write_ec;
    bhttp::write(socket, req, write_ec);
  }
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(64u << 20);
  beast::error_code ec;
  bhttp::read(socket, buffer, parser, ec);
  Response r;
  if (ec) {
    r.status = -1;
    r.body = ec.message();
    return r;
  }
  const auto& res = parser.get();
  r.status = static_cast<int>(res.result_int());
  r.body = res.body();
  r.retry_after = std::string(res[bhttp::field::retry_after]);
  r.content_type = std::string(res[bhttp::field::content_type]);
  return r;
}

Response post(int port, const std::string& target, const std::string& body) {
  return request(port, bhttp::verb::post, target, body);
}

// Scores a document by how many query words it contains; can be told to block so the queue fills.
class FakeReranker : public RerankBackend {
 public:
  Status rerank(const std::vector<RerankRequest>& requests,
                std::vector<RerankResult>* results) override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&]() { return !blocked_; });
    }
    max_batch_seen = std::max<int>(max_batch_seen, static_cast<int>(requests.size()));
    calls.fetch_add(1);
    results->clear();
    for (const RerankRequest& r : requests) {
      RerankResult out;
      for (const RerankDocument& d : r.documents) {
        float s = 0;
        std::string text = d.title + " " + d.text;
        size_t pos = 0;
        std::string q = r.query + " ";
        while ((pos = q.find(' ')) != std::string::npos) {
          const std::string w = q.substr(0, pos);
          q.erase(0, pos + 1);
          if (!w.empty() && text.find(w) != std::string::npos) {
            s += 1;
          }
        }
        // Prefer shorter documents on ties, so the order differs from BM25's.
        out.scores.push_back(s + 1.0f / (1.0f + static_cast<float>(d.text.size())));
        out.total_tokens += static_cast<int64_t>(d.text.size() / 4);
      }
      results->push_back(std::move(out));
    }
    return Status::ok();
  }
  std::string model_name() const override { return "fake"; }
  // A KV cache that hits in memory once per call, so /metrics shows counters that move.
  RerankBackendCacheStats cache_stats() const override {
    RerankBackendCacheStats s;
    s.enabled = true;
    s.lookups = static_cast<uint64_t>(calls.load()) + 2;
    s.memory_hits = static_cast<uint64_t>(calls.load());
    s.disk_hits = 1;
    s.misses = 1;
    s.hit_tokens = 32 * s.memory_hits;
    s.corruptions = 1;
    s.puts_dropped = 2;
    s.disk_enabled = true;
    return s;
  }
  void block(bool b) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      blocked_ = b;
    }
    cv_.notify_all();
  }
  std::atomic<int> calls{0};
  std::atomic<int> max_batch_seen{0};

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool blocked_ = false;
};

class HttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = dir_.file("db");
    IndexRunOptions opts;
    IndexRunStats stats;
    ASSERT_OK(index_files(db_, {testing::source_dir() + "/examples/sample-corpus/corpus.jsonl"},
                          opts, &stats));
    start(/*with_model=*/true);
  }
  void TearDown() override { stop(); }

  void start(bool with_model, ServerOptions options = ServerOptions()) {
    ASSERT_OK(SearchService::open(db_, SearchOptions(), Logger::null_logger(), &search_));
    options.port = 0;
    options.io_threads = 2;
    ASSERT_OK(Server::start(options, search_.get(), with_model ? &fake_ : nullptr, &server_));
    port_ = server_->port();
  }
  void stop() {
    fake_.block(false);
    server_.reset();
    if (search_) {
      EXPECT_OK(search_->close());
      search_.reset();
    }
  }

  testing::TempDir dir_;
  std::string db_;
  FakeReranker fake_;
  std::unique_ptr<SearchService> search_;
  std::unique_ptr<Server> server_;
  int port_ = 0;
};

TEST_F(HttpTest, HealthReadyOpenApiPage) {
  Response r = request(port_, bhttp::verb::get, "/health");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body)["status"], "ok");
  r = request(port_, bhttp::verb::get, "/ready");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body)["documents"], 40);
  r = request(port_, bhttp::verb::get, "/openapi.json");
  ASSERT_EQ(r.status, 200);
  const json spec = json::parse(r.body);
  EXPECT_EQ(spec["openapi"], "3.1.0");
  for (const char* path : {"/v1/search", "/v1/rerank", "/v1/documents", "/v1/documents/{id}",
                           "/health", "/ready", "/metrics", "/openapi.json", "/"}) {
    EXPECT_TRUE(spec["paths"].contains(path)) << path;
  }
  r = request(port_, bhttp::verb::get, "/");
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.content_type.find("text/html"), std::string::npos);
  EXPECT_NE(r.body.find("/v1/search"), std::string::npos);
}

TEST_F(HttpTest, SearchBm25AndReranked) {
  Response r = post(port_, "/v1/search", R"({"query": "sourdough bread yeast", "rerank": false})");
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  EXPECT_FALSE(j["reranked"]);
  ASSERT_GE(j["results"].size(), 1u);
  EXPECT_EQ(j["results"][0]["doc_id"], "bread");
  EXPECT_EQ(j["results"][0]["rank"], 1);
  EXPECT_EQ(j["results"][0]["bm25_rank"], 1);
  EXPECT_FALSE(j["results"][0]["snippet"].get<std::string>().empty());
  EXPECT_TRUE(j["timings"].contains("retrieve_ms"));

  r = post(port_, "/v1/search", R"({"query": "the moon and the sun", "k": 3, "candidates": 20})");
  ASSERT_EQ(r.status, 200) << r.body;
  j = json::parse(r.body);
  EXPECT_TRUE(j["reranked"]);
  ASSERT_EQ(j["results"].size(), 3u);
  EXPECT_GE(fake_.calls.load(), 1);
  // Scores are the fake reranker's, in descending order, with BM25 ranks kept alongside.
  EXPECT_GE(j["results"][0]["score"].get<double>(), j["results"][1]["score"].get<double>());
  for (const json& h : j["results"]) {
    EXPECT_GE(h["bm25_rank"].get<int>(), 1);
    EXPECT_GT(h["bm25_score"].get<double>(), 0);
  }
}

// The fusion of BM25 and reranker scores: the server's default, a request's override, and the
// scores it reports (score = fused, rerank_score = the model's, bm25_score = BM25's).
TEST_F(HttpTest, SearchFusionOrdersByServerDefaultOrRequest) {
  const std::string query = R"("query": "the moon and the sun", "k": 8, "candidates": 20)";
  // Default server: pure rerank, ordered by the model's score.
  Response r = post(port_, "/v1/search", "{" + query + "}");
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  EXPECT_EQ(j["fusion"], "rerank");
  ASSERT_GE(j["results"].size(), 3u);
  for (size_t i = 0; i < j["results"].size(); ++i) {
    const json& h = j["results"][i];
    EXPECT_DOUBLE_EQ(h["score"].get<double>(), h["rerank_score"].get<double>());
    if (i > 0) {
      EXPECT_GE(j["results"][i - 1]["rerank_score"].get<double>(), h["rerank_score"].get<double>());
    }
  }
  bool reordered = false;  // the fake model's order differs from BM25's somewhere in the top 8
  for (const json& h : j["results"]) {
    reordered = reordered || h["rank"] != h["bm25_rank"];
  }
  EXPECT_TRUE(reordered) << r.body;

  // interpolate:1 is BM25's order; the score is the fused one, the model's is still reported.
  r = post(port_, "/v1/search", "{" + query + R"(, "fusion": "interpolate:1"})");
  ASSERT_EQ(r.status, 200) << r.body;
  j = json::parse(r.body);
  EXPECT_EQ(j["fusion"], "interpolate:1");
  for (const json& h : j["results"]) {
    EXPECT_EQ(h["rank"], h["bm25_rank"]) << r.body;
    EXPECT_TRUE(h.contains("rerank_score"));
    EXPECT_GE(h["score"].get<double>(), 0.0);
    EXPECT_LE(h["score"].get<double>(), 1.0);
  }
  EXPECT_DOUBLE_EQ(j["results"][0]["score"].get<double>(), 1.0);  // min-max: the top BM25 hit

  // A server whose default is interpolate:0.5: every candidate comes back (k = candidates), and
  // each score is 0.5 x min-max(BM25) + 0.5 x min-max(model) recomputed from the reported scores.
  stop();
  ServerOptions options;
  options.fusion.method = FusionMethod::kInterpolate;
  options.fusion.alpha = 0.5;
  start(/*with_model=*/true, options);
  r = post(port_, "/v1/search", R"({"query": "the moon and the sun", "k": 20, "candidates": 20})");
  ASSERT_EQ(r.status, 200) << r.body;
  j = json::parse(r.body);
  EXPECT_EQ(j["fusion"], "interpolate:0.5");
  const json& hits = j["results"];
  ASSERT_GE(hits.size(), 3u);
  double b_lo = 1e300, b_hi = -1e300, m_lo = 1e300, m_hi = -1e300;
  for (const json& h : hits) {
    b_lo = std::min(b_lo, h["bm25_score"].get<double>());
    b_hi = std::max(b_hi, h["bm25_score"].get<double>());
    m_lo = std::min(m_lo, h["rerank_score"].get<double>());
    m_hi = std::max(m_hi, h["rerank_score"].get<double>());
  }
  ASSERT_GT(b_hi, b_lo);
  ASSERT_GT(m_hi, m_lo);
  for (size_t i = 0; i < hits.size(); ++i) {
    const double want = 0.5 * (hits[i]["bm25_score"].get<double>() - b_lo) / (b_hi - b_lo) +
                        0.5 * (hits[i]["rerank_score"].get<double>() - m_lo) / (m_hi - m_lo);
    EXPECT_NEAR(hits[i]["score"].get<double>(), want, 1e-6) << hits[i].dump();
    if (i > 0) {
      EXPECT_GE(hits[i - 1]["score"].get<double>(), hits[i]["score"].get<double>());
    }
  }
  // BM25 only: no fusion field, no rerank_score.
  r = post(port_, "/v1/search", "{" + query + R"(, "rerank": false})");
  j = json::parse(r.body);
  EXPECT_FALSE(j.contains("fusion"));
  EXPECT_FALSE(j["results"][0].contains("rerank_score"));
}

TEST(ModelFusionTest, ReadsBlockrankJson) {
  testing::TempDir dir;
  const std::string m = dir.file("model");
  ASSERT_EQ(::mkdir(m.c_str(), 0755), 0);
  StatusOr<FusionOptions> f = model_fusion(m);  // no blockrank.json: pure rerank
  ASSERT_OK(f.status());
  EXPECT_EQ(f->method, FusionMethod::kRerank);
  const auto write = [&](const std::string& text) {
    testing::write_text(m + "/blockrank.json", text);
  };
  write(R"({"scoring_layer": 3})");
  f = model_fusion(m);
  ASSERT_OK(f.status());
  EXPECT_EQ(f->method, FusionMethod::kRerank);
  write(R"({"scoring_layer": 3, "fusion": "interpolate:0.9"})");
  f = model_fusion(m);
  ASSERT_OK(f.status());
  EXPECT_EQ(f->method, FusionMethod::kInterpolate);
  EXPECT_DOUBLE_EQ(f->alpha, 0.9);
  for (const char* bad : {R"({"fusion": "interpolate:2"})", R"({"fusion": 0.9})",
                          R"({"fusion": ""})", "{oops", "[]"}) {
    write(bad);
    f = model_fusion(m);
    ASSERT_FALSE(f.is_ok()) << bad;
    EXPECT_EQ(f.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(f.status().message().find("blockrank.json"), std::string::npos)
        << f.status().to_string();
  }
}

TEST_F(HttpTest, RerankCohereShape) {
  Response r = post(port_, "/v1/rerank",
                    R"({"model": "x", "query": "red planet mars",
                        "documents": ["bread and butter", {"text": "mars is the red planet", "title": "Mars"}, "red"],
                        "top_n": 2, "return_documents": true})");
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = json::parse(r.body);
  EXPECT_EQ(j["model"], "fake");
  ASSERT_EQ(j["results"].size(), 2u);
  EXPECT_EQ(j["results"][0]["index"], 1);
  EXPECT_EQ(j["results"][0]["document"]["text"], "mars is the red planet");
  EXPECT_GE(j["results"][0]["relevance_score"].get<double>(),
            j["results"][1]["relevance_score"].get<double>());
  EXPECT_TRUE(j["usage"].contains("total_tokens"));
  // The alias routes answer the same.
  EXPECT_EQ(post(port_, "/rerank", R"({"query": "q", "documents": ["a"]})").status, 200);
}

TEST_F(HttpTest, KvCacheCountersOnMetrics) {
  ASSERT_EQ(post(port_, "/v1/rerank", R"({"query": "q", "documents": ["a"]})").status, 200);
  ASSERT_EQ(post(port_, "/v1/rerank", R"({"query": "q", "documents": ["b"]})").status, 200);
  const std::string m = request(port_, bhttp::verb::get, "/metrics").body;
  EXPECT_NE(m.find("# TYPE blockrank_kv_cache_hits_total counter"), std::string::npos) << m;
  EXPECT_NE(m.find("blockrank_kv_cache_hits_total{tier=\"memory\"} 2\n"), std::string::npos);
  EXPECT_NE(m.find("blockrank_kv_cache_hits_total{tier=\"disk\"} 1\n"), std::string::npos);
  EXPECT_NE(m.find("blockrank_kv_cache_misses_total 1\n"), std::string::npos);
  EXPECT_NE(m.find("blockrank_kv_cache_hit_tokens_total 64\n"), std::string::npos);
  EXPECT_NE(m.find("blockrank_kv_cache_corruptions_total 1\n"), std::string::npos);
  EXPECT_NE(m.find("blockrank_kv_cache_dropped_puts_total 2\n"), std::string::npos);
  EXPECT_NE(m.find("blockrank_kv_cache_evictions_total{tier=\"disk\"} 0\n"), std::string::npos);
  EXPECT_NE(m.find("blockrank_kv_cache_disk_enabled 1\n"), std::string::npos);
}

TEST_F(HttpTest, BadRequestsGet4xxJsonAndServerKeepsServing) {
  struct Case {
    const char* target;
    std::string body;
    int status;
    const char* needle;
  };
  const std::vector<Case> cases = {
      {"/v1/search", "{not json", 400, "malformed JSON"},
      {"/v1/search", "[1,2]", 400, "must be a JSON object"},
      {"/v1/search", R"({"k": 3})", 400, "'query' is required"},
      {"/v1/search", R"({"query": 5})", 400, "'query' must be a string"},
      {"/v1/search", R"({"query": "   "})", 400, "must not be empty"},
      {"/v1/search", R"({"query": "x", "k": "ten"})", 400, "'k' must be an integer"},
      {"/v1/search", R"({"query": "x", "k": 100000})", 400, "between 1 and 1000"},
      {"/v1/search", R"({"query": "x", "rerank": "yes"})", 400, "true or false"},
      {"/v1/search", std::string("{\"query\": \"caf\xC3\x28\"}"), 400, "not valid UTF-8"},
      {"/v1/search", R"({"query": "x", "fusion": "blend"})", 400, "field 'fusion'"},
      {"/v1/search", R"({"query": "x", "fusion": "interpolate:1.5"})", 400, "field 'fusion'"},
      {"/v1/search", R"({"query": "x", "fusion": 0.5})", 400, "'fusion' must be a string"},
      {"/v1/rerank", R"({"query": "x"})", 400, "'documents' is required"},
      {"/v1/rerank", R"({"query": "x", "documents": []})", 400, "must not be empty"},
      {"/v1/rerank", R"({"query": "x", "documents": [3]})", 400, "documents[0]"},
      {"/v1/rerank", R"({"query": "x", "documents": [{"title": "t"}]})", 400,
       "documents[0]: field 'text' is required"},
      {"/v1/documents", R"({"documents": [{"text": "no id"}]})", 400, "'id' is required"},
      {"/v1/documents", R"({"docs": []})", 400, "'documents' is required"},
  };
  for (const Case& c : cases) {
    const Response r = post(port_, c.target, c.body);
    EXPECT_EQ(r.status, c.status) << c.target << " " << c.body << " -> " << r.body;
    const json j = json::parse(r.body, nullptr, false);
    ASSERT_TRUE(j.is_object()) << r.body;
    EXPECT_TRUE(j["error"].contains("code"));
    EXPECT_NE(j["error"]["message"].get<std::string>().find(c.needle), std::string::npos)
        << c.body << " -> " << r.body;
  }
  // Too many and too long documents.
  json many = {{"query", "x"}, {"documents", json::array()}};
  for (int i = 0; i < 1001; ++i) {
    many["documents"].push_back("d");
  }
  EXPECT_EQ(post(port_, "/v1/rerank", many.dump()).status, 400);
  json big = {{"query", "x"}, {"documents", {std::string(300000, 'a')}}};
  EXPECT_EQ(post(port_, "/v1/rerank", big.dump()).status, 400);
  // Oversized body: 413 before parsing.
  const Response huge = post(port_, "/v1/search", std::string(9u << 20, ' '));
  EXPECT_EQ(huge.status, 413) << huge.body;
  // Unknown route and method; malformed HTTP.
  EXPECT_EQ(request(port_, bhttp::verb::get, "/v1/nothing").status, 404);
  EXPECT_EQ(request(port_, bhttp::verb::get, "/v1/search").status, 405);
  EXPECT_EQ(request(port_, bhttp::verb::put, "/health").status, 405);
  EXPECT_EQ(request(port_, bhttp::verb::get, "", "", "GARBAGE\r\n\r\n").status, 400);
  // Still serving.
  EXPECT_EQ(post(port_, "/v1/search", R"({"query": "bread"})").status, 200);
  const std::string metrics = request(port_, bhttp::verb::get, "/metrics").body;
  EXPECT_NE(metrics.find("blockrank_http_requests_total{route=\"/v1/search\",status=\"400\"}"),
            std::string::npos);
}

TEST_F(HttpTest, LiveDocumentsAndRestartKeepsThem) {
  Response r = post(
      port_, "/v1/documents",
      R"({"documents": [{"id": "kite", "title": "Kites", "text": "Kites fly when wind lifts them"},
                                      {"id": "bread", "text": "replaced bread text about kites"}]})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["added"], 1);
  EXPECT_EQ(json::parse(r.body)["replaced"], 1);
  r = post(port_, "/v1/search", R"({"query": "kites wind", "rerank": false})");
  EXPECT_EQ(json::parse(r.body)["results"][0]["doc_id"], "kite");
  r = request(port_, bhttp::verb::get, "/v1/documents/kite");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body)["title"], "Kites");
  EXPECT_EQ(request(port_, bhttp::verb::get, "/v1/documents/missing").status, 404);
  EXPECT_EQ(request(port_, bhttp::verb::delete_, "/v1/documents/moon").status, 200);
  EXPECT_EQ(request(port_, bhttp::verb::delete_, "/v1/documents/moon").status, 404);

  // Restart: what was added over HTTP is still there, the deletion too.
  stop();
  start(/*with_model=*/false);
  r = request(port_, bhttp::verb::get, "/v1/documents/kite");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["text"], "Kites fly when wind lifts them");
  EXPECT_EQ(request(port_, bhttp::verb::get, "/v1/documents/moon").status, 404);
  EXPECT_EQ(json::parse(request(port_, bhttp::verb::get, "/ready").body)["documents"], 40);
  // Without a model: search is BM25 only and /v1/rerank says why it cannot serve.
  r = post(port_, "/v1/search", R"({"query": "kites"})");
  EXPECT_FALSE(json::parse(r.body)["reranked"]);
  r = post(port_, "/v1/rerank", R"({"query": "q", "documents": ["a"]})");
  EXPECT_EQ(r.status, 503);
  EXPECT_NE(r.body.find("no model is loaded"), std::string::npos);
}

TEST_F(HttpTest, FullQueueGets503WithRetryAfterAndBatchesForm) {
  stop();
  ServerOptions o;
  o.queue_capacity = 2;
  o.max_batch = 8;
  start(/*with_model=*/true, o);
  fake_.block(true);
  // One request is taken by the (blocked) worker, two wait in the queue, the rest are refused.
  std::vector<std::thread> clients;
  std::vector<Response> results(8);
  for (int i = 0; i < 8; ++i) {
    clients.emplace_back([&, i]() {
      results[static_cast<size_t>(i)] =
          post(port_, "/v1/rerank", R"({"query": "bread", "documents": ["a", "bread b"]})");
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  fake_.block(false);
  for (auto& t : clients) {
    t.join();
  }
  int ok = 0;
  int busy = 0;
  for (const Response& r : results) {
    if (r.status == 200) {
      ++ok;
    } else if (r.status == 503) {
      ++busy;
      EXPECT_EQ(r.retry_after, "1");
    }
  }
  EXPECT_EQ(ok + busy, 8);
  EXPECT_GE(ok, 3);
  EXPECT_GE(busy, 1);
  // The two queued requests were handed to the model together.
  EXPECT_GE(fake_.max_batch_seen.load(), 2);
  const std::string metrics = request(port_, bhttp::verb::get, "/metrics").body;
  EXPECT_NE(metrics.find("blockrank_rerank_batch_size_bucket"), std::string::npos);
  EXPECT_NE(metrics.find("blockrank_rerank_queue_depth"), std::string::npos);
}

TEST_F(HttpTest, DeadlinePassedInQueueIs504) {
  stop();
  ServerOptions o;
  o.request_timeout_ms = 300;
  start(/*with_model=*/true, o);
  fake_.block(true);
  std::thread first([&]() { post(port_, "/v1/rerank", R"({"query": "a", "documents": ["a"]})"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  Response second;
  std::thread t(
      [&]() { second = post(port_, "/v1/rerank", R"({"query": "b", "documents": ["b"]})"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  fake_.block(false);
  first.join();
  t.join();
  EXPECT_EQ(second.status, 504) << second.body;
}

}  // namespace
}  // namespace blockrank
