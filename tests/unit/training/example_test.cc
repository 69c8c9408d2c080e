// SPDX-License-Identifier: Apache-2.0
// Training data tests: the upstream JSONL reader (file:line errors, skip-and-count), candidate
// sampling (§1.7: every positive kept, N candidates, dummy padding, deterministic per seed and
// index), the training sequence (completion "[ids]" + EOS at the very end, labels only on it, the
// signal row on "[", block lengths summing to the ids) and §1.4 truncation keeping the completion.
// Token-level cases use the llama2 reference tokenizer (.cache/tokenizers; skipped when absent).
#include "training/example.h"

#include <algorithm>
#include <filesystem>
#include <memory>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "indexer/index_writer.h"
#include "indexer/mine.h"
#include "llama2_tokenizer.h"
#include "test_util.h"

namespace blockrank::training {
namespace {

// An example with `num_docs` documents d0..d{n-1}; `positives` are their indices.
RawExample make_example(int num_docs, const std::vector<int>& positives) {
  RawExample ex;
  ex.query = "how long do fleas live";
  ex.query_id = "q1";
  ex.source = "mem.jsonl";
  ex.line = 7;
  for (int k = 0; k < num_docs; ++k) {
    ex.documents.push_back({"d" + std::to_string(k), "Title " + std::to_string(k),
                            "Text of document " + std::to_string(k)});
  }
  for (int p : positives) {
    ex.answer_ids.push_back("d" + std::to_string(p));
  }
  return ex;
}

// ------------------------------------------------------------------------------------------------
// Reading

TEST(TrainingJsonlTest, ParsesTheUpstreamFormat) {
  RawExample ex;
  ASSERT_OK(parse_training_line(
      R"({"query": "q", "query_id": "7", "documents": [{"doc_id": "a", "title": "T", "text": "x"},)"
      R"( {"doc_id": "b", "text": "y"}, {"doc_id": "a", "text": "dup"}], "answer_ids": ["b"]})",
      "f.jsonl", 3, 2, &ex));
  EXPECT_EQ(ex.query, "q");
  EXPECT_EQ(ex.query_id, "7");
  ASSERT_EQ(ex.documents.size(), 2u);  // the duplicate "a" is dropped, first kept
  EXPECT_EQ(ex.documents[0].title, "T");
  EXPECT_EQ(ex.documents[0].text, "x");
  EXPECT_EQ(ex.documents[1].title, "");
  EXPECT_EQ(ex.answer_ids, std::vector<std::string>{"b"});
  EXPECT_EQ(ex.source, "f.jsonl");
  EXPECT_EQ(ex.line, 3);
  // query_id defaults to the row index.
  ASSERT_OK(parse_training_line(
      R"({"query": "q", "documents": [{"doc_id": "a", "text": "x"}], "answer_ids": ["a"]})", "f", 9,
      4, &ex));
  EXPECT_EQ(ex.query_id, "4");
}

TEST(TrainingJsonlTest, BadLinesNameFileLineAndField) {
  struct Case {
    const char* line;
    const char* expect;
  };
  const Case cases[] = {
      {"not json", "f.jsonl:5: not a JSON value"},
      {"[1]", "expected a JSON object"},
      {R"({"documents": [], "answer_ids": []})", "f.jsonl:5: query: missing"},
      {R"({"query": 3})", "query: expected a string, got number"},
      {R"({"query": "  "})", "query: empty"},
      {R"({"query": "q", "answer_ids": ["a"]})", "documents: missing"},
      {R"({"query": "q", "documents": ["x"], "answer_ids": ["0"]})",
       "documents[0]: expected an object"},
      {R"({"query": "q", "documents": [{"text": "x"}], "answer_ids": ["a"]})",
       "documents[0].doc_id: missing"},
      {R"({"query": "q", "documents": [{"doc_id": "a"}], "answer_ids": ["a"]})",
       "documents[0].text: missing"},
      {R"({"query": "q", "documents": [{"doc_id": "a", "text": " "}], "answer_ids": ["a"]})",
       "documents[0].text: empty"},
      {R"({"query": "q", "documents": [{"doc_id": "a", "text": "x"}]})", "answer_ids: missing"},
      {R"({"query": "q", "documents": [{"doc_id": "a", "text": "x"}], "answer_ids": [0]})",
       "answer_ids[0]: expected a doc_id string"},
      {R"({"query": "q", "documents": [{"doc_id": "a", "text": "x"}], "answer_ids": []})",
       "answer_ids: empty"},
      {R"({"query": "q", "documents": [{"doc_id": "a", "text": "x"}], "answer_ids": ["z"]})",
       "answer_ids: none of the 1 answer id(s) names a document"},
  };
  for (const Case& c : cases) {
    RawExample ex;
    const Status s = parse_training_line(c.line, "f.jsonl", 5, 0, &ex);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.line;
    EXPECT_NE(s.message().find(c.expect), std::string::npos) << c.line << " -> " << s.message();
  }
}

TEST(TrainingJsonlTest, FailsOnTheFirstBadLineOrSkipsAndCounts) {
  blockrank::testing::TempDir dir;
  const std::string path = dir.file("train.jsonl");
  blockrank::testing::write_text(
      path, R"({"query": "a", "documents": [{"doc_id": "1", "text": "x"}], "answer_ids": ["1"]})"
            "\n\n"
            R"({"query": "b", "documents": [{"doc_id": "1", "text": ""}], "answer_ids": ["1"]})"
            "\n"
            R"({"query": "c", "documents": [{"doc_id": "1", "text": "y"}], "answer_ids": ["1"]})"
            "\n");
  std::vector<RawExample> out;
  ReadStats stats;
  Status s = read_training_jsonl(path, ReadOptions{}, &out, &stats);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find(path + ":3: documents[0].text: empty"), std::string::npos)
      << s.message();

  out.clear();
  stats = ReadStats{};
  ReadOptions skip;
  skip.skip_bad = true;
  ASSERT_OK(read_training_jsonl(path, skip, &out, &stats));
  EXPECT_EQ(stats.read, 2);
  EXPECT_EQ(stats.skipped, 1);
  ASSERT_EQ(stats.first_errors.size(), 1u);
  EXPECT_NE(stats.first_errors[0].find(":3:"), std::string::npos);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1].query, "c");
  EXPECT_EQ(out[1].line, 4);
  EXPECT_EQ(out[1].query_id, "2");  // row index counts the skipped line, not the blank one

  EXPECT_EQ(read_training_jsonl(dir.file("missing.jsonl"), skip, &out, &stats).code(),
            StatusCode::kNotFound);
}

// What `blockrank mine` writes is what training reads: mine the sample corpus, read it back
// (gzip), and build a training example from every line.
TEST(TrainingJsonlTest, ReadsWhatMineWrites) {
  blockrank::testing::TempDir dir;
  const std::string sample = blockrank::testing::source_dir() + "/examples/sample-corpus/";
  IndexRunStats index_stats;
  ASSERT_OK(
      index_files(dir.file("db"), {sample + "corpus.jsonl"}, IndexRunOptions(), &index_stats));
  MineOptions mine;
  mine.db = dir.file("db");
  mine.queries = sample + "queries.tsv";
  mine.qrels = sample + "qrels.txt";
  mine.out = dir.file("train.jsonl.gz");
  mine.k = 6;
  MineStats mine_stats;
  ASSERT_OK(mine_training_data(mine, &mine_stats));
  std::vector<RawExample> examples;
  ReadStats stats;
  ASSERT_OK(read_training_jsonl(mine.out, ReadOptions{}, &examples, &stats));
  ASSERT_EQ(stats.read, 8);
  EXPECT_EQ(examples[0].query_id, "q1");
  EXPECT_EQ(examples[0].line, 1);
  std::unique_ptr<Tokenizer> tok = llama2_tokenizer();
  if (tok == nullptr) {
    return;  // the reading half ran; building needs the reference tokenizer
  }
  ExampleOptions opt;
  opt.num_documents = 8;
  for (size_t i = 0; i < examples.size(); ++i) {
    TrainingExample ex;
    ASSERT_OK(build_training_example(*tok, examples[i], opt, i, &ex));
    EXPECT_EQ(ex.positives.size(), examples[i].answer_ids.size()) << examples[i].query_id;
  }
}

// ------------------------------------------------------------------------------------------------
// Building

TEST(TrainingExampleTest, CompletionText) {
  EXPECT_EQ(completion_text({3, 7}), "[3, 7]");
  EXPECT_EQ(completion_text({0}), "[0]");
}

TEST(TrainingExampleTest, KeepsEveryPositiveSamplesToNAndIsDeterministic) {
  REQUIRE_LLAMA2(tok);
  const RawExample raw = make_example(50, {4, 17, 33});
  ExampleOptions opt;
  opt.num_documents = 10;
  TrainingExample a, b, c;
  ASSERT_OK(build_training_example(*tok, raw, opt, /*index=*/0, &a));
  ASSERT_OK(build_training_example(*tok, raw, opt, /*index=*/0, &b));
  ASSERT_OK(build_training_example(*tok, raw, opt, /*index=*/1, &c));
  EXPECT_EQ(a.input_ids, b.input_ids);
  EXPECT_EQ(a.doc_ids, b.doc_ids);
  EXPECT_NE(a.doc_ids, c.doc_ids);  // another index, another sample/shuffle

  EXPECT_EQ(a.query_id, "q1");
  ASSERT_EQ(a.doc_ids.size(), 10u);
  EXPECT_EQ(a.block_lengths.size(), 12u);  // instruction + 10 docs + query block
  std::set<std::string> unique(a.doc_ids.begin(), a.doc_ids.end());
  EXPECT_EQ(unique.size(), 10u);
  ASSERT_EQ(a.positives.size(), 3u);
  EXPECT_TRUE(std::is_sorted(a.positives.begin(), a.positives.end()));
  std::set<std::string> pos_ids;
  for (int32_t p : a.positives) {
    pos_ids.insert(a.doc_ids[static_cast<size_t>(p)]);
  }
  EXPECT_EQ(pos_ids, (std::set<std::string>{"d4", "d17", "d33"}));

  // Another seed gives another sample; the same seed+index gives the same one.
  ExampleOptions other = opt;
  other.seed = 7;
  TrainingExample d;
  ASSERT_OK(build_training_example(*tok, raw, other, 0, &d));
  EXPECT_NE(a.doc_ids, d.doc_ids);
}

TEST(TrainingExampleTest, PadsWithDummyDocuments) {
  REQUIRE_LLAMA2(tok);
  const RawExample raw = make_example(3, {1});
  ExampleOptions opt;
  opt.num_documents = 6;
  TrainingExample ex;
  ASSERT_OK(build_training_example(*tok, raw, opt, 0, &ex));
  ASSERT_EQ(ex.doc_ids.size(), 6u);
  EXPECT_EQ(std::count(ex.doc_ids.begin(), ex.doc_ids.end(), ""), 3);
  ASSERT_EQ(ex.positives.size(), 1u);
  EXPECT_EQ(ex.doc_ids[static_cast<size_t>(ex.positives[0])], "d1");
  // A dummy's block is the dummy text in the document format.
  const size_t dummy =
      static_cast<size_t>(std::find(ex.doc_ids.begin(), ex.doc_ids.end(), "") - ex.doc_ids.begin());
  size_t offset = 0;
  for (size_t b = 0; b < dummy + 1; ++b) {
    offset += static_cast<size_t>(ex.block_lengths[b]);
  }
  const std::vector<int32_t> want =
      encode(*tok, "\nID: " + std::to_string(dummy) + " | CONTENT: " + kDummyDocumentText +
                       " | END ID: " + std::to_string(dummy));
  ASSERT_EQ(static_cast<size_t>(ex.block_lengths[dummy + 1]), want.size());
  EXPECT_TRUE(std::equal(want.begin(), want.end(), ex.input_ids.begin() + offset));
}

TEST(TrainingExampleTest, MorePositivesThanNKeepsTheFirstN) {
  REQUIRE_LLAMA2(tok);
  const RawExample raw = make_example(8, {0, 1, 2, 3, 4, 5});
  ExampleOptions opt;
  opt.num_documents = 4;
  TrainingExample ex;
  ASSERT_OK(build_training_example(*tok, raw, opt, 0, &ex));
  EXPECT_EQ(ex.positives, (std::vector<int32_t>{0, 1, 2, 3}));
  std::set<std::string> ids(ex.doc_ids.begin(), ex.doc_ids.end());
  EXPECT_EQ(ids, (std::set<std::string>{"d0", "d1", "d2", "d3"}));
}

TEST(TrainingExampleTest, CompletionLabelsAndSignalRow) {
  REQUIRE_LLAMA2(tok);
  const RawExample raw = make_example(12, {2, 9});
  ExampleOptions opt;
  opt.num_documents = 8;
  TrainingExample ex;
  ASSERT_OK(build_training_example(*tok, raw, opt, 3, &ex));
  ASSERT_EQ(ex.labels.size(), ex.input_ids.size());
  EXPECT_EQ(std::accumulate(ex.block_lengths.begin(), ex.block_lengths.end(), int64_t{0}),
            static_cast<int64_t>(ex.input_ids.size()));

  // The completion "[a, b]" + EOS ends the sequence; labels are exactly its tokens.
  std::vector<int32_t> completion = encode(*tok, completion_text(ex.positives));
  completion.push_back(*tok->eos_id());
  const size_t first = ex.input_ids.size() - completion.size();
  EXPECT_TRUE(std::equal(completion.begin(), completion.end(), ex.input_ids.begin() + first));
  for (size_t t = 0; t < ex.labels.size(); ++t) {
    EXPECT_EQ(ex.labels[t], t < first ? kIgnoreLabel : ex.input_ids[t]) << t;
  }
  EXPECT_EQ(ex.input_ids.back(), *tok->eos_id());

  // The signal row is the "[" inference ends with, and the token before it ends the prompt.
  EXPECT_EQ(static_cast<size_t>(ex.signal_row), first);
  const std::vector<int32_t> open = encode(*tok, "[");
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(ex.input_ids[static_cast<size_t>(ex.signal_row)], open[0]);
  EXPECT_EQ(ex.labels[static_cast<size_t>(ex.signal_row) - 1], kIgnoreLabel);

  // Without the completion after "[", the sequence is what inference's build_prompt gives for
  // the same candidates in the same order (same blocks, same ids).
  std::vector<PromptDocument> docs;
  for (const std::string& id : ex.doc_ids) {
    const int k = std::stoi(id.substr(1));
    docs.push_back(
        {raw.documents[static_cast<size_t>(k)].title, raw.documents[static_cast<size_t>(k)].text});
  }
  Prompt prompt;
  PromptOptions popt;
  popt.max_block_length = opt.max_block_length;
  ASSERT_OK(build_prompt(*tok, raw.query, docs, popt, &prompt));
  std::vector<int32_t> prefix(ex.input_ids.begin(),
                              ex.input_ids.begin() + static_cast<std::ptrdiff_t>(first) + 1);
  EXPECT_EQ(prefix, prompt.input.input_ids);
  std::vector<int32_t> lengths = ex.block_lengths;
  lengths.back() -= static_cast<int32_t>(completion.size()) - 1;
  EXPECT_EQ(lengths, prompt.input.block_lengths);
}

TEST(TrainingExampleTest, TruncationKeepsTheCompletion) {
  REQUIRE_LLAMA2(tok);
  RawExample raw = make_example(5, {3});
  std::string long_text;
  for (int k = 0; k < 200; ++k) {
    long_text += "word" + std::to_string(k) + " ";
  }
  raw.documents[0].text = long_text;
  raw.query = "a very long query " + long_text;
  ExampleOptions opt;
  opt.num_documents = 5;
  opt.max_block_length = 70;  // H = 80
  TrainingExample ex;
  ASSERT_OK(build_training_example(*tok, raw, opt, 0, &ex));
  EXPECT_EQ(ex.block_length, 80);
  EXPECT_TRUE(ex.query_truncated);
  for (int32_t len : ex.block_lengths) {
    EXPECT_LE(len, 80);
  }
  EXPECT_EQ(ex.block_lengths.front(), 80);  // the instruction block keeps its first H tokens
  EXPECT_EQ(std::accumulate(ex.block_lengths.begin(), ex.block_lengths.end(), int64_t{0}),
            static_cast<int64_t>(ex.input_ids.size()));
  std::vector<int32_t> completion = encode(*tok, completion_text(ex.positives));
  completion.push_back(*tok->eos_id());
  EXPECT_TRUE(std::equal(completion.rbegin(), completion.rend(), ex.input_ids.rbegin()));
  EXPECT_EQ(static_cast<size_t>(ex.signal_row), ex.input_ids.size() - completion.size());
  EXPECT_EQ(std::count_if(ex.labels.begin(), ex.labels.end(),
                          [](int32_t l) { return l != kIgnoreLabel; }),
            static_cast<std::ptrdiff_t>(completion.size()));

  // Too small for the fixed text plus the completion: a clear error naming the line.
  opt.max_block_length = 16;
  const Status s = build_training_example(*tok, raw, opt, 0, &ex);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("mem.jsonl:7: max_block_length 16"), std::string::npos) << s.message();
}

TEST(TrainingExampleTest, ErrorsNameTheLine) {
  REQUIRE_LLAMA2(tok);
  RawExample raw = make_example(3, {});
  raw.answer_ids = {"nope"};
  TrainingExample ex;
  Status s = build_training_example(*tok, raw, ExampleOptions{}, 0, &ex);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("mem.jsonl:7: answer_ids"), std::string::npos) << s.message();
  ExampleOptions zero;
  zero.num_documents = 0;
  EXPECT_EQ(build_training_example(*tok, make_example(3, {1}), zero, 0, &ex).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace blockrank::training
