// SPDX-License-Identifier: Apache-2.0
// BlockRank for programs that already search with Xapian: open a reranker once from a model
// directory, then hand it the Xapian::MSet of a query (or an Enquire and a depth) together with the
// query text, and get the candidates back reordered by the BlockRank model, optionally fused with
// their BM25 weights (blockrank/fusion.h). Nothing else of blockrank is needed: no server, no index
// format. The reranker reads each candidate's text from its document data (extract_text_from_data)
// or from a caller's extractor (value slot, external store).
//
// Sharded and remote databases: pass the MSet of an Enquire over a combined Xapian::Database
// (several shards, Xapian::Remote::open backends); Xapian merges the shards' statistics and their
// top-k, and the reranking happens once, on the merged list. The model reads the candidates in
// MSet order, so to get the same list however the collection is sharded, order equal weights by a
// unique value (Enquire::set_sort_by_relevance_then_value) rather than by docid, which depends on
// the sharding.
//
// Xapian 1.4's MSet cannot be reordered, so rerank() returns a list. Where the Xapian this library
// was built against has MSet::replace_weights (Xapian >= 1.5), rerank_in_place() reorders the MSet
// itself; elsewhere it returns kUnimplemented (see supports_in_place()).
//
// Errors: every function returns a Status; no exception (Xapian::Error, LibTorch's, std::bad_alloc,
// one thrown by a caller's extractor) leaves this API.
//
// Thread-safety: an XapianReranker is immutable after open(); rerank() may be called from several
// threads at once as long as each thread uses its own Xapian objects (a Xapian::Database, Enquire
// or MSet must not be shared between threads).
#ifndef BLOCKRANK_XAPIAN_RERANKER_H_
#define BLOCKRANK_XAPIAN_RERANKER_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <xapian.h>

#include "blockrank/fusion.h"
#include "blockrank/status.h"

/// Marks the functions of libblockrank_xapian that consumers may call (the rest is hidden).
#define BLOCKRANK_XAPIAN_EXPORT __attribute__((visibility("default")))

namespace blockrank {

/// What the model reads for one candidate.
struct XapianDocumentText {
  /// The caller's external id, copied into XapianRerankedHit::id; may be empty.
  std::string id;
  /// Shown to the model before the text; may be empty.
  std::string title;
  std::string text;
};

/// Fills `*out` with the text of `doc`. Called once per candidate, on the thread that calls
/// rerank(), in MSet order. A non-ok Status fails that rerank() call (with the docid as context);
/// so does an exception, which is caught and returned as kInternal.
using XapianTextExtractor =
    std::function<Status(const Xapian::Document& doc, XapianDocumentText* out)>;

/// The default extractor. Reads Xapian::Document::get_data() in any of these layouts:
///   - a JSON object, as `blockrank index` writes it: "id" (or "_id"), "title", "text" (or "body",
///     "contents"); an object with none of the text fields is read as plain text;
///   - Omega-style "name=value" lines (every line one field): "caption" or "title" is the title,
///     "sample" or "text" the text, "id" the id;
///   - anything else is plain text (the whole data, as Xapian's simpleindex example stores it).
/// When the data gives no id, the document's "Q"-prefixed unique-id term (Xapian's convention,
/// also ours) is used if it has one. Bytes that are not UTF-8 become U+FFFD.
/// Returns kOk for any data (an empty document yields empty text); Xapian errors (e.g. a remote
/// backend gone) come back as kIOError/kUnavailable/...
BLOCKRANK_XAPIAN_EXPORT Status extract_text_from_data(const Xapian::Document& doc,
                                                      XapianDocumentText* out);

/// An extractor that reads the text from value slot `text_slot`, and optionally the title and id
/// from `title_slot` and `id_slot` (Xapian::BAD_VALUENO: not used). A document whose text slot is
/// empty yields empty text (it is still ranked).
BLOCKRANK_XAPIAN_EXPORT XapianTextExtractor
make_value_slot_extractor(Xapian::valueno text_slot,
                          Xapian::valueno title_slot = Xapian::BAD_VALUENO,
                          Xapian::valueno id_slot = Xapian::BAD_VALUENO);

struct XapianRerankerOptions {
  /// "cpu", "cuda" or "cuda:N" (CUDA needs a CUDA build of blockrank). Default: "cpu".
  std::string device = "cpu";
  /// "auto" (float32 on CPU, bfloat16 on CUDA), "float32" or "bfloat16". Default: "auto".
  std::string dtype = "auto";
  /// LibTorch CPU intra-op threads. This is a process-wide LibTorch setting; 0 leaves it as the
  /// process has it. Default: 0.
  int threads = 0;
  /// tokenizer.json, or a directory holding one; empty reads it from the model directory.
  /// Default: empty.
  std::string tokenizer;
  /// How the BM25 weight and the BlockRank score make the final order. Default: pure BlockRank
  /// (FusionMethod::kRerank).
  FusionOptions fusion;
  /// Each candidate's title and text are cut to this many bytes each (at a UTF-8 character
  /// boundary) before tokenising. The model reads at most its block length (blockrank.json
  /// max_block_length, a few hundred tokens) of each document anyway; the cut only saves
  /// tokenising the rest of long documents. 0: no cut. Default: 16384.
  size_t max_document_bytes = 16384;
  /// Where candidate text comes from; empty uses extract_text_from_data. Default: empty.
  XapianTextExtractor text_extractor;

  /// kInvalidArgument for threads < 0 or an invalid fusion (FusionOptions::validate).
  BLOCKRANK_XAPIAN_EXPORT Status validate() const;
};

/// One candidate of the reranked list.
struct XapianRerankedHit {
  /// The docid as the MSet reports it (for a combined Database, the combined docid).
  Xapian::docid docid = 0;
  /// The external id from the extractor; empty when it found none.
  std::string id;
  /// The final score, by which the list is sorted, highest first: the BlockRank score for
  /// FusionMethod::kRerank, the interpolation of the min-max normalised scores otherwise.
  double score = 0;
  /// BlockRank's relevance S(q, d): the attention mass the query pays to this document, in
  /// [0, 1]; the scores of one call sum to 1.
  double rerank_score = 0;
  /// The document's weight in the MSet (BM25 unless the Enquire was set to another scheme).
  double bm25_weight = 0;
  /// The document's rank in the MSet, 0-based (MSetIterator::get_rank()).
  Xapian::doccount original_rank = 0;
};

class XapianReranker {
 public:
  BLOCKRANK_XAPIAN_EXPORT ~XapianReranker();
  XapianReranker(const XapianReranker&) = delete;
  XapianReranker& operator=(const XapianReranker&) = delete;

  /// Loads the BlockRank model in `model_dir` (Hugging Face config.json + safetensors +
  /// tokenizer.json, optional blockrank.json). Returns kInvalidArgument for invalid options (an
  /// unknown device name included) or a model that does not fit its tokenizer, kNotFound when the
  /// directory or a file in it is missing, and kInternal (with LibTorch's message) when LibTorch
  /// cannot use the device, e.g. "cuda" with a CPU-only LibTorch. On error `*out` is unchanged.
  BLOCKRANK_XAPIAN_EXPORT static Status open(const std::string& model_dir,
                                             const XapianRerankerOptions& options,
                                             std::unique_ptr<XapianReranker>* out);

  /// Reranks every document of `mset` for the query text `query` (the words the user typed: the
  /// model reads text, not a Xapian::Query). `*out` gets one hit per MSet entry, best first; ties
  /// keep the MSet order. An empty MSet gives an empty list. The order of the candidates in the
  /// prompt is the MSet order, so equal MSets give equal lists. Returns the extractor's error,
  /// a Xapian error as a Status (kIOError, kUnavailable for a lost remote, ...), or the model's
  /// (kInvalidArgument when the candidates do not fit the model's context). `*out` is cleared
  /// first and left empty on error.
  BLOCKRANK_XAPIAN_EXPORT Status rerank(const std::string& query,
                                        const Xapian::MSet& mset,
                                        std::vector<XapianRerankedHit>* out) const;

  /// Runs `enquire` for its top `depth` documents (Enquire::get_mset(0, depth)) and reranks
  /// them as above. kInvalidArgument when depth is 0.
  BLOCKRANK_XAPIAN_EXPORT Status rerank(const std::string& query,
                                        const Xapian::Enquire& enquire,
                                        Xapian::doccount depth,
                                        std::vector<XapianRerankedHit>* out) const;

  /// Reorders `mset` itself: each entry's weight becomes its final score (the `score` of
  /// rerank()) and the entries are sorted by it (MSet::replace_weights + sort_by_relevance).
  /// Needs a Xapian with MSet::replace_weights (>= 1.5) at build time: kUnimplemented otherwise,
  /// with `mset` untouched. Other errors as rerank(); `mset` is untouched on any error.
  BLOCKRANK_XAPIAN_EXPORT Status rerank_in_place(const std::string& query,
                                                 Xapian::MSet* mset) const;

  /// True when rerank_in_place() is available in this build.
  BLOCKRANK_XAPIAN_EXPORT static bool supports_in_place();

  /// The options given to open().
  BLOCKRANK_XAPIAN_EXPORT const XapianRerankerOptions& options() const;

 private:
  struct Impl;
  explicit XapianReranker(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace blockrank

#endif  // BLOCKRANK_XAPIAN_RERANKER_H_
