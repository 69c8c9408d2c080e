// SPDX-License-Identifier: Apache-2.0
// index: builds a Xapian database from paragraphs of plain text read on standard input (paragraphs
// are separated by blank lines), the way Xapian's simpleindex example does: each paragraph is one
// document, its words are indexed with the English stemmer, and the paragraph itself is stored as
// the document data (which is where the BlockRank reranker reads a candidate's text by default).
#include <iostream>
#include <string>

#include <xapian.h>

int main(int argc, char** argv) try {
  if (argc != 2) {
    std::cout << "Usage: " << argv[0] << " PATH_TO_DATABASE < paragraphs.txt\n";
    return 1;
  }
  // Create the database, or open it to add to it.
  Xapian::WritableDatabase db(argv[1], Xapian::DB_CREATE_OR_OPEN);

  Xapian::TermGenerator indexer;
  indexer.set_stemmer(Xapian::Stem("english"));

  std::string paragraph;
  std::string line;
  while (true) {
    const bool more = static_cast<bool>(std::getline(std::cin, line));
    if (more && !line.empty()) {
      paragraph += line;
      paragraph += '\n';
      continue;
    }
    if (!paragraph.empty()) {
      Xapian::Document doc;
      doc.set_data(paragraph);
      indexer.set_document(doc);
      indexer.index_text(paragraph);
      db.add_document(doc);
      paragraph.clear();
    }
    if (!more) {
      break;
    }
  }
  // Make the new documents visible to searches.
  db.commit();
  return 0;
} catch (const Xapian::Error& e) {
  std::cout << e.get_description() << '\n';
  return 1;
}
