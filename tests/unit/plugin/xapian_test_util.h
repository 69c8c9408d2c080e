// SPDX-License-Identifier: Apache-2.0
// Helpers shared by the Xapian plugin tests: the sample corpus and queries, an index written by our
// own indexer, the BM25 Enquire the tests use, and the tiny random model.
#ifndef BLOCKRANK_TESTS_UNIT_PLUGIN_XAPIAN_TEST_UTIL_H_
#define BLOCKRANK_TESTS_UNIT_PLUGIN_XAPIAN_TEST_UTIL_H_

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <xapian.h>

#include "indexer/analyzer.h"
#include "indexer/corpus_reader.h"
#include "indexer/index_writer.h"
#include "test_util.h"

#include <nlohmann/json.hpp>

namespace blockrank::testing {

inline std::string tokenizer_path() {
  return source_dir() + "/.cache/tokenizers/llama2/tokenizer.json";
}

inline std::vector<CorpusDocument> sample_corpus() {
  std::vector<CorpusDocument> docs;
  std::ifstream in(source_dir() + "/examples/sample-corpus/corpus.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    const nlohmann::json j = nlohmann::json::parse(line);
    docs.push_back({j["_id"].get<std::string>(), j["title"].get<std::string>(),
                    j["text"].get<std::string>(), ""});
  }
  return docs;
}

inline std::vector<std::string> sample_queries() {
  std::vector<std::string> queries;
  std::ifstream in(source_dir() + "/examples/sample-corpus/queries.tsv");
  std::string line;
  while (std::getline(in, line)) {
    queries.push_back(line.substr(line.find('\t') + 1));
  }
  return queries;
}

// Writes `docs` with our own indexer (JSON data, "Q" id term, id in value slot 0).
inline void write_index(const std::string& dir, const std::vector<CorpusDocument>& docs) {
  std::unique_ptr<IndexWriter> writer;
  ASSERT_OK(IndexWriter::open(dir, {}, &writer));
  for (const CorpusDocument& doc : docs) {
    ASSERT_OK(writer->add(doc));
  }
  ASSERT_OK(writer->commit());
}

// BM25 over the analysed query; equal weights are ordered by the external id (value slot 0), not
// by docid, because docids differ between a combined database and a single one.
inline Xapian::Enquire make_enquire(const Xapian::Database& db, const std::string& query) {
  Xapian::Enquire enquire(db);
  enquire.set_query(Analyzer().make_query(query));
  enquire.set_sort_by_relevance_then_value(kIdValueSlot, /*reverse=*/false);
  return enquire;
}

// Writes the tiny random BlockRank model (bench/http/make_tiny_model.py) into `dir`; false if the
// script failed.
inline bool make_tiny_model(const std::string& dir) {
  const std::string cmd = "python3 '" + source_dir() + "/bench/http/make_tiny_model.py' '" + dir +
                          "' '" + tokenizer_path() + "' > /dev/null";
  return std::system(cmd.c_str()) == 0;
}

}  // namespace blockrank::testing

#endif  // BLOCKRANK_TESTS_UNIT_PLUGIN_XAPIAN_TEST_UTIL_H_
