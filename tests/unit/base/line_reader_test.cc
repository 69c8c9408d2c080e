// SPDX-License-Identifier: Apache-2.0
#include "plugin/base/line_reader.h"

#include <zlib.h>

#include <gtest/gtest.h>

#include "test_util.h"

namespace blockrank {
namespace {

std::vector<std::string> read_all(const std::string& path) {
  std::unique_ptr<LineReader> r;
  EXPECT_OK(LineReader::open(path, &r));
  std::vector<std::string> lines;
  std::string line;
  bool eof = false;
  while (r->next(&line, &eof).is_ok() && !eof) {
    lines.push_back(line);
  }
  return lines;
}

TEST(LineReaderTest, PlainFileWithCrLfAndNoFinalNewline) {
  testing::TempDir dir;
  testing::write_text(dir.file("a.txt"), "one\r\ntwo\n\nfour");
  const auto lines = read_all(dir.file("a.txt"));
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0], "one");
  EXPECT_EQ(lines[2], "");
  EXPECT_EQ(lines[3], "four");
}

TEST(LineReaderTest, GzipIsTransparentAndLineNumbersCount) {
  testing::TempDir dir;
  const std::string path = dir.file("a.txt.gz");
  gzFile gz = gzopen(path.c_str(), "wb");
  std::string big(300000, 'x');
  gzputs(gz, "first\n");
  gzputs(gz, big.c_str());
  gzputs(gz, "\nlast\n");
  gzclose(gz);
  std::unique_ptr<LineReader> r;
  ASSERT_OK(LineReader::open(path, &r));
  std::string line;
  bool eof = false;
  ASSERT_OK(r->next(&line, &eof));
  EXPECT_EQ(line, "first");
  ASSERT_OK(r->next(&line, &eof));
  EXPECT_EQ(line.size(), big.size());
  ASSERT_OK(r->next(&line, &eof));
  EXPECT_EQ(line, "last");
  EXPECT_EQ(r->location(), path + ":3");
  ASSERT_OK(r->next(&line, &eof));
  EXPECT_TRUE(eof);
}

TEST(LineReaderTest, TruncatedGzipIsCorruptionNotCrash) {
  testing::TempDir dir;
  const std::string path = dir.file("t.gz");
  gzFile gz = gzopen(path.c_str(), "wb");
  for (int i = 0; i < 20000; ++i) {
    gzprintf(gz, "line %d with some text to compress\n", i);
  }
  gzclose(gz);
  std::string data;
  ASSERT_OK(read_file(path, &data));
  // Cut the compressed file in half.
  FILE* f = std::fopen(path.c_str(), "r+");
  std::fseek(f, 0, SEEK_END);
  const long size = std::ftell(f);
  std::fclose(f);
  ASSERT_EQ(::truncate(path.c_str(), size / 2), 0);
  std::unique_ptr<LineReader> r;
  ASSERT_OK(LineReader::open(path, &r));
  std::string line;
  bool eof = false;
  Status st;
  while ((st = r->next(&line, &eof)).is_ok() && !eof) {
  }
  EXPECT_EQ(st.code(), StatusCode::kCorruption) << st.to_string();
}

TEST(LineReaderTest, MissingFileIsNotFound) {
  std::unique_ptr<LineReader> r;
  EXPECT_EQ(LineReader::open("/nonexistent/blockrank", &r).code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace blockrank
