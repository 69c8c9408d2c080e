// SPDX-License-Identifier: Apache-2.0
// Every corpus reader on well-formed input, and on malformed input: the error names file:line and
// says what was expected, and the reader can go on to the next record.
#include "indexer/corpus_reader.h"

#include <zlib.h>

#include <gtest/gtest.h>

#include "test_util.h"

namespace blockrank {
namespace {

struct ReadResult {
  std::vector<CorpusDocument> docs;
  std::vector<Status> errors;
};

ReadResult read_all(const std::string& path, CorpusReaderOptions opts = {}) {
  ReadResult r;
  std::unique_ptr<CorpusReader> reader;
  const Status open = CorpusReader::open(path, opts, &reader);
  if (!open.is_ok()) {
    r.errors.push_back(open);
    return r;
  }
  for (int guard = 0; guard < 1000; ++guard) {
    CorpusDocument doc;
    bool eof = false;
    const Status st = reader->next(&doc, &eof);
    if (!st.is_ok()) {
      r.errors.push_back(st);
      if (st.code() != StatusCode::kInvalidArgument) {
        break;
      }
      continue;
    }
    if (eof) {
      break;
    }
    r.docs.push_back(doc);
  }
  return r;
}

class CorpusReaderTest : public ::testing::Test {
 protected:
  testing::TempDir dir_;
};

TEST_F(CorpusReaderTest, BeirJsonl) {
  const std::string p = dir_.file("corpus.jsonl");
  testing::write_text(p,
                      "{\"_id\": \"d1\", \"title\": \"Fox\", \"text\": \"The quick brown fox\"}\n"
                      "\n"
                      "{\"_id\": 7, \"title\": null, \"text\": \"caf\\u00e9\"}\n");
  const ReadResult r = read_all(p);
  ASSERT_TRUE(r.errors.empty()) << r.errors[0].to_string();
  ASSERT_EQ(r.docs.size(), 2u);
  EXPECT_EQ(r.docs[0].id, "d1");
  EXPECT_EQ(r.docs[0].title, "Fox");
  EXPECT_EQ(r.docs[0].text, "The quick brown fox");
  EXPECT_EQ(r.docs[1].id, "7");
  EXPECT_EQ(r.docs[1].title, "");
  EXPECT_EQ(r.docs[1].text, "caf\xC3\xA9");
  EXPECT_EQ(r.docs[1].location, p + ":3");
}

TEST_F(CorpusReaderTest, GzipIsReadTransparently) {
  const std::string p = dir_.file("corpus.jsonl.gz");
  gzFile gz = gzopen(p.c_str(), "wb");
  gzputs(gz, "{\"_id\": \"a\", \"text\": \"alpha\"}\n{\"_id\": \"b\", \"text\": \"beta\"}\n");
  gzclose(gz);
  const ReadResult r = read_all(p);
  ASSERT_TRUE(r.errors.empty());
  ASSERT_EQ(r.docs.size(), 2u);
  EXPECT_EQ(r.docs[1].text, "beta");
}

TEST_F(CorpusReaderTest, JsonlMalformedLinesNameFileLineAndField) {
  const std::string p = dir_.file("bad.jsonl");
  testing::write_text(p,
                      "{\"_id\": \"ok\", \"text\": \"fine\"}\n"
                      "{\"_id\": \"x\", \"text\": \"unterminated\n"
                      "{\"title\": \"no id\", \"text\": \"t\"}\n"
                      "[1, 2]\n"
                      "{\"_id\": [1], \"text\": \"t\"}\n"
                      "{\"_id\": \"y\", \"text\": 5.5}\n"
                      "{\"_id\": \"z\", \"text\": {\"a\": 1}}\n"
                      "{\"_id\": \"last\", \"text\": \"also fine\"}\n");
  const ReadResult r = read_all(p);
  ASSERT_EQ(r.docs.size(), 3u);  // ok, y (number as text), last
  EXPECT_EQ(r.docs[0].id, "ok");
  EXPECT_EQ(r.docs[1].id, "y");
  EXPECT_EQ(r.docs[2].id, "last");
  ASSERT_EQ(r.errors.size(), 5u);
  EXPECT_NE(r.errors[0].message().find(p + ":2: invalid JSON"), std::string::npos)
      << r.errors[0].message();
  EXPECT_NE(r.errors[1].message().find(p + ":3: field '_id' missing"), std::string::npos)
      << r.errors[1].message();
  EXPECT_NE(r.errors[2].message().find(":4: expected a JSON object"), std::string::npos);
  EXPECT_NE(r.errors[3].message().find(":5: field '_id' must be a string or an integer"),
            std::string::npos);
  EXPECT_NE(r.errors[4].message().find(":7: field 'text' must be a string"), std::string::npos);
}

TEST_F(CorpusReaderTest, JsonlInvalidUtf8IsAnError) {
  const std::string p = dir_.file("utf.jsonl");
  testing::write_text(p, "{\"_id\": \"a\", \"text\": \"ok \xC3\x28 bad\"}\n");
  const ReadResult r = read_all(p);
  ASSERT_EQ(r.errors.size(), 1u);
  // nlohmann rejects the byte while parsing; either way the message names the line and UTF-8.
  EXPECT_NE(r.errors[0].message().find(p + ":1:"), std::string::npos) << r.errors[0].message();
  EXPECT_NE(r.errors[0].message().find("UTF-8"), std::string::npos) << r.errors[0].message();
}

TEST_F(CorpusReaderTest, GenericJsonlFieldMapping) {
  const std::string p = dir_.file("generic.jsonl");
  testing::write_text(p,
                      "{\"docid\": \"A-1\", \"head\": \"H\", \"body\": \"B\", \"extra\": \"E\"}\n");
  CorpusReaderOptions opts;
  opts.format = CorpusFormat::kJsonl;
  opts.id_field = "docid";
  opts.title_field = "head";
  opts.text_fields = {"body", "extra"};
  const ReadResult r = read_all(p, opts);
  ASSERT_TRUE(r.errors.empty());
  ASSERT_EQ(r.docs.size(), 1u);
  EXPECT_EQ(r.docs[0].id, "A-1");
  EXPECT_EQ(r.docs[0].title, "H");
  EXPECT_EQ(r.docs[0].text, "B E");
  opts.text_fields = {"missing"};
  const ReadResult bad = read_all(p, opts);
  ASSERT_EQ(bad.errors.size(), 1u);
  EXPECT_NE(bad.errors[0].message().find("no text field 'missing'"), std::string::npos);
}

TEST_F(CorpusReaderTest, Tsv) {
  const std::string p = dir_.file("c.tsv");
  testing::write_text(p, "1\tfirst text\n2\tTitle\tsecond text\n\nno-tab-here\n4\ta\tb\tc\n");
  const ReadResult r = read_all(p);
  ASSERT_EQ(r.docs.size(), 2u);
  EXPECT_EQ(r.docs[0].text, "first text");
  EXPECT_EQ(r.docs[1].title, "Title");
  EXPECT_EQ(r.docs[1].text, "second text");
  ASSERT_EQ(r.errors.size(), 2u);
  EXPECT_NE(r.errors[0].message().find(p + ":4: expected 'id<TAB>text'"), std::string::npos)
      << r.errors[0].message();
  EXPECT_NE(r.errors[1].message().find(":5:"), std::string::npos);
}

TEST_F(CorpusReaderTest, TrecSgml) {
  const std::string p = dir_.file("docs.trec");
  testing::write_text(p,
                      "<DOC>\n<DOCNO> FT-1 </DOCNO>\n<HEADLINE>Big news</HEADLINE>\n"
                      "<TEXT>\nRates &amp; prices <B>rise</B>.\n</TEXT>\n</DOC>\n"
                      "<DOC>\n<DOCNO>2</DOCNO>\nplain body without text tags\n</DOC>\n"
                      "<DOC><DOCNO>3</DOCNO>one line doc</DOC>\n");
  const ReadResult r = read_all(p);
  ASSERT_TRUE(r.errors.empty()) << r.errors[0].to_string();
  ASSERT_EQ(r.docs.size(), 3u);
  EXPECT_EQ(r.docs[0].id, "FT-1");
  EXPECT_EQ(r.docs[0].title, "Big news");
  EXPECT_EQ(r.docs[0].text, "Rates & prices rise .");
  EXPECT_EQ(r.docs[1].id, "2");
  EXPECT_EQ(r.docs[1].text, "plain body without text tags");
  EXPECT_EQ(r.docs[2].text, "one line doc");
}

TEST_F(CorpusReaderTest, TrecMalformed) {
  const std::string p1 = dir_.file("nodocno.trec");
  testing::write_text(p1, "<DOC>\n<TEXT>x</TEXT>\n</DOC>\n");
  ReadResult r = read_all(p1);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].message().find(p1 + ":1: <DOC> without <DOCNO>"), std::string::npos);
  const std::string p2 = dir_.file("open.trec");
  testing::write_text(p2, "<DOC>\n<DOCNO>1</DOCNO>\ntext\n");
  r = read_all(p2);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].message().find("never closed"), std::string::npos);
  const std::string p3 = dir_.file("nested.trec");
  testing::write_text(p3, "<DOC>\n<DOCNO>1</DOCNO>\n<DOC>\n");
  r = read_all(p3);
  ASSERT_FALSE(r.errors.empty());
  EXPECT_NE(r.errors[0].message().find(p3 + ":3: <DOC> starts before"), std::string::npos);
  const std::string p4 = dir_.file("junk.trec");
  testing::write_text(p4, "garbage\n");
  r = read_all(p4);
  ASSERT_FALSE(r.errors.empty());
  EXPECT_NE(r.errors[0].message().find(p4 + ":1: expected <DOC>"), std::string::npos);
}

TEST_F(CorpusReaderTest, SmartCranfieldStyle) {
  const std::string p = dir_.file("cran.all");
  testing::write_text(p,
                      ".I 1\n.T\nexperimental wing\n.A\nbrenckman,m.\n.B\nj. ae. 25\n.W\n"
                      "experimental wing\n  a study of lift .\n.I 2\n.T\nsecond\n.W\nbody two\n");
  const ReadResult r = read_all(p);
  ASSERT_TRUE(r.errors.empty()) << r.errors[0].to_string();
  ASSERT_EQ(r.docs.size(), 2u);
  EXPECT_EQ(r.docs[0].id, "1");
  EXPECT_EQ(r.docs[0].title, "experimental wing");
  EXPECT_EQ(r.docs[0].text, "experimental wing a study of lift .");
  EXPECT_EQ(r.docs[1].text, "body two");
  const std::string bad = dir_.file("bad.all");
  testing::write_text(bad, "text first\n.I 1\n.W\nx\n");
  CorpusReaderOptions smart;
  smart.format = CorpusFormat::kSmart;
  const ReadResult rb = read_all(bad, smart);
  ASSERT_FALSE(rb.errors.empty());
  EXPECT_NE(rb.errors[0].message().find(bad + ":1: expected '.I <id>'"), std::string::npos);
}

TEST_F(CorpusReaderTest, FormatDetection) {
  CorpusFormat f;
  const std::string smart = dir_.file("cran.all.1400");
  testing::write_text(smart, ".I 1\n.W\nx\n");
  ASSERT_OK(detect_corpus_format(smart, &f));
  EXPECT_EQ(f, CorpusFormat::kSmart);
  const std::string trec = dir_.file("docs");
  testing::write_text(trec, "\n<DOC>\n");
  ASSERT_OK(detect_corpus_format(trec, &f));
  EXPECT_EQ(f, CorpusFormat::kTrec);
  EXPECT_EQ(parse_corpus_format("csv", &f).code(), StatusCode::kInvalidArgument);
  std::unique_ptr<CorpusReader> reader;
  EXPECT_EQ(CorpusReader::open(dir_.file("absent.jsonl"), {}, &reader).code(),
            StatusCode::kNotFound);
}

}  // namespace
}  // namespace blockrank
