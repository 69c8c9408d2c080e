// SPDX-License-Identifier: Apache-2.0
// Index writing: replacement by id, stored text, batched atomic commits, stop-on-bad-record keeping
// the last commit, --skip-bad, cancellation, a second writer, and search over the result.
#include "indexer/index_writer.h"

#include <gtest/gtest.h>
#include <xapian.h>

#include "indexer/searcher.h"
#include "test_util.h"

namespace blockrank {
namespace {

class IndexWriterTest : public ::testing::Test {
 protected:
  std::string db() const { return dir_.file("db"); }
  uint64_t count() const { return Xapian::Database(db()).get_doccount(); }
  testing::TempDir dir_;
};

TEST_F(IndexWriterTest, AddReplaceAndSearch) {
  std::unique_ptr<IndexWriter> w;
  ASSERT_OK(IndexWriter::open(db(), {}, &w));
  bool replaced = true;
  ASSERT_OK(
      w->add({"d1", "Foxes", "The quick brown fox jumps over the lazy dog", "t:1"}, &replaced));
  EXPECT_FALSE(replaced);
  ASSERT_OK(w->add({"d2", "", "Dogs are running through the forest", "t:2"}, &replaced));
  ASSERT_OK(w->add({"d1", "Cats", "A cat sleeps all day", "t:3"}, &replaced));
  EXPECT_TRUE(replaced);
  ASSERT_OK(w->commit());
  EXPECT_EQ(count(), 2u);

  std::unique_ptr<Searcher> s;
  ASSERT_OK(Searcher::open(db(), {}, &s));
  std::vector<SearchHit> hits;
  ASSERT_OK(s->search("sleeping cats", 10, &hits));
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].id, "d1");
  EXPECT_EQ(hits[0].title, "Cats");
  EXPECT_EQ(hits[0].text, "A cat sleeps all day");
  EXPECT_EQ(hits[0].rank, 1);
  // Stemming: "run" finds "running"; stop words alone find nothing.
  ASSERT_OK(s->search("run", 10, &hits));
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].id, "d2");
  ASSERT_OK(s->search("the and of", 10, &hits));
  EXPECT_TRUE(hits.empty());
  // The old text of d1 is gone.
  ASSERT_OK(s->search("fox", 10, &hits));
  EXPECT_TRUE(hits.empty());
  SearchHit got;
  ASSERT_OK(s->get_document("d2", &got));
  EXPECT_EQ(got.text, "Dogs are running through the forest");
  EXPECT_EQ(s->get_document("nope", &got).code(), StatusCode::kNotFound);
}

TEST_F(IndexWriterTest, UncommittedBatchIsDroppedNotCommitted) {
  {
    std::unique_ptr<IndexWriter> w;
    ASSERT_OK(IndexWriter::open(db(), {}, &w));
    ASSERT_OK(w->add({"a", "", "alpha", "x"}));
    ASSERT_OK(w->commit());
    ASSERT_OK(w->add({"b", "", "beta", "x"}));
    // Destroyed without commit.
  }
  EXPECT_EQ(count(), 1u);
}

TEST_F(IndexWriterTest, StopsOnBadRecordKeepingLastCommit) {
  const std::string corpus = dir_.file("c.jsonl");
  std::string text;
  for (int i = 0; i < 7; ++i) {
    text += "{\"_id\": \"d" + std::to_string(i) + "\", \"text\": \"doc number " +
            std::to_string(i) + "\"}\n";
  }
  text += "{\"_id\": broken\n";
  text += "{\"_id\": \"after\", \"text\": \"after the bad line\"}\n";
  testing::write_text(corpus, text);
  IndexRunOptions opts;
  opts.writer.batch_size = 3;
  IndexRunStats stats;
  const Status st = index_files(db(), {corpus}, opts, &stats);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find(corpus + ":8: invalid JSON"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("keeps its last commit, 6 documents"), std::string::npos)
      << st.message();
  // Two full batches (6 docs) were committed; d6 was in the open batch and is dropped.
  EXPECT_EQ(count(), 6u);

  opts.skip_bad = true;
  ASSERT_OK(index_files(db(), {corpus}, opts, &stats));
  EXPECT_EQ(stats.skipped, 1u);
  EXPECT_EQ(stats.documents, 8u);
  EXPECT_EQ(stats.replaced, 6u);
  EXPECT_EQ(count(), 8u);
}

TEST_F(IndexWriterTest, CancelDropsOpenBatch) {
  const std::string corpus = dir_.file("c.tsv");
  testing::write_text(corpus, "1\tone\n2\ttwo\n");
  std::atomic<bool> cancel{true};
  IndexRunOptions opts;
  opts.cancel = &cancel;
  IndexRunStats stats;
  EXPECT_EQ(index_files(db(), {corpus}, opts, &stats).code(), StatusCode::kCancelled);
}

TEST_F(IndexWriterTest, MissingInputFailsBeforeWriting) {
  IndexRunStats stats;
  const Status st = index_files(db(), {dir_.file("nope.jsonl")}, {}, &stats);
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
}

TEST_F(IndexWriterTest, SecondWriterIsUnavailable) {
  std::unique_ptr<IndexWriter> w1;
  ASSERT_OK(IndexWriter::open(db(), {}, &w1));
  std::unique_ptr<IndexWriter> w2;
  EXPECT_EQ(IndexWriter::open(db(), {}, &w2).code(), StatusCode::kUnavailable);
}

TEST_F(IndexWriterTest, RejectsOverlongIdAndMismatchedSettings) {
  {
    std::unique_ptr<IndexWriter> w;
    ASSERT_OK(IndexWriter::open(db(), {}, &w));
    EXPECT_EQ(w->add({std::string(300, 'x'), "", "t", "f:1"}).code(), StatusCode::kInvalidArgument);
    ASSERT_OK(w->add({"ok", "", "t", "f:2"}));
    ASSERT_OK(w->commit());
  }
  IndexWriterOptions other;
  other.language = "french";
  std::unique_ptr<IndexWriter> w;
  EXPECT_EQ(IndexWriter::open(db(), other, &w).code(), StatusCode::kInvalidArgument);
}

TEST_F(IndexWriterTest, SearchingAMissingIndexIsNotFound) {
  std::unique_ptr<Searcher> s;
  EXPECT_EQ(Searcher::open(dir_.file("none"), {}, &s).code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace blockrank
