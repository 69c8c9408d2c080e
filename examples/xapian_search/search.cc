// SPDX-License-Identifier: Apache-2.0
// search: a plain Xapian search, the way Xapian's simplesearch example is written: parse the query
// text, run it, and print the ten best matches with their weights and document data.
// search_rerank.cc is the same program with the BlockRank reranker added (see README.md).
#include <iostream>
#include <string>

#include <xapian.h>

int main(int argc, char** argv) try {
  if (argc < 3) {
    std::cout << "Usage: " << argv[0] << " PATH_TO_DATABASE QUERY...\n";
    return 1;
  }
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

  std::cout << matches.get_matches_estimated() << " results found.\n";
  std::cout << "Matches 1-" << matches.size() << ":\n\n";
  for (Xapian::MSetIterator i = matches.begin(); i != matches.end(); ++i) {
    std::cout << i.get_rank() + 1 << ": " << i.get_weight() << " docid=" << *i << " ["
              << i.get_document().get_data() << "]\n\n";
  }
  return 0;
} catch (const Xapian::Error& e) {
  std::cout << e.get_description() << '\n';
  return 1;
}
