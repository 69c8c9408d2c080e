// SPDX-License-Identifier: Apache-2.0
// BM25 hard-negative mining (see mine.h).
#include "indexer/mine.h"

#include <zlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <set>
#include <unordered_set>

#include "indexer/searcher.h"
#include "plugin/base/strings.h"

#include <nlohmann/json.hpp>

namespace blockrank {
namespace {

// Writes lines to a plain or gzip file under a temporary name; commit() renames it into place.
class JsonlWriter {
 public:
  ~JsonlWriter() {
    close_handles();
    if (!committed_ && !tmp_.empty()) {
      std::error_code ec;
      std::filesystem::remove(tmp_, ec);
    }
  }

  Status open(const std::string& path) {
    path_ = path;
    tmp_ = path + ".tmp";
    gzip_ = ends_with(path, ".gz");
    if (gzip_) {
      gz_ = gzopen(tmp_.c_str(), "wb6");
    } else {
      file_ = std::fopen(tmp_.c_str(), "wb");
    }
    if (gz_ == nullptr && file_ == nullptr) {
      return Status::io_error("cannot create " + tmp_);
    }
    return Status::ok();
  }

  Status write_line(const std::string& line) {
    bool ok;
    if (gzip_) {
      ok = gzwrite(gz_, line.data(), static_cast<unsigned>(line.size())) ==
               static_cast<int>(line.size()) &&
           gzputc(gz_, '\n') == '\n';
    } else {
      ok = std::fwrite(line.data(), 1, line.size(), file_) == line.size() &&
           std::fputc('\n', file_) == '\n';
    }
    return ok ? Status::ok() : Status::io_error("writing " + tmp_ + " failed (disk full?)");
  }

  Status commit() {
    if (!close_handles()) {
      return Status::io_error("closing " + tmp_ + " failed (disk full?)");
    }
    std::error_code ec;
    std::filesystem::rename(tmp_, path_, ec);
    if (ec) {
      return Status::io_error("renaming " + tmp_ + " to " + path_ + ": " + ec.message());
    }
    committed_ = true;
    return Status::ok();
  }

 private:
  bool close_handles() {
    bool ok = true;
    if (gz_ != nullptr) {
      ok = gzclose(gz_) == Z_OK;
      gz_ = nullptr;
    }
    if (file_ != nullptr) {
      ok = std::fclose(file_) == 0 && ok;
      file_ = nullptr;
    }
    return ok;
  }

  std::string path_, tmp_;
  bool gzip_ = false;
  bool committed_ = false;
  gzFile gz_ = nullptr;
  FILE* file_ = nullptr;
};

bool has_text(const SearchHit& doc) {
  return !trim(doc.text).empty() || !trim(doc.title).empty();
}

nlohmann::ordered_json document_json(const SearchHit& doc) {
  // Upstream renders title + " " + text; a title-only document keeps its title as the text, since
  // the training reader rejects an empty text.
  const bool text_empty = trim(doc.text).empty();
  return {{"doc_id", doc.id},
          {"title", text_empty ? std::string() : doc.title},
          {"text", text_empty ? doc.title : doc.text}};
}

}  // namespace

Status mine_training_data(const MineOptions& options, MineStats* stats) {
  MineStats st;
  if (options.db.empty() || options.queries.empty() || options.qrels.empty() ||
      options.out.empty()) {
    return Status::invalid_argument("mine needs --db, --queries, --qrels and --out");
  }
  if (options.k < 1) {
    return Status::invalid_argument("--k must be >= 1 (got " + std::to_string(options.k) + ")");
  }
  BLOCKRANK_RETURN_IF_ERROR(options.retrieval.search.validate());
  const auto start = std::chrono::steady_clock::now();

  Qrels qrels;
  BLOCKRANK_RETURN_IF_ERROR(read_qrels(options.qrels, options.qrels_reader, &qrels));
  std::vector<EvalQuery> all_queries;
  BLOCKRANK_RETURN_IF_ERROR(read_queries(options.queries, options.query_reader, &all_queries));
  st.queries_read = static_cast<int64_t>(all_queries.size());
  std::vector<EvalQuery> queries;
  for (EvalQuery& q : all_queries) {
    if (qrels.count(q.id) == 0) {
      ++st.skipped_no_qrels;
    } else {
      queries.push_back(std::move(q));
    }
  }
  if (queries.empty()) {
    return Status::invalid_argument("none of the " + std::to_string(st.queries_read) +
                                    " queries in " + options.queries + " has judgements in " +
                                    options.qrels + " (do the query ids match?)");
  }

  RetrievalRunOptions ro = options.retrieval;
  ro.depth = options.k;
  Run run;
  RetrievalRunStats run_stats;
  BLOCKRANK_RETURN_IF_ERROR(run_queries(options.db, queries, ro, &run, &run_stats));

  SearchOptions so = options.retrieval.search;
  so.fetch_text = true;
  std::unique_ptr<Searcher> docs;
  BLOCKRANK_RETURN_IF_ERROR(Searcher::open(options.db, so, &docs));

  JsonlWriter writer;
  BLOCKRANK_RETURN_IF_ERROR(writer.open(options.out));
  for (const EvalQuery& q : queries) {
    const std::map<std::string, int>& judged = qrels.at(q.id);
    std::vector<SearchHit> positives, negatives;
    std::unordered_set<std::string> seen;
    int64_t retrieved_positives = 0;
    for (const RunEntry& e : run[q.id]) {
      if (!seen.insert(e.doc_id).second) {
        continue;
      }
      SearchHit doc;
      BLOCKRANK_RETURN_IF_ERROR(docs->get_document(e.doc_id, &doc).with_context("query " + q.id));
      if (!has_text(doc)) {
        ++st.empty_documents;
        continue;
      }
      auto it = judged.find(e.doc_id);
      if (it != judged.end() && it->second >= options.rel_threshold) {
        positives.push_back(std::move(doc));
        ++retrieved_positives;
      } else {
        negatives.push_back(std::move(doc));
      }
    }
    if (options.add_unretrieved_positives) {
      for (const auto& [doc_id, grade] : judged) {  // qrels order (sorted ids): deterministic
        if (grade < options.rel_threshold || seen.count(doc_id) > 0) {
          continue;
        }
        seen.insert(doc_id);
        SearchHit doc;
        const Status s = docs->get_document(doc_id, &doc);
        if (s.code() == StatusCode::kNotFound) {
          ++st.positives_missing;
          continue;
        }
        BLOCKRANK_RETURN_IF_ERROR(s.with_context("query " + q.id));
        if (!has_text(doc)) {
          ++st.empty_documents;
          continue;
        }
        positives.push_back(std::move(doc));
      }
    }
    if (positives.empty()) {
      ++st.skipped_no_positives;
      continue;
    }
    if (negatives.empty()) {
      ++st.no_negatives;
    }
    // Candidates in BM25 order (retrieved positives and negatives interleaved as ranked), then
    // the unretrieved positives; training samples and shuffles them anyway (§1.7).
    nlohmann::ordered_json line = {{"query", q.text},
                                   {"query_id", q.id},
                                   {"documents", nlohmann::ordered_json::array()},
                                   {"answer_ids", nlohmann::ordered_json::array()}};
    std::unordered_set<std::string> positive_ids;
    for (const SearchHit& p : positives) {
      positive_ids.insert(p.id);
      line["answer_ids"].push_back(p.id);
    }
    size_t next_negative = 0, next_positive = 0;
    for (const RunEntry& e : run[q.id]) {
      if (next_positive < static_cast<size_t>(retrieved_positives) &&
          positives[next_positive].id == e.doc_id) {
        line["documents"].push_back(document_json(positives[next_positive++]));
      } else if (next_negative < negatives.size() && negatives[next_negative].id == e.doc_id) {
        line["documents"].push_back(document_json(negatives[next_negative++]));
      }
    }
    for (size_t k = static_cast<size_t>(retrieved_positives); k < positives.size(); ++k) {
      line["documents"].push_back(document_json(positives[k]));
    }
    BLOCKRANK_RETURN_IF_ERROR(writer.write_line(
        line.dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace)));
    ++st.written;
    st.positives += static_cast<int64_t>(positives.size());
    st.positives_retrieved += retrieved_positives;
    st.negatives += static_cast<int64_t>(negatives.size());
  }
  if (st.written == 0) {
    return Status::invalid_argument(
        "no query has a positive (grade >= " + std::to_string(options.rel_threshold) +
        ") in the index" +
        (options.add_unretrieved_positives ? std::string()
                                           : std::string(" top ") + std::to_string(options.k)) +
        "; nothing written to " + options.out);
  }
  BLOCKRANK_RETURN_IF_ERROR(writer.commit());
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (stats != nullptr) {
    *stats = st;
  }
  return Status::ok();
}

}  // namespace blockrank
