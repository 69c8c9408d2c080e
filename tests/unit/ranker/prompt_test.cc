// SPDX-License-Identifier: Apache-2.0
// Prompt builder tests: the rendered pieces against strings derived by hand from BLOCKRANK.md
// §1.1-§1.2, per-piece tokenization with the reference vocabularies (llama2 = the Mistral-style
// SentencePiece BPE, qwen3 = byte-level BPE; skipped until scripts/tokenizer-reference/setup.sh
// has filled .cache/tokenizers), the "[" signal token at the very end, and §1.4 truncation
// including the query-text guard.
#include "ranker/core/prompt.h"

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.h"

namespace blockrank {
namespace {

const char* kInstructionSentence =
    "You will be given a query and a list of documents. Each document will be formatted as ID: "
    "<id> | CONTENT: <content> | END ID: <id>. You need to read carefully and understand all of "
    "them and your goal is to find all document(s) from the list that can help answer the query.";

std::unique_ptr<Tokenizer> reference_tokenizer(const std::string& name) {
  const std::string path = testing::source_dir() + "/.cache/tokenizers/" + name + "/tokenizer.json";
  if (!std::filesystem::exists(path)) {
    return nullptr;
  }
  std::unique_ptr<Tokenizer> t;
  EXPECT_OK(Tokenizer::load(path, &t));
  return t;
}

#define REQUIRE_TOKENIZER(var, name)                                              \
  std::unique_ptr<Tokenizer> var = reference_tokenizer(name);                     \
  if (var == nullptr) {                                                           \
    GTEST_SKIP() << "needs .cache/tokenizers/" name                               \
                    "/tokenizer.json (run scripts/tokenizer-reference/setup.sh)"; \
  }

std::vector<int32_t> encode(const Tokenizer& t, const std::string& text) {
  std::vector<int32_t> ids;
  EXPECT_OK(t.encode(text, &ids));
  return ids;
}

std::vector<PromptDocument> two_docs() {
  return {{"Fleas", "A flea lives up to a year. "}, {"", "  Cats sleep a lot.\n"}};
}

TEST(PromptTest, TemplateNames) {
  EXPECT_EQ(*parse_prompt_template("mistral"), PromptTemplate::kMistral);
  EXPECT_EQ(*parse_prompt_template("chatml"), PromptTemplate::kChatML);
  EXPECT_EQ(*parse_prompt_template("qwen"), PromptTemplate::kChatML);
  EXPECT_EQ(parse_prompt_template("llama").status().code(), StatusCode::kInvalidArgument);
  EXPECT_STREQ(prompt_template_name(PromptTemplate::kChatML), "chatml");
}

TEST(PromptTest, StripWhitespaceLikePython) {
  EXPECT_EQ(strip_whitespace("  a b \n\t"), "a b");
  EXPECT_EQ(strip_whitespace("\xC2\xA0x\xE2\x80\x83"), "x");  // NBSP, EM SPACE
  EXPECT_EQ(strip_whitespace("\xC3\xA9"), "\xC3\xA9");        // é is not whitespace
  EXPECT_EQ(strip_whitespace(" \n "), "");
}

// The pieces written out by hand from §1.1-§1.2: what upstream's split on the separator gives,
// with "\n" prepended to every piece but the first and the last.
TEST(PromptTest, MistralPiecesMatchTheReferenceLayout) {
  const PromptPieces p =
      render_prompt_pieces(PromptTemplate::kMistral, "how long do fleas live", two_docs());
  EXPECT_EQ(p.instruction, std::string("<s>[INST] ") + kInstructionSentence +
                               "\nQuery: how long do fleas live\n\nDocuments:");
  ASSERT_EQ(p.documents.size(), 2u);
  EXPECT_EQ(p.documents[0], "\nID: 0 | CONTENT: Fleas A flea lives up to a year. | END ID: 0");
  // Empty title: (title + " " + text).strip() drops the joining space too.
  EXPECT_EQ(p.documents[1], "\nID: 1 | CONTENT: Cats sleep a lot. | END ID: 1");
  EXPECT_EQ(p.query_prompt,
            "\n\n====== Now let's start! ======\nWhich document is most relevant to answer the "
            "query? Print out the ID of the document.\nQuery: how long do fleas live\nThe "
            "following document(s) can help answer the query:[/INST] Final Answer: ");
  EXPECT_EQ(p.completion, "[");
}

TEST(PromptTest, ChatMLPieces) {
  const PromptPieces p = render_prompt_pieces(PromptTemplate::kChatML, "q?", two_docs());
  EXPECT_EQ(p.instruction.rfind("<|im_start|>system\n", 0), 0u);
  EXPECT_NE(p.instruction.find("<|im_end|>\n<|im_start|>user\n<Instruct>: You will be given"),
            std::string::npos);
  EXPECT_EQ(p.instruction.substr(p.instruction.size() - 13), "\n<Query>: q?\n");
  EXPECT_EQ(p.documents[0],
            "\n<Document>: ID: 0 | CONTENT: Fleas A flea lives up to a year. | "
            "END ID: 0");
  EXPECT_EQ(p.query_prompt,
            "\n<|im_end|>\n<|im_start|>assistant\n<think>I need to give the IDs of the most "
            "relevant documents in the list for the query: q? formatted as list "
            "[...].</think>\n<Answer>: ");
  EXPECT_EQ(p.completion, "[");
}

// Every block is its piece tokenized alone (no special tokens added), so SentencePiece's prefix
// space applies per piece (§1.3).
TEST(PromptTest, MistralStyleTokenIdsPerPiece) {
  REQUIRE_TOKENIZER(tok, "llama2");
  const std::string query = "how long do fleas live";
  const PromptPieces pieces = render_prompt_pieces(PromptTemplate::kMistral, query, two_docs());
  Prompt p;
  ASSERT_OK(build_prompt(*tok, query, two_docs(), PromptOptions{}, &p));
  std::vector<std::vector<int32_t>> want = {
      encode(*tok, pieces.instruction), encode(*tok, pieces.documents[0]),
      encode(*tok, pieces.documents[1]), encode(*tok, pieces.query_prompt)};
  const std::vector<int32_t> bracket = encode(*tok, "[");
  want.back().insert(want.back().end(), bracket.begin(), bracket.end());
  std::vector<int32_t> ids;
  std::vector<int32_t> lengths;
  for (const auto& b : want) {
    ids.insert(ids.end(), b.begin(), b.end());
    lengths.push_back(static_cast<int32_t>(b.size()));
  }
  EXPECT_EQ(p.input.input_ids, ids);
  EXPECT_EQ(p.input.block_lengths, lengths);
  EXPECT_EQ(p.untruncated_lengths, lengths);
  EXPECT_FALSE(p.query_truncated);
  int64_t longest = 0;
  for (int32_t n : lengths) {
    longest = std::max<int64_t>(longest, n);
  }
  EXPECT_EQ(p.block_length, (longest + 15) / 16 * 16);

  // Hand-checked ids of this vocabulary: "<s>" is BOS (1) matched in the text; "[" alone is the
  // space-prefixed "▁[" (733) because the piece gets its own prefix space; the prompt part of the
  // last block ends with the lone "▁" (28705) of "Answer: " (§1.3's prediction).
  EXPECT_EQ(p.input.input_ids.front(), 1);
  EXPECT_EQ(bracket, std::vector<int32_t>{733});
  EXPECT_EQ(tok->token_to_id("\xE2\x96\x81["), std::optional<int32_t>(733));
  ASSERT_GE(p.input.input_ids.size(), 2u);
  EXPECT_EQ(p.input.input_ids.back(), 733);
  EXPECT_EQ(p.input.input_ids[p.input.input_ids.size() - 2], 28705);
  // Document blocks start with the prefix space and the "\n" byte token.
  EXPECT_EQ(want[1][0], 28705);
  EXPECT_EQ(want[1][1], *tok->token_to_id("<0x0A>"));
}

TEST(PromptTest, ChatMLEndsWithBracketToken) {
  REQUIRE_TOKENIZER(tok, "qwen3");
  Prompt p;
  PromptOptions o;
  o.tmpl = PromptTemplate::kChatML;
  ASSERT_OK(build_prompt(*tok, "q?", two_docs(), o, &p));
  EXPECT_EQ(p.input.input_ids.front(), *tok->token_to_id("<|im_start|>"));
  EXPECT_EQ(p.input.input_ids.back(), *tok->token_to_id("["));
  EXPECT_EQ(p.input.block_lengths.size(), 4u);
}

TEST(PromptTest, TruncatesBlocksAndGuardsTheCompletion) {
  REQUIRE_TOKENIZER(tok, "llama2");
  std::string long_text, long_query;
  for (int i = 0; i < 200; ++i) {
    long_text += "word" + std::to_string(i) + " ";
  }
  for (int i = 0; i < 60; ++i) {
    long_query += "fleas" + std::to_string(i) + " ";
  }
  const std::vector<PromptDocument> docs = {{"T", long_text}, {"", "short"}};
  PromptOptions o;
  o.max_block_length = 70;  // H = 80
  Prompt p;
  ASSERT_OK(build_prompt(*tok, long_query, docs, o, &p));
  EXPECT_EQ(p.block_length, 80);
  const PromptPieces pieces = render_prompt_pieces(PromptTemplate::kMistral, long_query, docs);
  // Instruction and long document: their first H tokens.
  const std::vector<int32_t> instr = encode(*tok, pieces.instruction);
  const std::vector<int32_t> doc0 = encode(*tok, pieces.documents[0]);
  ASSERT_GT(instr.size(), 80u);
  ASSERT_GT(doc0.size(), 80u);
  EXPECT_EQ(p.input.block_lengths[0], 80);
  EXPECT_EQ(p.input.block_lengths[1], 80);
  EXPECT_EQ(std::vector<int32_t>(p.input.input_ids.begin(), p.input.input_ids.begin() + 80),
            std::vector<int32_t>(instr.begin(), instr.begin() + 80));
  EXPECT_EQ(std::vector<int32_t>(p.input.input_ids.begin() + 80, p.input.input_ids.begin() + 160),
            std::vector<int32_t>(doc0.begin(), doc0.begin() + 80));
  EXPECT_EQ(p.input.block_lengths[2],
            static_cast<int32_t>(encode(*tok, pieces.documents[1]).size()));
  // The query block was too long: its query text was shortened, the completion kept.
  EXPECT_TRUE(p.query_truncated);
  EXPECT_GT(p.untruncated_lengths[3], 80);
  EXPECT_LE(p.input.block_lengths[3], 80);
  EXPECT_GT(p.input.block_lengths[3], 60);  // it keeps as much of the query as fits
  EXPECT_EQ(p.input.input_ids.back(), 733);
  EXPECT_EQ(p.input.input_ids[p.input.input_ids.size() - 2], 28705);
  int64_t total = 0;
  for (int32_t n : p.input.block_lengths) {
    total += n;
  }
  EXPECT_EQ(total, static_cast<int64_t>(p.input.input_ids.size()));

  // H too small for the query block's fixed text: refused rather than cutting the signal off.
  o.max_block_length = 16;
  Status s = build_prompt(*tok, "q", docs, o, &p);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("too small"), std::string::npos) << s.message();
}

TEST(PromptTest, RejectsBadInput) {
  REQUIRE_TOKENIZER(tok, "llama2");
  Prompt p;
  EXPECT_EQ(build_prompt(*tok, "q", {}, PromptOptions{}, &p).code(), StatusCode::kInvalidArgument);
  const std::vector<PromptDocument> bad = {{"", "bad \xFF utf8"}};
  Status s = build_prompt(*tok, "q", bad, PromptOptions{}, &p);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("document 0"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace blockrank
