// SPDX-License-Identifier: Apache-2.0
// search_rerank: search.cc with the BlockRank reranker added: the ten best BM25 matches are
// reordered by the model before they are printed. README.md shows the difference.
#include <iostream>
#include <string>

#include <xapian.h>

#include <blockrank/xapian_reranker.h>

int main(int argc, char** argv) try {
  if (argc < 4) {
    std::cout << "Usage: " << argv[0] << " MODEL_DIR PATH_TO_DATABASE QUERY...\n";
    return 1;
  }
  // Load the model once; one reranker serves any number of queries (and threads).
  std::unique_ptr<blockrank::XapianReranker> reranker;
  blockrank::Status status = blockrank::XapianReranker::open(argv[1], {}, &reranker);
  if (!status.is_ok()) {
    std::cout << status.to_string() << '\n';
    return 1;
  }
  --argc;  // the rest of the command line is as for search
  ++argv;
  Xapian::Database db(argv[1]);
  Xapian::Enquire enquire(db);

  // Every remaining argument is a query word, so short queries need no shell quoting.
  std::string query_string(argv[2]);
  for (int i = 3; i < argc; ++i) {
    query_string += ' ';
    query_string += argv[i];
  }

  // Analyse the query as index.cc analysed the documents.
  Xapian::QueryParser qp;
  qp.set_stemmer(Xapian::Stem("english"));
  qp.set_database(db);
  qp.set_stemming_strategy(Xapian::QueryParser::STEM_SOME);
  Xapian::Query query = qp.parse_query(query_string);
  std::cout << "Parsed query is: " << query.get_description() << '\n';

  // The ten best documents by BM25.
  enquire.set_query(query);
  Xapian::MSet matches = enquire.get_mset(0, 10);
  // Rerank them: the model reads the query text and each match's document data.
  std::vector<blockrank::XapianRerankedHit> hits;
  status = reranker->rerank(query_string, matches, &hits);
  if (!status.is_ok()) {
    std::cout << status.to_string() << '\n';
    return 1;
  }

  std::cout << matches.get_matches_estimated() << " results found.\n";
  std::cout << "Matches 1-" << matches.size() << ":\n\n";
  for (size_t i = 0; i < hits.size(); ++i) {
    std::cout << i + 1 << ": " << hits[i].score << " docid=" << hits[i].docid << " (BM25 rank "
              << hits[i].original_rank + 1 << ") [" << db.get_document(hits[i].docid).get_data()
              << "]\n\n";
  }
  return 0;
} catch (const Xapian::Error& e) {
  std::cout << e.get_description() << '\n';
  return 1;
}
