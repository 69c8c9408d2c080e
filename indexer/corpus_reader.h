// SPDX-License-Identifier: Apache-2.0
// Corpus readers: BEIR corpus.jsonl, generic JSONL with a field mapping, TSV
// (id<TAB>text[<TAB>title]), TREC SGML (<DOC><DOCNO>…<TEXT>…</DOC>) and SMART/Glasgow (.I/.T/.W,
// e.g. Cranfield). Files may be gzip-compressed. Every malformed record is reported as "file:line:
// what is wrong".
//
// Thread-safety: one reader per thread.
#ifndef BLOCKRANK_INDEXER_CORPUS_READER_H_
#define BLOCKRANK_INDEXER_CORPUS_READER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "blockrank/status.h"
#include "plugin/base/line_reader.h"

namespace blockrank {

struct CorpusDocument {
  std::string id;
  std::string title;
  std::string text;
  /// "file:line" where the record starts, for messages.
  std::string location;
};

enum class CorpusFormat { kAuto, kBeir, kJsonl, kTsv, kTrec, kSmart };

/// Parses "auto|beir|jsonl|tsv|trec|smart".
Status parse_corpus_format(const std::string& name, CorpusFormat* out);
const char* corpus_format_name(CorpusFormat format);
/// Guesses the format from the file name (".jsonl[.gz]" → beir, ".tsv" → tsv, ".trec"/".sgml" →
/// trec, ".all.*" → smart) and, failing that, from the first non-empty line.
Status detect_corpus_format(const std::string& path, CorpusFormat* out);

struct CorpusReaderOptions {
  /// Default: kAuto.
  CorpusFormat format = CorpusFormat::kAuto;
  /// JSONL: the field holding the document id (strings or integers). Default: "_id" for BEIR, "id"
  /// for generic JSONL when left empty.
  std::string id_field;
  /// JSONL: fields joined with a space into the text. Default: {"text"} for BEIR; {"contents"} or
  /// {"text"} for generic JSONL when left empty.
  std::vector<std::string> text_fields;
  /// JSONL: the title field. Default: "title" (absent or null is allowed).
  std::string title_field = "title";
};

class CorpusReader {
 public:
  virtual ~CorpusReader() = default;
  /// Opens `path` with the given options (kAuto resolves from the file).
  static Status open(const std::string& path,
                     const CorpusReaderOptions& options,
                     std::unique_ptr<CorpusReader>* out);

  /// Reads the next document. At the end sets *eof. A malformed record returns kInvalidArgument
  /// ("file:line: …"); the reader stays usable, so the caller may skip it and call next() again.
  virtual Status next(CorpusDocument* doc, bool* eof) = 0;

  virtual CorpusFormat format() const = 0;
  const std::string& path() const { return lines_->path(); }
  uint64_t bytes_consumed() const { return lines_->bytes_consumed(); }
  uint64_t file_size() const { return lines_->file_size(); }

 protected:
  explicit CorpusReader(std::unique_ptr<LineReader> lines) : lines_(std::move(lines)) {}
  std::unique_ptr<LineReader> lines_;
};

}  // namespace blockrank

#endif  // BLOCKRANK_INDEXER_CORPUS_READER_H_
