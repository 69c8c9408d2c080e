// SPDX-License-Identifier: Apache-2.0
#include "indexer/searcher.h"

#include <xapian.h>

#include "indexer/analyzer.h"
#include "indexer/index_writer.h"
#include "indexer/xapian_status.h"

#include <nlohmann/json.hpp>

namespace blockrank {

struct Searcher::Impl {
  Xapian::Database db;
  SearchOptions options;
  Analyzer analyzer;
  Impl(Xapian::Database d, const SearchOptions& o, const std::string& lang, bool stop)
      : db(std::move(d)), options(o), analyzer(lang, stop) {}
};

namespace {
void parse_data(const std::string& data, SearchHit* hit) {
  const nlohmann::json j = nlohmann::json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (j.is_object()) {
    hit->id = j.value("id", "");
    hit->title = j.value("title", "");
    hit->text = j.value("text", "");
  }
}
}  // namespace

Status SearchOptions::validate() const {
  if (!(bm25_k1 >= 0) || !(bm25_b >= 0 && bm25_b <= 1) || !(bm25_k3 >= 0)) {
    return Status::invalid_argument("BM25 needs k1 >= 0, k3 >= 0 and 0 <= b <= 1");
  }
  return Status::ok();
}

Searcher::Searcher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Searcher::~Searcher() = default;

Status Searcher::open(const Xapian::Database& db,
                      const SearchOptions& options,
                      std::unique_ptr<Searcher>* out) {
  BLOCKRANK_RETURN_IF_ERROR(options.validate());
  try {
    std::string lang = db.get_metadata(kMetaLanguage);
    const std::string stop = db.get_metadata(kMetaStopwords);
    if (lang.empty()) {
      lang = "english";
    }
    out->reset(new Searcher(std::make_unique<Impl>(db, options, lang, stop != "none")));
    return Status::ok();
  } catch (const Xapian::Error& e) {
    return status_from_xapian("open", e);
  }
}

Status Searcher::open(const std::string& db_dir,
                      const SearchOptions& options,
                      std::unique_ptr<Searcher>* out) {
  try {
    return open(Xapian::Database(db_dir), options, out);
  } catch (const Xapian::Error& e) {
    return status_from_xapian(db_dir, e);
  }
}

Status Searcher::search(const std::string& query, int k, std::vector<SearchHit>* hits) {
  return search(query, k, impl_->options, hits);
}

Status Searcher::search(const std::string& query,
                        int k,
                        const SearchOptions& options,
                        std::vector<SearchHit>* hits) {
  hits->clear();
  BLOCKRANK_RETURN_IF_ERROR(options.validate());
  if (k <= 0) {
    return Status::invalid_argument("k must be at least 1");
  }
  try {
    const Xapian::Query q = impl_->analyzer.make_query(query);
    if (q.empty()) {
      return Status::ok();
    }
    Xapian::Enquire enquire(impl_->db);
    enquire.set_query(q);
    enquire.set_weighting_scheme(Xapian::BM25Weight(options.bm25_k1, /*k2=*/0,
                                                    /*k3=*/options.bm25_k3, options.bm25_b,
                                                    /*min_normlen=*/0.5));
    enquire.set_docid_order(Xapian::Enquire::ASCENDING);
    const Xapian::MSet mset = enquire.get_mset(0, static_cast<Xapian::doccount>(k));
    if (options.fetch_text) {
      mset.fetch();
    }
    hits->reserve(mset.size());
    int rank = 0;
    for (auto it = mset.begin(); it != mset.end(); ++it) {
      SearchHit hit;
      hit.rank = ++rank;
      hit.docid = *it;
      hit.score = it.get_weight();
      const Xapian::Document doc = it.get_document();
      if (options.fetch_text) {
        parse_data(doc.get_data(), &hit);
        if (options.snippet_bytes > 0) {
          hit.snippet = mset.snippet(hit.text, options.snippet_bytes, impl_->analyzer.stemmer(),
                                     Xapian::MSet::SNIPPET_BACKGROUND_MODEL, /*hi_start=*/"",
                                     /*hi_end=*/"", /*omit=*/"…");
        }
      } else {
        hit.id = doc.get_value(kIdValueSlot);
        if (hit.id.empty()) {
          parse_data(doc.get_data(), &hit);  // an index from before the id slot
        }
      }
      hits->push_back(std::move(hit));
    }
    return Status::ok();
  } catch (const Xapian::Error& e) {
    return status_from_xapian("search", e);
  }
}

std::vector<std::string> Searcher::query_terms(const std::string& query) const {
  std::vector<std::string> out;
  const Xapian::Query q = impl_->analyzer.make_query(query);
  for (auto it = q.get_unique_terms_begin(); it != q.get_unique_terms_end(); ++it) {
    out.push_back(*it);
  }
  return out;
}

Status Searcher::get_document(const std::string& id, SearchHit* hit) {
  try {
    const std::string term = std::string(kIdTermPrefix) + id;
    Xapian::PostingIterator p = impl_->db.postlist_begin(term);
    if (p == impl_->db.postlist_end(term)) {
      return Status::not_found("no document with id '" + id + "'");
    }
    *hit = SearchHit();
    hit->docid = *p;
    parse_data(impl_->db.get_document(*p).get_data(), hit);
    return Status::ok();
  } catch (const Xapian::Error& e) {
    return status_from_xapian("get " + id, e);
  }
}

Status Searcher::reopen() {
  try {
    impl_->db.reopen();
    return Status::ok();
  } catch (const Xapian::Error& e) {
    return status_from_xapian("reopen", e);
  }
}

uint64_t Searcher::doc_count() const {
  try {
    return impl_->db.get_doccount();
  } catch (const Xapian::Error&) {
    return 0;
  }
}

}  // namespace blockrank
