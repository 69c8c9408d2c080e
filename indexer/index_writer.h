// SPDX-License-Identifier: Apache-2.0
// Writes documents into a Xapian index: analysed terms for BM25, the external id as a unique term
// (re-indexing an id replaces the document), and the original id/title/text as JSON document data
// so the reranker can read the text back. Writes are batched into Xapian transactions: a batch is
// committed atomically or not at all, so an interrupted or failed run leaves the index at its last
// committed state.
//
// Thread-safety: one IndexWriter per database; Xapian allows a single writer process at a time (a
// second gets kUnavailable).
#ifndef BLOCKRANK_INDEXER_INDEX_WRITER_H_
#define BLOCKRANK_INDEXER_INDEX_WRITER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "blockrank/status.h"
#include "indexer/corpus_reader.h"
#include "plugin/base/logging.h"

namespace blockrank {

struct IndexWriterOptions {
  /// Documents per atomic commit. Default: 5000.
  size_t batch_size = 5000;
  /// Snowball stemmer name, recorded in the index so searches analyse queries the same way.
  /// Default: "english".
  std::string language = "english";
  /// Remove Lucene's English stop words. Default: true.
  bool stopwords = true;
  std::shared_ptr<Logger> logger = Logger::null_logger();
};

/// Metadata keys stored in the index.
inline constexpr char kMetaLanguage[] = "blockrank.language";
inline constexpr char kMetaStopwords[] = "blockrank.stopwords";
inline constexpr char kMetaFormat[] = "blockrank.format";

class IndexWriter {
 public:
  ~IndexWriter();
  IndexWriter(const IndexWriter&) = delete;
  IndexWriter& operator=(const IndexWriter&) = delete;

  /// Opens (creating if needed) the index at `db_dir`. kUnavailable if another writer holds it;
  /// kInvalidArgument if it was built with different analysis settings.
  static Status open(const std::string& db_dir,
                     const IndexWriterOptions& options,
                     std::unique_ptr<IndexWriter>* out);

  /// Adds or replaces (same id) a document in the current batch; commits when the batch is full.
  /// Sets *replaced when a document with that id was already in the index.
  Status add(const CorpusDocument& doc, bool* replaced = nullptr);
  /// Deletes the document with this id; *found says whether it existed.
  Status remove(const std::string& id, bool* found);
  /// Commits the open batch atomically.
  Status commit();
  /// Drops the open batch; the index stays at its last commit.
  void cancel();

  uint64_t uncommitted() const { return in_batch_; }
  uint64_t doc_count() const;

 private:
  struct Impl;
  explicit IndexWriter(std::unique_ptr<Impl> impl);
  Status begin_if_needed();
  std::unique_ptr<Impl> impl_;
  uint64_t in_batch_ = 0;
};

/// Statistics of an index_files() run.
struct IndexRunStats {
  uint64_t documents = 0;   ///< documents written (added or replaced)
  uint64_t replaced = 0;    ///< of which replaced an existing id
  uint64_t skipped = 0;     ///< malformed records skipped (--skip-bad)
  uint64_t bytes = 0;       ///< input bytes read (compressed size for .gz)
  uint64_t text_bytes = 0;  ///< uncompressed title+text bytes indexed
  double seconds = 0;
};

struct IndexRunOptions {
  IndexWriterOptions writer;
  CorpusReaderOptions reader;
  /// Skip malformed records (counted, first few reported) instead of stopping. Default: false.
  bool skip_bad = false;
  /// Draw progress on this stream (nullptr: none).
  FILE* progress = nullptr;
  /// Set to true (e.g. from a signal handler) to stop after the current document; the open batch
  /// is dropped and kCancelled returned.
  const std::atomic<bool>* cancel = nullptr;
};

/// Indexes every file into `db_dir`. On a malformed record without skip_bad, or on cancel, the open
/// batch is dropped and the error returned; earlier batches stay committed.
Status index_files(const std::string& db_dir,
                   const std::vector<std::string>& files,
                   const IndexRunOptions& options,
                   IndexRunStats* stats);

}  // namespace blockrank

#endif  // BLOCKRANK_INDEXER_INDEX_WRITER_H_
