// SPDX-License-Identifier: Apache-2.0
// XapianReranker: the adapter between a Xapian MSet and the BlockRank Reranker (ranker/core). It
// reads each candidate's text, runs one BlockRank prompt over the candidates in MSet order, fuses
// the scores with the MSet weights (blockrank/fusion.h) and sorts. Every Xapian, LibTorch and
// standard-library exception is caught here and returned as a Status.
#include "blockrank/xapian_reranker.h"

#include <algorithm>
#include <exception>
#include <new>
#include <utility>

#include "indexer/xapian_status.h"
#include "plugin/base/rerank_backend.h"
#include "ranker/core/reranker.h"

namespace blockrank {

namespace {

// The longest prefix of `s` of at most `max_bytes` bytes that ends on a UTF-8 character boundary.
void cut_utf8(std::string* s, size_t max_bytes) {
  if (max_bytes == 0 || s->size() <= max_bytes) {
    return;
  }
  size_t n = max_bytes;
  while (n > 0 && (static_cast<unsigned char>((*s)[n]) & 0xC0) == 0x80) {
    --n;  // (*s)[n] continues a character that starts before the cut
  }
  s->resize(n);
}

struct Candidate {
  Xapian::docid docid = 0;
  Xapian::doccount rank = 0;
  double weight = 0;
};

}  // namespace

struct XapianReranker::Impl {
  XapianRerankerOptions options;
  std::unique_ptr<Reranker> reranker;

  // Reads the candidates of `mset` and ranks them. `hits` come back in MSet order (not sorted).
  Status score(const std::string& query,
               const Xapian::MSet& mset,
               std::vector<XapianRerankedHit>* hits) const;
};

Status XapianRerankerOptions::validate() const {
  if (threads < 0) {
    return Status::invalid_argument("threads must be >= 0, got " + std::to_string(threads));
  }
  return fusion.validate();
}

XapianReranker::XapianReranker(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
XapianReranker::~XapianReranker() = default;

Status XapianReranker::open(const std::string& model_dir,
                            const XapianRerankerOptions& options,
                            std::unique_ptr<XapianReranker>* out) {
  try {
    BLOCKRANK_RETURN_IF_ERROR(options.validate());
    RerankerOptions ro;
    ro.ranker.device = options.device;
    ro.ranker.dtype = options.dtype;
    ro.ranker.num_threads = options.threads;
    ro.tokenizer = options.tokenizer;
    auto impl = std::make_unique<Impl>();
    impl->options = options;
    BLOCKRANK_RETURN_IF_ERROR(Reranker::open(model_dir, ro, &impl->reranker));
    out->reset(new XapianReranker(std::move(impl)));
    return Status::ok();
  } catch (const std::bad_alloc&) {
    return Status::resource_exhausted(model_dir + ": out of memory loading the model");
  } catch (const std::exception& e) {
    return Status::internal(model_dir + ": loading the model failed: " + e.what());
  }
}

Status XapianReranker::Impl::score(const std::string& query,
                                   const Xapian::MSet& mset,
                                   std::vector<XapianRerankedHit>* hits) const {
  std::vector<Candidate> candidates;
  std::vector<RerankDocument> documents;
  candidates.reserve(mset.size());
  documents.reserve(mset.size());
  const XapianTextExtractor& extract =
      options.text_extractor ? options.text_extractor : XapianTextExtractor(extract_text_from_data);
  try {
    mset.fetch();  // one batched fetch of every document (one round trip per remote shard)
    for (Xapian::MSetIterator it = mset.begin(); it != mset.end(); ++it) {
      Candidate c;
      c.docid = *it;
      c.rank = it.get_rank();
      c.weight = it.get_weight();
      XapianDocumentText text;
      Status st;
      try {
        st = extract(it.get_document(), &text);
      } catch (const Xapian::Error&) {
        throw;  // reported below with the other Xapian errors
      } catch (const std::exception& e) {
        st = Status::internal(std::string("the text extractor threw: ") + e.what());
      } catch (...) {
        st = Status::internal("the text extractor threw a non-standard exception");
      }
      if (!st.is_ok()) {
        return st.with_context("document " + std::to_string(c.docid));
      }
      RerankDocument doc;
      doc.id = std::move(text.id);
      doc.title = std::move(text.title);
      doc.text = std::move(text.text);
      cut_utf8(&doc.title, options.max_document_bytes);
      cut_utf8(&doc.text, options.max_document_bytes);
      candidates.push_back(c);
      documents.push_back(std::move(doc));
    }
  } catch (const Xapian::Error& e) {
    return status_from_xapian("reading the MSet", e);
  }

  Reranking ranking;
  BLOCKRANK_RETURN_IF_ERROR(reranker->rerank(query, documents, RerankOptions(), &ranking));
  std::vector<double> first_stage(candidates.size());
  std::vector<double> model(candidates.size(), 0.0);
  for (size_t i = 0; i < candidates.size(); ++i) {
    first_stage[i] = candidates[i].weight;
  }
  for (const RankedDocument& d : ranking.ranked) {
    if (d.index >= model.size()) {
      return Status::internal("the reranker returned candidate " + std::to_string(d.index) +
                              " of " + std::to_string(model.size()));
    }
    model[d.index] = d.score;
  }
  BLOCKRANK_ASSIGN_OR_RETURN(const std::vector<double> fused,
                             fuse_scores(first_stage, model, options.fusion));
  hits->resize(candidates.size());
  for (size_t i = 0; i < candidates.size(); ++i) {
    XapianRerankedHit& h = (*hits)[i];
    h.docid = candidates[i].docid;
    h.id = std::move(documents[i].id);
    h.score = fused[i];
    h.rerank_score = model[i];
    h.bm25_weight = candidates[i].weight;
    h.original_rank = candidates[i].rank;
  }
  return Status::ok();
}

Status XapianReranker::rerank(const std::string& query,
                              const Xapian::MSet& mset,
                              std::vector<XapianRerankedHit>* out) const {
  out->clear();
  try {
    if (mset.empty()) {
      return Status::ok();
    }
    std::vector<XapianRerankedHit> hits;
    BLOCKRANK_RETURN_IF_ERROR(impl_->score(query, mset, &hits));
    // Highest score first; equal scores keep the MSet order, so the list depends only on the
    // MSet (never on how std::sort breaks ties).
    std::stable_sort(
        hits.begin(), hits.end(),
        [](const XapianRerankedHit& a, const XapianRerankedHit& b) { return a.score > b.score; });
    *out = std::move(hits);
    return Status::ok();
  } catch (const Xapian::Error& e) {
    return status_from_xapian("rerank", e);
  } catch (const std::bad_alloc&) {
    return Status::resource_exhausted("rerank: out of memory");
  } catch (const std::exception& e) {
    return Status::internal(std::string("rerank: ") + e.what());
  }
}

Status XapianReranker::rerank(const std::string& query,
                              const Xapian::Enquire& enquire,
                              Xapian::doccount depth,
                              std::vector<XapianRerankedHit>* out) const {
  out->clear();
  if (depth == 0) {
    return Status::invalid_argument("rerank: depth must be at least 1");
  }
  Xapian::MSet mset;
  try {
    mset = enquire.get_mset(0, depth);
  } catch (const Xapian::Error& e) {
    return status_from_xapian("rerank: get_mset", e);
  } catch (const std::bad_alloc&) {
    return Status::resource_exhausted("rerank: out of memory");
  } catch (const std::exception& e) {
    return Status::internal(std::string("rerank: get_mset: ") + e.what());
  }
  return rerank(query, mset, out);
}

Status XapianReranker::rerank_in_place(const std::string& query, Xapian::MSet* mset) const {
#ifdef BLOCKRANK_XAPIAN_HAVE_REPLACE_WEIGHTS
  try {
    if (mset->empty()) {
      return Status::ok();
    }
    std::vector<XapianRerankedHit> hits;
    BLOCKRANK_RETURN_IF_ERROR(impl_->score(query, *mset, &hits));
    std::vector<double> weights(hits.size());
    for (size_t i = 0; i < hits.size(); ++i) {
      weights[i] = hits[i].score;  // MSet order, as replace_weights wants
    }
    mset->replace_weights(weights.begin(), weights.end());
    mset->sort_by_relevance();
    return Status::ok();
  } catch (const Xapian::Error& e) {
    return status_from_xapian("rerank_in_place", e);
  } catch (const std::bad_alloc&) {
    return Status::resource_exhausted("rerank_in_place: out of memory");
  } catch (const std::exception& e) {
    return Status::internal(std::string("rerank_in_place: ") + e.what());
  }
#else
  (void)query;
  (void)mset;
  return Status::unimplemented(
      "rerank_in_place: this blockrank was built against a Xapian without "
      "MSet::replace_weights (added in Xapian 1.5); use rerank(), which returns the list");
#endif
}

bool XapianReranker::supports_in_place() {
#ifdef BLOCKRANK_XAPIAN_HAVE_REPLACE_WEIGHTS
  return true;
#else
  return false;
#endif
}

const XapianRerankerOptions& XapianReranker::options() const {
  return impl_->options;
}

}  // namespace blockrank
