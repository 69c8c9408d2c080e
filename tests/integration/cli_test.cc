// SPDX-License-Identifier: Apache-2.0
// Drives the `blockrank` binary end to end: index → search → eval on the committed sample corpus,
// error reporting on malformed input, --help contents, and the published BM25 reference numbers on
// the real collections in ../shared/data (skipped with a message where that folder is absent).
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.h"

#include <nlohmann/json.hpp>
#include <sys/wait.h>

namespace blockrank {
namespace {

using Result = testing::CommandResult;

Result run(const std::string& args) {
  return testing::run_command(std::string(BLOCKRANK_CLI_PATH) + " " + args + " 2>&1");
}

std::string quote(const std::string& s) {
  return testing::shell_quote(s);
}

class CliTest : public ::testing::Test {
 protected:
  std::string sample(const std::string& f) const {
    return quote(testing::source_dir() + "/examples/sample-corpus/" + f);
  }
  static std::string llama2_tokenizer() {
    return testing::source_dir() + "/.cache/tokenizers/llama2/tokenizer.json";
  }
  // The tiny random reranker of bench/http/make_tiny_model.py in `model` and the sample corpus
  // indexed into `db` (the serve tests' setup).
  void make_tiny_model_and_index(const std::string& model, const std::string& db) {
    ASSERT_EQ(
        std::system(("python3 " + quote(testing::source_dir() + "/bench/http/make_tiny_model.py") +
                     " " + quote(model) + " " + quote(llama2_tokenizer()) + " > /dev/null")
                        .c_str()),
        0);
    ASSERT_EQ(run("index -q --db " + quote(db) + " " + sample("corpus.jsonl")).exit_code, 0);
  }
  testing::TempDir dir_;
};

TEST_F(CliTest, HelpListsSubcommandsAndDefaults) {
  Result r = run("help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* cmd : {"index", "search", "eval"}) {
    EXPECT_NE(r.out.find(cmd), std::string::npos) << r.out;
  }
  r = run("eval --help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("--depth INT=1000"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--k1 FLOAT=1.2"), std::string::npos) << r.out;
  r = run("index --help");
  EXPECT_NE(r.out.find("--batch-size UINT=5000"), std::string::npos) << r.out;
  r = run("nonsense");
  EXPECT_NE(r.exit_code, 0);
}

TEST_F(CliTest, IndexSearchEvalSampleCorpus) {
  const std::string db = quote(dir_.file("db"));
  Result r = run("index -q --db " + db + " " + sample("corpus.jsonl"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("indexed 40 documents"), std::string::npos) << r.out;

  r = run("search --db " + db + " --json -k 3 how do plants make sugar from light");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["results"].size(), 3u);
  EXPECT_EQ(j["results"][0]["doc_id"], "photosynthesis");
  EXPECT_EQ(j["results"][0]["rank"], 1);
  EXPECT_GT(j["results"][0]["score"].get<double>(), j["results"][1]["score"].get<double>());
  EXPECT_FALSE(j["results"][0]["snippet"].get<std::string>().empty());

  const std::string run_file = dir_.file("run.trec");
  r = run("eval --json --db " + db + " --queries " + sample("queries.tsv") + " --qrels " +
          sample("qrels.txt") + " --run-out " + quote(run_file));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const nlohmann::json e = nlohmann::json::parse(r.out);
  EXPECT_EQ(e["queries"], 8);
  // BM25 finds the answer to most of these hand-written queries near the top.
  EXPECT_GT(e["ndcg@10"].get<double>(), 0.7);
  EXPECT_GT(e["mrr@10"].get<double>(), 0.75);
  // Scoring the written run gives the same numbers.
  r = run("eval --json --run " + quote(run_file) + " --qrels " + sample("qrels.txt"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(r.out)["ndcg@10"].get<double>(),
                   e["ndcg@10"].get<double>());

  // A subset of the queries scores those queries only: the judged queries not asked are reported,
  // not averaged in as zeros.
  {
    std::ifstream all(testing::source_dir() + "/examples/sample-corpus/queries.tsv");
    std::ofstream half(dir_.file("half.tsv"));
    std::string line;
    for (int i = 0; i < 4 && std::getline(all, line); ++i) {
      half << line << "\n";
    }
  }
  r = run("eval --json --db " + db + " --queries " + quote(dir_.file("half.tsv")) + " --qrels " +
          sample("qrels.txt"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const nlohmann::json h = nlohmann::json::parse(r.out);
  EXPECT_EQ(h["queries"], 4);
  EXPECT_EQ(h["judged_queries_not_asked"], 4);
  EXPECT_GT(h["ndcg@10"].get<double>(), 0.5);

  // Re-indexing replaces by id: still 40 documents, 40 replaced.
  r = run("index -q --db " + db + " " + sample("corpus.jsonl"));
  EXPECT_NE(r.out.find("indexed 40 documents (40 replaced"), std::string::npos) << r.out;
}

TEST_F(CliTest, MalformedCorpusStopsWithFileAndLine) {
  const std::string corpus = dir_.file("bad.jsonl");
  testing::write_text(
      corpus, "{\"_id\": \"a\", \"text\": \"fine\"}\n{\"_id\": \"b\", \"txt\": \"typo\"}\n");
  const std::string db = quote(dir_.file("db"));
  Result r = run("index -q --db " + db + " " + quote(corpus));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find(corpus + ":2: no text field 'text'"), std::string::npos) << r.out;
  r = run("index -q --skip-bad --db " + db + " " + quote(corpus));
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("1 malformed skipped"), std::string::npos) << r.out;
  r = run("search --db " + quote(dir_.file("missing")) + " anything");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("no index there"), std::string::npos) << r.out;
}

TEST_F(CliTest, TrecDl19RunScoresThePublishedNdcg) {
  BLOCKRANK_REQUIRE_SHARED_DATA("msmarco-dl19");
  const std::string d = testing::shared_data_dir() + "/msmarco-dl19/";
  const Result r = run("eval --json --run " + quote(d + "trec_results_dl19.txt") + " --qrels " +
                       quote(d + "qrels.dl19-passage.txt"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["queries"], 43);
  // Pyserini's published BM25 nDCG@10 for this run is 0.5058.
  EXPECT_NEAR(j["ndcg@10"].get<double>(), 0.5058, 5e-5);
}

TEST_F(CliTest, ArguAnaBm25MatchesPyserini) {
  BLOCKRANK_REQUIRE_SHARED_DATA("arguana");
  const std::string d = testing::shared_data_dir() + "/arguana/";
  const std::string db = quote(dir_.file("arguana"));
  Result r = run("index -q --db " + db + " " + quote(d + "corpus.jsonl.gz"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const std::string args = "eval --json --remove-query --db " + db + " --queries " +
                           quote(d + "queries.jsonl.gz") + " --qrels " +
                           quote(d + "qrels/test.tsv");
  // Anserini's parameters: Pyserini bm25-flat reports 0.3970.
  r = run(args + " --k1 0.9 --b 0.4");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const nlohmann::json flat = nlohmann::json::parse(r.out);
  EXPECT_EQ(flat["queries"], 1406);
  EXPECT_GE(flat["ndcg@10"].get<double>(), 0.39);
  EXPECT_GE(flat["recall@100"].get<double>(), 0.92);
  // Our defaults do better still.
  r = run(args);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_GE(nlohmann::json::parse(r.out)["ndcg@10"].get<double>(), 0.45);
}

TEST_F(CliTest, TokenizeRoundTrip) {
  const std::string tok = llama2_tokenizer();
  if (::access(tok.c_str(), R_OK) != 0) {
    GTEST_SKIP() << "needs .cache/tokenizers (run scripts/tokenizer-reference/setup.sh)";
  }
  const std::string in = dir_.file("in.jsonl");
  testing::write_text(in, "\"Hello world\"\n\"caf\\u00e9 \\u2014 [INST] tabs\\tand  spaces\"\n");
  Result r = run("tokenize --tokenizer " + quote(tok) + " < " + quote(in));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const std::string ids = dir_.file("ids.jsonl");
  testing::write_text(ids, r.out);
  std::vector<nlohmann::json> lines;
  for (const std::string& line : {r.out.substr(0, r.out.find('\n'))}) {
    lines.push_back(nlohmann::json::parse(line));
  }
  ASSERT_TRUE(lines[0].is_array());
  EXPECT_FALSE(lines[0].empty());
  r = run("tokenize --decode --tokenizer " + quote(tok) + " < " + quote(ids));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("\"Hello world\""), std::string::npos) << r.out;
  // A line that is not a JSON string is reported with its line number.
  testing::write_text(in, "\"ok\"\n{not a string}\n");
  r = run("tokenize --tokenizer " + quote(tok) + " < " + quote(in));
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("2"), std::string::npos) << r.out;
}

TEST_F(CliTest, ServeRerankWithATinyModel) {
  if (::access(llama2_tokenizer().c_str(), R_OK) != 0) {
    GTEST_SKIP() << "needs .cache/tokenizers (run scripts/tokenizer-reference/setup.sh)";
  }
  const std::string model = dir_.file("model"), db = dir_.file("db");
  ASSERT_NO_FATAL_FAILURE(make_tiny_model_and_index(model, db));
  const int port = 30000 + static_cast<int>(::getpid() % 20000);
  const std::string log = dir_.file("serve.log");
  const std::string serve = std::string(BLOCKRANK_CLI_PATH) + " serve --db " + quote(db) +
                            " --model " + quote(model) + " --kv-cache " + quote(dir_.file("kv")) +
                            " --port " + std::to_string(port) + " > " + quote(log) +
                            " 2>&1 & echo $!";
  FILE* p = ::popen(serve.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char pid_buf[32] = {0};
  ASSERT_NE(std::fgets(pid_buf, sizeof(pid_buf), p), nullptr);
  ::pclose(p);
  const std::string pid = std::string(pid_buf).substr(0, std::string(pid_buf).find('\n'));
  const std::string url = "http://127.0.0.1:" + std::to_string(port);
  bool ready = false;
  for (int i = 0; i < 300 && !ready; ++i) {
    ready = std::system(("curl -sf " + url + "/ready > /dev/null").c_str()) == 0;
    if (!ready) {
      ::usleep(100000);
    }
  }
  ASSERT_TRUE(ready) << "server did not become ready";
  char buf[4096];
  size_t n = 0;
  auto curl = [&](const std::string& args) {
    FILE* c = ::popen(("curl -s " + args).c_str(), "r");
    std::string out;
    size_t got = 0;
    while ((got = std::fread(buf, 1, sizeof(buf), c)) > 0) {
      out.append(buf, got);
    }
    ::pclose(c);
    return out;
  };
  const std::string search = "-X POST " + url +
                             "/v1/search -d '{\"query\": \"how do plants make sugar from light\", "
                             "\"k\": 3, \"candidates\": 8}'";
  const std::string body = curl(search);
  // --kv-cache: the first search stored block 0 (in the background); the same search again hits
  // it in memory and scores the same.
  std::string metrics;
  for (int i = 0; i < 100; ++i) {
    metrics = curl(url + "/metrics");
    if (metrics.find("blockrank_kv_cache_entries{tier=\"memory\"} 0") == std::string::npos) {
      break;
    }
    ::usleep(50000);
  }
  EXPECT_NE(metrics.find("blockrank_kv_cache_misses_total 1\n"), std::string::npos) << metrics;
  const std::string again = curl(search);
  metrics = curl(url + "/metrics");
  EXPECT_NE(metrics.find("blockrank_kv_cache_hits_total{tier=\"memory\"} 1\n"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("blockrank_kv_cache_disk_enabled 1\n"), std::string::npos);
  EXPECT_EQ(std::system(("kill -TERM " + pid).c_str()), 0);
  for (int i = 0; i < 100 && std::system(("kill -0 " + pid + " 2>/dev/null").c_str()) == 0; ++i) {
    ::usleep(100000);
  }
  const nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  ASSERT_TRUE(j.is_object()) << body;
  EXPECT_TRUE(j["reranked"].get<bool>()) << body;
  ASSERT_EQ(j["results"].size(), 3u);
  const nlohmann::json j2 = nlohmann::json::parse(again, nullptr, false);
  ASSERT_TRUE(j2.is_object()) << again;
  EXPECT_EQ(j2["results"], j["results"]);  // cached scores equal (CPU fp32: bitwise)
  // BlockRank scores are attention mass over the 8 candidates: positive and below 1.
  for (const auto& h : j["results"]) {
    EXPECT_GT(h["score"].get<double>(), 0.0);
    EXPECT_LT(h["score"].get<double>(), 1.0);
  }
  std::string served;
  testing::TempDir unused;
  FILE* lf = std::fopen(log.c_str(), "r");
  while (lf != nullptr && (n = std::fread(buf, 1, sizeof(buf), lf)) > 0) {
    served.append(buf, n);
  }
  if (lf != nullptr) {
    std::fclose(lf);
  }
  EXPECT_NE(served.find("stopped; index committed"), std::string::npos) << served;
}

// A `blockrank serve` in the background on a free port, stopped (SIGTERM) on destruction.
class ServeProcess {
 public:
  ServeProcess(const std::string& args, int port, const std::string& log)
      : url_("http://127.0.0.1:" + std::to_string(port)) {
    const std::string cmd = std::string(BLOCKRANK_CLI_PATH) + " serve " + args + " --port " +
                            std::to_string(port) + " > " + quote(log) + " 2>&1 & echo $!";
    FILE* p = ::popen(cmd.c_str(), "r");
    char pid_buf[32] = {0};
    if (p != nullptr && std::fgets(pid_buf, sizeof(pid_buf), p) != nullptr) {
      pid_ = std::string(pid_buf).substr(0, std::string(pid_buf).find('\n'));
    }
    if (p != nullptr) {
      ::pclose(p);
    }
  }
  ~ServeProcess() {
    if (pid_.empty()) {
      return;
    }
    std::system(("kill -TERM " + pid_).c_str());
    for (int i = 0; i < 100 && std::system(("kill -0 " + pid_ + " 2>/dev/null").c_str()) == 0;
         ++i) {
      ::usleep(100000);
    }
  }
  bool wait_ready() const {
    for (int i = 0; i < 300; ++i) {
      if (std::system(("curl -sf " + url_ + "/ready > /dev/null").c_str()) == 0) {
        return true;
      }
      ::usleep(100000);
    }
    return false;
  }
  std::string get(const std::string& path) const { return curl(url_ + path); }
  std::string search(const std::string& query) const {
    return curl("-X POST " + url_ + "/v1/search -d '{\"query\": \"" + query +
                "\", \"k\": 3, \"candidates\": 8}'");
  }
  const std::string& url() const { return url_; }

  static std::string curl(const std::string& args) {
    FILE* c = ::popen(("curl -s " + args).c_str(), "r");
    std::string out;
    char buf[4096];
    size_t got = 0;
    while (c != nullptr && (got = std::fread(buf, 1, sizeof(buf), c)) > 0) {
      out.append(buf, got);
    }
    if (c != nullptr) {
      ::pclose(c);
    }
    return out;
  }

 private:
  std::string url_;
  std::string pid_;
};

// The value of one Prometheus series in `metrics` (-1 when absent).
double metric(const std::string& metrics, const std::string& series) {
  const size_t at = metrics.find("\n" + series + " ");
  return at == std::string::npos ? -1.0 : std::atof(metrics.c_str() + at + series.size() + 2);
}

// Issue #11: `serve --devices cpu,cpu` runs two replicas fed from one queue. Under concurrent
// requests both replicas take batches, and every result equals the one-replica server's (one
// request per batch on both, so the same computation). --kv-cache with two replicas: replica 0
// keeps the disk tier, no RocksDB LOCK clash. Bad device lists fail with a message.
TEST_F(CliTest, ServeTwoCpuReplicas) {
  if (::access(llama2_tokenizer().c_str(), R_OK) != 0) {
    GTEST_SKIP() << "needs .cache/tokenizers (run scripts/tokenizer-reference/setup.sh)";
  }
  const std::string model = dir_.file("model"), db = dir_.file("db");
  ASSERT_NO_FATAL_FAILURE(make_tiny_model_and_index(model, db));
  const std::string common =
      "--db " + quote(db) + " --model " + quote(model) + " --model-threads 1 --max-batch 1";

  // Bad lists are refused before anything loads; a device that cannot be opened names itself.
  Result r = run("serve " + common + " --gpus 0,x --port 0");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("--gpus '0,x'"), std::string::npos) << r.out;
  r = run("serve " + common + " --gpus 1,1 --port 0");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("listed twice"), std::string::npos) << r.out;
  r = run("serve " + common + " --devices cpu,,cpu --port 0");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("empty entry"), std::string::npos) << r.out;
  r = run("serve " + common + " --devices cpu,nodevice:3 --port 0");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("replica 1 on device 'nodevice:3'"), std::string::npos) << r.out;

  // Two snapshots of one index cannot be opened at once (Xapian's write lock): a copy each.
  ASSERT_EQ(std::system(("cp -r " + quote(db) + " " + quote(dir_.file("db2"))).c_str()), 0);
  const int port = 30000 + static_cast<int>(::getpid() % 20000);
  ServeProcess one(common, port, dir_.file("one.log"));
  ServeProcess two("--db " + quote(dir_.file("db2")) + " --model " + quote(model) +
                       " --model-threads 1 --max-batch 1 --devices cpu,cpu --kv-cache " +
                       quote(dir_.file("kv")),
                   port + 1, dir_.file("two.log"));
  ASSERT_TRUE(one.wait_ready()) << "one-replica server did not become ready";
  ASSERT_TRUE(two.wait_ready()) << "two-replica server did not become ready";
  EXPECT_EQ(nlohmann::json::parse(two.get("/health"))["replicas"], 2);
  EXPECT_EQ(nlohmann::json::parse(one.get("/health"))["replicas"], 1);

  const std::vector<std::string> queries = {"how do plants make sugar from light",
                                            "what causes earthquakes",
                                            "how do vaccines work",
                                            "phases of the moon",
                                            "brewing coffee at home",
                                            "hash tables and compression"};
  // Rounds of concurrent searches (one curl per query, all at once) until both replicas have taken
  // work; the scheduler decides which thread wakes, so a round may by chance land on one replica.
  std::string metrics;
  int rounds = 0;
  for (; rounds < 10; ++rounds) {
    std::string script;
    for (size_t q = 0; q < queries.size(); ++q) {
      script += "curl -s -o /dev/null -X POST " + two.url() + "/v1/search -d '{\"query\": \"" +
                queries[q] + "\", \"k\": 3, \"candidates\": 8}' & ";
    }
    testing::write_text(dir_.file("round.sh"), script + "wait\n");
    ASSERT_EQ(std::system(("bash " + quote(dir_.file("round.sh"))).c_str()), 0);
    metrics = two.get("/metrics");
    if (metric(metrics, "blockrank_rerank_batches_total{replica=\"0\"}") > 0 &&
        metric(metrics, "blockrank_rerank_batches_total{replica=\"1\"}") > 0) {
      break;
    }
  }
  const double batches0 = metric(metrics, "blockrank_rerank_batches_total{replica=\"0\"}");
  const double batches1 = metric(metrics, "blockrank_rerank_batches_total{replica=\"1\"}");
  std::printf("two CPU replicas after %d round(s) of %zu concurrent searches: batches %g + %g\n",
              rounds + 1, queries.size(), batches0, batches1);
  EXPECT_GT(batches0, 0) << metrics;
  EXPECT_GT(batches1, 0) << metrics;
  EXPECT_EQ(batches0 + batches1, static_cast<double>((rounds + 1) * queries.size())) << metrics;
  EXPECT_EQ(metric(metrics, "blockrank_model_replicas"), 2) << metrics;
  EXPECT_EQ(metric(metrics, "blockrank_kv_cache_disk_enabled"), 1) << metrics;
  EXPECT_EQ(metric(one.get("/metrics"), "blockrank_model_replicas"), 1);

  // The same results as one replica, whichever replica served them.
  for (const std::string& q : queries) {
    for (int i = 0; i < 2; ++i) {
      const nlohmann::json a = nlohmann::json::parse(one.search(q), nullptr, false);
      const nlohmann::json b = nlohmann::json::parse(two.search(q), nullptr, false);
      ASSERT_TRUE(a.is_object() && b.is_object()) << q;
      EXPECT_TRUE(b["reranked"].get<bool>()) << q;
      EXPECT_EQ(a["results"], b["results"]) << q;
    }
  }
}

}  // namespace
}  // namespace blockrank
