// SPDX-License-Identifier: Apache-2.0
// Query, qrels and run readers, including malformed input.
#include "indexer/eval_data.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace blockrank {
namespace {

class EvalDataTest : public ::testing::Test {
 protected:
  testing::TempDir dir_;
};

TEST_F(EvalDataTest, BeirAndTsvQueries) {
  const std::string j = dir_.file("q.jsonl");
  testing::write_text(j,
                      "{\"_id\": \"q1\", \"text\": \"first\"}\n{\"_id\": 2, \"text\": \"two\"}\n");
  std::vector<EvalQuery> qs;
  ASSERT_OK(read_queries(j, {}, &qs));
  ASSERT_EQ(qs.size(), 2u);
  EXPECT_EQ(qs[1].id, "2");
  const std::string t = dir_.file("q.tsv");
  testing::write_text(t, "query-id\ttext\n10\tten\n11\televen words\n");
  ASSERT_OK(read_queries(t, {}, &qs));
  ASSERT_EQ(qs.size(), 2u);
  EXPECT_EQ(qs[1].text, "eleven words");
}

TEST_F(EvalDataTest, TrecTopicsBothStyles) {
  const std::string top = dir_.file("topics.txt");
  testing::write_text(top,
                      "<top>\n<num> Number: 301\n<title> Topic: International Crime\n"
                      "<desc> Description:\nOrganized crime.\n</top>\n"
                      "<top>\n<num>1</num><title>\nMEASUREMENT OF LIQUIDS\n</title>\n</top>\n");
  std::vector<EvalQuery> qs;
  ASSERT_OK(read_queries(top, {}, &qs));
  ASSERT_EQ(qs.size(), 2u);
  EXPECT_EQ(qs[0].id, "301");
  EXPECT_EQ(qs[0].text, "International Crime");
  EXPECT_EQ(qs[1].id, "1");
  EXPECT_EQ(qs[1].text, "MEASUREMENT OF LIQUIDS");
  QueryReaderOptions both;
  both.trec_fields = {"title", "desc"};
  ASSERT_OK(read_queries(top, both, &qs));
  EXPECT_EQ(qs[0].text, "International Crime Organized crime.");
  const std::string doc = dir_.file("cacm_topics.txt");
  testing::write_text(doc,
                      "<DOC>\n<DOCNO> 1 </DOCNO>\n\n What articles exist\nabout TSS?\n</DOC>\n");
  ASSERT_OK(read_queries(doc, {}, &qs));
  ASSERT_EQ(qs.size(), 1u);
  EXPECT_EQ(qs[0].id, "1");
  EXPECT_EQ(qs[0].text, "What articles exist about TSS?");
}

TEST_F(EvalDataTest, SmartQueriesByNumberAndPosition) {
  const std::string p = dir_.file("cran.qry");
  testing::write_text(p, ".I 001\n.W\nfirst query\n.I 004\n.W\nsecond\nquery\n");
  std::vector<EvalQuery> qs;
  QueryReaderOptions o;
  o.format = "smart";
  ASSERT_OK(read_queries(p, o, &qs));
  EXPECT_EQ(qs[1].id, "4");
  EXPECT_EQ(qs[1].text, "second query");
  o.number_by_position = true;
  ASSERT_OK(read_queries(p, o, &qs));
  EXPECT_EQ(qs[1].id, "2");
}

TEST_F(EvalDataTest, MalformedQueries) {
  const std::string p = dir_.file("bad.jsonl");
  testing::write_text(p, "{\"_id\": \"1\", \"text\": \"ok\"}\n{\"_id\": \"2\"}\n");
  std::vector<EvalQuery> qs;
  const Status st = read_queries(p, {}, &qs);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find(p + ":2:"), std::string::npos) << st.message();
  const std::string dup = dir_.file("dup.tsv");
  testing::write_text(dup, "1\ta\n1\tb\n");
  EXPECT_NE(read_queries(dup, {}, &qs).message().find("appears twice"), std::string::npos);
  const std::string notab = dir_.file("notab.tsv");
  testing::write_text(notab, "1 a\n");
  QueryReaderOptions o;
  o.format = "tsv";
  EXPECT_NE(read_queries(notab, o, &qs).message().find(":1: expected 'id<TAB>query text'"),
            std::string::npos);
}

TEST_F(EvalDataTest, QrelsFormats) {
  const std::string trec = dir_.file("qrels.txt");
  testing::write_text(trec, "1 0 d1 2\n1 0 d2 0\n2 Q0 d3 1\n");
  Qrels q;
  ASSERT_OK(read_qrels(trec, {}, &q));
  EXPECT_EQ(q["1"]["d1"], 2);
  EXPECT_EQ(q["2"]["d3"], 1);
  const std::string beir = dir_.file("test.tsv");
  testing::write_text(beir, "query-id\tcorpus-id\tscore\nq1\tc1\t1\n");
  ASSERT_OK(read_qrels(beir, {}, &q));
  EXPECT_EQ(q["q1"]["c1"], 1);
  const std::string cran = dir_.file("cranqrel");
  testing::write_text(cran, "1 184 2 \n1 29 -1\n");
  QrelsReaderOptions o;
  o.relevance_map = "1:4,2:3,3:2,4:1,-1:0";
  ASSERT_OK(read_qrels(cran, o, &q));
  EXPECT_EQ(q["1"]["184"], 3);
  EXPECT_EQ(q["1"]["29"], 0);
  const std::string bad = dir_.file("bad.qrels");
  testing::write_text(bad, "1 0 d1 2\n1 0 d2 high\n");
  const Status st = read_qrels(bad, {}, &q);
  EXPECT_NE(st.message().find(bad + ":2: relevance 'high' is not an integer"), std::string::npos)
      << st.message();
  testing::write_text(bad, "1 d1\n");
  EXPECT_NE(read_qrels(bad, {}, &q).message().find(":1: expected"), std::string::npos);
  o.relevance_map = "1=4";
  EXPECT_EQ(read_qrels(cran, o, &q).code(), StatusCode::kInvalidArgument);
}

TEST_F(EvalDataTest, RunRoundTripAndErrors) {
  blockrank::Run run = {{"q1", {{"d1", 1.5}, {"d2", 3.25}}}};
  const std::string p = dir_.file("run.trec");
  ASSERT_OK(write_run(p, run, "tag"));
  blockrank::Run back;
  ASSERT_OK(read_run(p, &back));
  ASSERT_EQ(back["q1"].size(), 2u);
  EXPECT_EQ(back["q1"][0].doc_id, "d2");  // written best first
  EXPECT_DOUBLE_EQ(back["q1"][0].score, 3.25);
  testing::write_text(p, "q1 Q0 d1 1 notanumber tag\n");
  EXPECT_NE(read_run(p, &back).message().find(":1: score 'notanumber' is not a number"),
            std::string::npos);
  testing::write_text(p, "q1 Q0 d1 1\n");
  EXPECT_NE(read_run(p, &back).message().find("expected 'qid Q0 docid rank score tag'"),
            std::string::npos);
}

TEST_F(EvalDataTest, NormalizeNumericIds) {
  EXPECT_EQ(normalize_numeric_id("CACM-0756"), "CACM-756");
  EXPECT_EQ(normalize_numeric_id("CACM-756"), "CACM-756");
  EXPECT_EQ(normalize_numeric_id("007"), "7");
  EXPECT_EQ(normalize_numeric_id("0"), "0");
  EXPECT_EQ(normalize_numeric_id("abc"), "abc");
}

}  // namespace
}  // namespace blockrank
