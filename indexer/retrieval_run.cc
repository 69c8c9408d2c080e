// SPDX-License-Identifier: Apache-2.0
#include "indexer/retrieval_run.h"

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

namespace blockrank {

Status run_queries(const std::string& db_dir,
                   const std::vector<EvalQuery>& queries,
                   const RetrievalRunOptions& options,
                   Run* run,
                   RetrievalRunStats* stats) {
  run->clear();
  *stats = RetrievalRunStats();
  stats->latencies_ms.assign(queries.size(), 0.0);
  const int threads = std::max(1, std::min<int>(options.threads, static_cast<int>(queries.size())));
  SearchOptions so = options.search;
  so.fetch_text = false;
  std::vector<std::unique_ptr<Searcher>> searchers(static_cast<size_t>(threads));
  for (auto& s : searchers) {
    BLOCKRANK_RETURN_IF_ERROR(Searcher::open(db_dir, so, &s));
  }
  std::vector<std::vector<RunEntry>> results(queries.size());
  std::atomic<size_t> next{0};
  std::mutex error_mu;
  Status first_error;
  const auto start = std::chrono::steady_clock::now();
  auto worker = [&](Searcher* searcher) {
    std::vector<SearchHit> hits;
    while (true) {
      const size_t i = next.fetch_add(1);
      if (i >= queries.size()) {
        return;
      }
      const auto t0 = std::chrono::steady_clock::now();
      // One extra hit so that removing the query's own document still leaves `depth`.
      const Status st =
          searcher->search(queries[i].text, options.depth + (options.remove_query ? 1 : 0), &hits);
      stats->latencies_ms[i] =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (!st.is_ok()) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (first_error.is_ok()) {
          first_error = st.with_context("query " + queries[i].id);
        }
        return;
      }
      for (const SearchHit& h : hits) {
        if (options.remove_query && h.id == queries[i].id) {
          continue;
        }
        if (static_cast<int>(results[i].size()) < options.depth) {
          results[i].push_back(RunEntry{h.id, h.score});
        }
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) {
    pool.emplace_back(worker, searchers[static_cast<size_t>(t)].get());
  }
  worker(searchers[0].get());
  for (auto& th : pool) {
    th.join();
  }
  BLOCKRANK_RETURN_IF_ERROR(first_error);
  stats->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (size_t i = 0; i < queries.size(); ++i) {
    (*run)[queries[i].id] = std::move(results[i]);
  }
  return Status::ok();
}

}  // namespace blockrank
