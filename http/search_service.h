// SPDX-License-Identifier: Apache-2.0
// The index behind the server: BM25 search from many threads (a pool of Searchers, since Xapian
// databases are not thread-safe) and live writes through one IndexWriter. A write commits before it
// returns and bumps a generation counter; a pooled Searcher reopens when it sees a newer
// generation, so later searches see the change.
//
// Thread-safety: all methods may be called concurrently.
#ifndef BLOCKRANK_HTTP_SEARCH_SERVICE_H_
#define BLOCKRANK_HTTP_SEARCH_SERVICE_H_

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "indexer/index_writer.h"
#include "indexer/searcher.h"

namespace blockrank {

class SearchService {
 public:
  /// Opens (creating if missing) the index at `db_dir` for reading and writing.
  static Status open(const std::string& db_dir,
                     const SearchOptions& options,
                     std::shared_ptr<Logger> logger,
                     std::unique_ptr<SearchService>* out);

  Status search(const std::string& query,
                int k,
                size_t snippet_bytes,
                std::vector<SearchHit>* hits);
  Status get(const std::string& id, SearchHit* hit);
  /// Adds or replaces documents and commits them atomically (all or none).
  Status upsert(const std::vector<CorpusDocument>& docs, int* added, int* replaced);
  Status remove(const std::string& id, bool* found);
  uint64_t doc_count();
  /// Commits anything pending (nothing is, writes commit at once) and releases the write lock.
  Status close();

 private:
  struct Pooled {
    std::unique_ptr<Searcher> searcher;
    uint64_t generation = 0;
  };
  Status borrow(std::unique_ptr<Pooled>* out);
  void give_back(std::unique_ptr<Pooled> p);

  std::string db_dir_;
  SearchOptions options_;
  std::shared_ptr<Logger> logger_;
  std::mutex write_mu_;
  std::unique_ptr<IndexWriter> writer_;
  std::atomic<uint64_t> generation_{1};
  std::mutex pool_mu_;
  std::vector<std::unique_ptr<Pooled>> pool_;
};

}  // namespace blockrank

#endif  // BLOCKRANK_HTTP_SEARCH_SERVICE_H_
