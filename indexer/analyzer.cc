// SPDX-License-Identifier: Apache-2.0
#include "indexer/analyzer.h"

#include <vector>

namespace blockrank {

namespace {
// Lucene's EnglishAnalyzer default stop set (what Anserini/Pyserini BM25 baselines use).
const char* const kStopWords[] = {
    "a",   "an",    "and",  "are",   "as",    "at",   "be",   "but", "by",  "for",  "if",
    "in",  "into",  "is",   "it",    "no",    "not",  "of",   "on",  "or",  "such", "that",
    "the", "their", "then", "there", "these", "they", "this", "to",  "was", "will", "with"};
}  // namespace

Analyzer::Analyzer(const std::string& language, bool stopwords)
    : stemmer_(language == "none" ? Xapian::Stem() : Xapian::Stem(language)),
      use_stopper_(stopwords) {
  for (const char* w : kStopWords) {
    stopper_.add(w);
  }
}

void Analyzer::index_document(Xapian::Document* doc,
                              const std::string& title,
                              const std::string& text) const {
  Xapian::TermGenerator tg;
  tg.set_stemmer(stemmer_);
  tg.set_stemming_strategy(Xapian::TermGenerator::STEM_ALL);
  if (use_stopper_) {
    tg.set_stopper(&stopper_);
    tg.set_stopper_strategy(Xapian::TermGenerator::STOP_ALL);
  }
  tg.set_document(*doc);
  if (!title.empty()) {
    tg.index_text_without_positions(title, 1, kTitleTermPrefix);
    tg.index_text_without_positions(title);
  }
  tg.index_text_without_positions(text);
  *doc = tg.get_document();
}

Xapian::Query Analyzer::make_query(const std::string& text) const {
  // Analyse the query exactly like a document, then OR the terms weighted by their frequency.
  Xapian::Document scratch;
  Xapian::TermGenerator tg;
  tg.set_stemmer(stemmer_);
  tg.set_stemming_strategy(Xapian::TermGenerator::STEM_ALL);
  if (use_stopper_) {
    tg.set_stopper(&stopper_);
    tg.set_stopper_strategy(Xapian::TermGenerator::STOP_ALL);
  }
  tg.set_document(scratch);
  tg.index_text_without_positions(text);
  const Xapian::Document analysed = tg.get_document();
  std::vector<Xapian::Query> terms;
  for (auto it = analysed.termlist_begin(); it != analysed.termlist_end(); ++it) {
    terms.emplace_back(*it, it.get_wdf());
  }
  return Xapian::Query(Xapian::Query::OP_OR, terms.begin(), terms.end());
}

}  // namespace blockrank
