// SPDX-License-Identifier: Apache-2.0
#include "http/search_service.h"

namespace blockrank {

Status SearchService::open(const std::string& db_dir,
                           const SearchOptions& options,
                           std::shared_ptr<Logger> logger,
                           std::unique_ptr<SearchService>* out) {
  BLOCKRANK_RETURN_IF_ERROR(options.validate());
  std::unique_ptr<SearchService> s(new SearchService());
  s->db_dir_ = db_dir;
  s->options_ = options;
  s->logger_ = std::move(logger);
  IndexWriterOptions wo;
  wo.batch_size = 1000000;  // commits are explicit, one per request
  wo.logger = s->logger_;
  BLOCKRANK_RETURN_IF_ERROR(IndexWriter::open(db_dir, wo, &s->writer_));
  std::unique_ptr<Pooled> first;
  BLOCKRANK_RETURN_IF_ERROR(s->borrow(&first));
  s->give_back(std::move(first));
  *out = std::move(s);
  return Status::ok();
}

Status SearchService::borrow(std::unique_ptr<Pooled>* out) {
  {
    std::lock_guard<std::mutex> lock(pool_mu_);
    if (!pool_.empty()) {
      *out = std::move(pool_.back());
      pool_.pop_back();
    }
  }
  if (!*out) {
    auto p = std::make_unique<Pooled>();
    BLOCKRANK_RETURN_IF_ERROR(Searcher::open(db_dir_, options_, &p->searcher));
    p->generation = generation_.load();
    *out = std::move(p);
  }
  const uint64_t gen = generation_.load();
  if ((*out)->generation != gen) {
    BLOCKRANK_RETURN_IF_ERROR((*out)->searcher->reopen());
    (*out)->generation = gen;
  }
  return Status::ok();
}

void SearchService::give_back(std::unique_ptr<Pooled> p) {
  std::lock_guard<std::mutex> lock(pool_mu_);
  pool_.push_back(std::move(p));
}

Status SearchService::search(const std::string& query,
                             int k,
                             size_t snippet_bytes,
                             std::vector<SearchHit>* hits) {
  std::unique_ptr<Pooled> p;
  BLOCKRANK_RETURN_IF_ERROR(borrow(&p));
  SearchOptions o = options_;
  o.snippet_bytes = snippet_bytes;
  Status st = p->searcher->search(query, k, o, hits);
  if (st.code() == StatusCode::kUnavailable) {
    // DatabaseModifiedError: a writer replaced blocks we were reading; reopen and retry once.
    st = p->searcher->reopen();
    if (st.is_ok()) {
      st = p->searcher->search(query, k, o, hits);
    }
  }
  give_back(std::move(p));
  return st;
}

Status SearchService::get(const std::string& id, SearchHit* hit) {
  std::unique_ptr<Pooled> p;
  BLOCKRANK_RETURN_IF_ERROR(borrow(&p));
  const Status st = p->searcher->get_document(id, hit);
  give_back(std::move(p));
  return st;
}

Status SearchService::upsert(const std::vector<CorpusDocument>& docs, int* added, int* replaced) {
  std::lock_guard<std::mutex> lock(write_mu_);
  if (!writer_) {
    return Status::unavailable("the index is closed (server shutting down)");
  }
  *added = 0;
  *replaced = 0;
  for (const CorpusDocument& d : docs) {
    bool was = false;
    const Status st = writer_->add(d, &was);
    if (!st.is_ok()) {
      writer_->cancel();
      return st;
    }
    ++(was ? *replaced : *added);
  }
  BLOCKRANK_RETURN_IF_ERROR(writer_->commit());
  generation_.fetch_add(1);
  return Status::ok();
}

Status SearchService::remove(const std::string& id, bool* found) {
  std::lock_guard<std::mutex> lock(write_mu_);
  if (!writer_) {
    return Status::unavailable("the index is closed (server shutting down)");
  }
  const Status st = writer_->remove(id, found);
  if (!st.is_ok()) {
    writer_->cancel();
    return st;
  }
  BLOCKRANK_RETURN_IF_ERROR(writer_->commit());
  generation_.fetch_add(1);
  return Status::ok();
}

uint64_t SearchService::doc_count() {
  std::lock_guard<std::mutex> lock(write_mu_);
  return writer_ ? writer_->doc_count() : 0;
}

Status SearchService::close() {
  std::lock_guard<std::mutex> lock(write_mu_);
  Status st;
  if (writer_) {
    st = writer_->commit();
    writer_.reset();
  }
  return st;
}

}  // namespace blockrank
