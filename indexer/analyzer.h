// SPDX-License-Identifier: Apache-2.0
// Text analysis shared by the index writer and the searcher, so that documents and queries always
// produce the same terms: Snowball English stemming of every word (Xapian STEM_ALL: no unstemmed
// copies, so document length counts words, as Lucene/Anserini count them), Lucene's 33 English stop
// words removed, and a bag-of-words query (no boolean operators, so arbitrary user text — ArguAna
// queries are whole arguments — can never be a syntax error).
#ifndef BLOCKRANK_INDEXER_ANALYZER_H_
#define BLOCKRANK_INDEXER_ANALYZER_H_

#include <string>

#include <xapian.h>

namespace blockrank {

/// Prefix of the boolean term holding a document's external id (Xapian's "Q" convention).
inline constexpr char kIdTermPrefix[] = "Q";
/// Prefix of title terms (indexed in addition to the flat title+body field).
inline constexpr char kTitleTermPrefix[] = "S";
/// Value slot holding the external id (read without loading the document data).
inline constexpr unsigned kIdValueSlot = 0;
/// Longest document id accepted (Xapian terms are limited to ~245 bytes).
inline constexpr size_t kMaxIdBytes = 200;

class Analyzer {
 public:
  /// `language` is a Snowball stemmer name ("english", "none" to disable stemming).
  explicit Analyzer(const std::string& language = "english", bool stopwords = true);

  /// Adds the terms of a document: title and text to the flat field, title also under "S".
  void index_document(Xapian::Document* doc,
                      const std::string& title,
                      const std::string& text) const;
  /// The BM25 query for free text: OR of the analysed terms, each with its query frequency.
  Xapian::Query make_query(const std::string& text) const;
  const Xapian::Stem& stemmer() const { return stemmer_; }

 private:
  Xapian::Stem stemmer_;
  Xapian::SimpleStopper stopper_;
  bool use_stopper_;
};

}  // namespace blockrank

#endif  // BLOCKRANK_INDEXER_ANALYZER_H_
