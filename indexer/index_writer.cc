// SPDX-License-Identifier: Apache-2.0
#include "indexer/index_writer.h"

#include <chrono>

#include <xapian.h>

#include "indexer/analyzer.h"
#include "indexer/xapian_status.h"
#include "plugin/base/progress.h"

#include <nlohmann/json.hpp>

namespace blockrank {

struct IndexWriter::Impl {
  Xapian::WritableDatabase db;
  Analyzer analyzer;
  IndexWriterOptions options;
  bool in_transaction = false;

  Impl(Xapian::WritableDatabase d, const IndexWriterOptions& o)
      : db(std::move(d)), analyzer(o.language, o.stopwords), options(o) {}
};

IndexWriter::IndexWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

IndexWriter::~IndexWriter() {
  // Never commit implicitly: an uncommitted batch at destruction is dropped (Xapian's own
  // WritableDatabase destructor would commit it).
  cancel();
}

Status IndexWriter::open(const std::string& db_dir,
                         const IndexWriterOptions& options,
                         std::unique_ptr<IndexWriter>* out) {
  if (options.batch_size == 0) {
    return Status::invalid_argument("batch size must be at least 1");
  }
  try {
    Xapian::WritableDatabase db(db_dir, Xapian::DB_CREATE_OR_OPEN);
    const std::string stop = options.stopwords ? "lucene-english" : "none";
    const std::string lang = db.get_metadata(kMetaLanguage);
    if (db.get_doccount() > 0 && !lang.empty() &&
        (lang != options.language || db.get_metadata(kMetaStopwords) != stop)) {
      return Status::invalid_argument(db_dir + ": index was built with language '" + lang +
                                      "' and stop words '" + db.get_metadata(kMetaStopwords) +
                                      "'; this run asks for '" + options.language + "'/'" + stop +
                                      "' (use a new --db)");
    }
    db.set_metadata(kMetaLanguage, options.language);
    db.set_metadata(kMetaStopwords, stop);
    db.set_metadata(kMetaFormat, "1");
    db.commit();
    out->reset(new IndexWriter(std::make_unique<Impl>(std::move(db), options)));
    return Status::ok();
  } catch (const Xapian::Error& e) {
    return status_from_xapian(db_dir, e);
  }
}

Status IndexWriter::begin_if_needed() {
  if (!impl_->in_transaction) {
    impl_->db.begin_transaction(/*flushed=*/true);
    impl_->in_transaction = true;
  }
  return Status::ok();
}

Status IndexWriter::add(const CorpusDocument& doc, bool* replaced) {
  if (doc.id.empty()) {
    return Status::invalid_argument(doc.location + ": empty document id");
  }
  if (doc.id.size() > kMaxIdBytes) {
    return Status::invalid_argument(doc.location + ": document id is " +
                                    std::to_string(doc.id.size()) + " bytes; at most " +
                                    std::to_string(kMaxIdBytes) + " are supported");
  }
  try {
    BLOCKRANK_RETURN_IF_ERROR(begin_if_needed());
    Xapian::Document xdoc;
    impl_->analyzer.index_document(&xdoc, doc.title, doc.text);
    const std::string id_term = std::string(kIdTermPrefix) + doc.id;
    xdoc.add_boolean_term(id_term);
    xdoc.add_value(kIdValueSlot, doc.id);
    nlohmann::json data = {{"id", doc.id}, {"title", doc.title}, {"text", doc.text}};
    xdoc.set_data(data.dump());
    if (replaced != nullptr) {
      *replaced = impl_->db.term_exists(id_term);
    }
    impl_->db.replace_document(id_term, xdoc);
    ++in_batch_;
    if (in_batch_ >= impl_->options.batch_size) {
      return commit();
    }
    return Status::ok();
  } catch (const Xapian::Error& e) {
    return status_from_xapian(doc.location, e);
  } catch (const nlohmann::json::exception& e) {
    return Status::invalid_argument(doc.location + ": " + e.what());
  }
}

Status IndexWriter::remove(const std::string& id, bool* found) {
  try {
    BLOCKRANK_RETURN_IF_ERROR(begin_if_needed());
    const std::string id_term = std::string(kIdTermPrefix) + id;
    *found = impl_->db.term_exists(id_term);
    if (*found) {
      impl_->db.delete_document(id_term);
      ++in_batch_;
    }
    return Status::ok();
  } catch (const Xapian::Error& e) {
    return status_from_xapian("delete " + id, e);
  }
}

Status IndexWriter::commit() {
  try {
    if (impl_->in_transaction) {
      impl_->db.commit_transaction();
      impl_->in_transaction = false;
    }
    in_batch_ = 0;
    return Status::ok();
  } catch (const Xapian::Error& e) {
    impl_->in_transaction = false;
    in_batch_ = 0;
    return status_from_xapian("commit", e);
  }
}

void IndexWriter::cancel() {
  if (!impl_ || !impl_->in_transaction) {
    return;
  }
  try {
    impl_->db.cancel_transaction();
  } catch (const Xapian::Error&) {
    // Nothing more to undo: Xapian keeps the last committed revision on disk.
  }
  impl_->in_transaction = false;
  in_batch_ = 0;
}

uint64_t IndexWriter::doc_count() const {
  try {
    return impl_->db.get_doccount();
  } catch (const Xapian::Error&) {
    return 0;
  }
}

Status index_files(const std::string& db_dir,
                   const std::vector<std::string>& files,
                   const IndexRunOptions& options,
                   IndexRunStats* stats) {
  *stats = IndexRunStats();
  if (files.empty()) {
    return Status::invalid_argument("no input files given");
  }
  // Open every reader first so a typo in the last file name fails before any work is done.
  std::vector<std::unique_ptr<CorpusReader>> readers;
  uint64_t total_bytes = 0;
  for (const std::string& f : files) {
    std::unique_ptr<CorpusReader> reader;
    BLOCKRANK_RETURN_IF_ERROR(CorpusReader::open(f, options.reader, &reader));
    total_bytes += reader->file_size();
    readers.push_back(std::move(reader));
  }
  std::unique_ptr<IndexWriter> writer;
  BLOCKRANK_RETURN_IF_ERROR(IndexWriter::open(db_dir, options.writer, &writer));
  const auto& logger = options.writer.logger;
  ProgressReporter progress("docs", total_bytes, options.progress);
  uint64_t bytes_before = 0;
  CorpusDocument doc;
  for (auto& reader : readers) {
    BLOCKRANK_LOG_INFO(logger, "indexing %s (%s)", reader->path().c_str(),
                       corpus_format_name(reader->format()));
    while (true) {
      if (options.cancel != nullptr && options.cancel->load()) {
        const uint64_t dropped = writer->uncommitted();
        writer->cancel();
        stats->documents -= std::min(stats->documents, dropped);
        return Status::cancelled(
            "interrupted; " + std::to_string(dropped) + " uncommitted documents dropped, " +
            std::to_string(writer->doc_count()) + " documents in the index are committed");
      }
      bool eof = false;
      Status st = reader->next(&doc, &eof);
      if (st.is_ok() && eof) {
        break;
      }
      if (st.is_ok()) {
        bool replaced = false;
        st = writer->add(doc, &replaced);
        if (st.is_ok()) {
          ++stats->documents;
          stats->replaced += replaced ? 1 : 0;
          stats->text_bytes += doc.title.size() + doc.text.size();
        }
      }
      if (!st.is_ok()) {
        if (options.skip_bad && st.code() == StatusCode::kInvalidArgument) {
          ++stats->skipped;
          if (stats->skipped <= 10) {
            BLOCKRANK_LOG_WARNING(logger, "skipped: %s", st.message().c_str());
          } else if (stats->skipped == 11) {
            BLOCKRANK_LOG_WARNING(logger, "more malformed records skipped; counting only");
          }
          continue;
        }
        const uint64_t dropped = writer->uncommitted();
        writer->cancel();
        stats->documents -= std::min(stats->documents, dropped);
        return Status(st.code(), st.message() + " (stopped: the index keeps its last commit, " +
                                     std::to_string(writer->doc_count()) +
                                     " documents; use --skip-bad to skip malformed records)");
      }
      progress.update(stats->documents, bytes_before + reader->bytes_consumed());
    }
    bytes_before += reader->file_size();
  }
  BLOCKRANK_RETURN_IF_ERROR(writer->commit());
  stats->bytes = bytes_before;
  progress.finish(stats->documents, bytes_before);
  stats->seconds = progress.elapsed_seconds();
  return Status::ok();
}

}  // namespace blockrank
