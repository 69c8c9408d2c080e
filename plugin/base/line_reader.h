// SPDX-License-Identifier: Apache-2.0
// Reads a text file line by line, gzip-compressed or plain (detected from the content, not the
// name), remembering the file name and 1-based line number for error messages ("file:line: ...").
//
// Thread-safety: one reader per thread.
#ifndef BLOCKRANK_BASE_LINE_READER_H_
#define BLOCKRANK_BASE_LINE_READER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "blockrank/status.h"

namespace blockrank {

class LineReader {
 public:
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  /// Opens `path`; kNotFound / kIOError when it cannot be read.
  static Status open(const std::string& path, std::unique_ptr<LineReader>* out);

  /// Reads the next line without its "\n" (and a trailing "\r"). Sets *eof at the end of the file.
  /// kIOError or kCorruption (truncated gzip stream) on failure.
  Status next(std::string* line, bool* eof);
  /// As next(), skipping lines that are empty or only whitespace (line numbers still count them).
  Status next_nonblank(std::string* line, bool* eof);

  const std::string& path() const { return path_; }
  /// 1-based number of the line last returned (0 before the first).
  uint64_t line_number() const { return line_number_; }
  /// "path:line" of the line last returned.
  std::string location() const;
  /// Bytes of the underlying file consumed so far (compressed bytes for .gz), for progress.
  uint64_t bytes_consumed() const;
  /// Size of the underlying file in bytes (0 if unknown).
  uint64_t file_size() const { return file_size_; }

 private:
  LineReader() = default;
  bool fill();

  std::string path_;
  void* gz_ = nullptr;  // gzFile
  std::string buf_;
  size_t pos_ = 0;
  bool at_eof_ = false;
  Status read_error_;
  uint64_t line_number_ = 0;
  uint64_t file_size_ = 0;
};

/// Reads a whole file (plain or gzip) into *out.
Status read_file(const std::string& path, std::string* out);
/// Writes `data` to `path` atomically (temp file + fsync + rename).
Status write_file_atomic(const std::string& path, const std::string& data);

}  // namespace blockrank

#endif  // BLOCKRANK_BASE_LINE_READER_H_
