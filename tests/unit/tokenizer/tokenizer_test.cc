// SPDX-License-Identifier: Apache-2.0
// Unit tests of the tokenizer on tiny tokenizer.json files written by the test: a byte-level BPE
// (Qwen/Llama-3 layout) and a SentencePiece-style BPE (Llama-2/Mistral layout), added-token
// matching, decoding, malformed files and invalid UTF-8. No network and no cache needed.
#include "ranker/tokenizer/tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "plugin/base/sha256.h"
#include "ranker/tokenizer/regex.h"
#include "ranker/tokenizer/unicode_util.h"
#include "test_util.h"

#include <nlohmann/json.hpp>

namespace blockrank {
namespace {

using Json = nlohmann::json;
using Ids = std::vector<int32_t>;

constexpr char kQwenSplit[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// A byte-level BPE: the 256 alphabet characters are ids 0..255, then a few merges.
Json byte_level_json(bool ignore_merges) {
  Json vocab = Json::object();
  const auto& alphabet = internal::byte_level_alphabet();
  for (int b = 0; b < 256; ++b) {
    vocab[alphabet.byte_to_utf8[b]] = b;
  }
  vocab["Ġt"] = 256;
  vocab["he"] = 257;
  vocab["Ġthe"] = 258;
  vocab["abc"] = 259;  // reachable only through ignore_merges (no merge builds it)
  Json merges =
      Json::array({Json::array({"Ġ", "t"}), Json::array({"h", "e"}), Json::array({"Ġt", "he"})});
  Json j;
  j["version"] = "1.0";
  j["added_tokens"] = Json::array({{{"id", 260},
                                    {"content", "<|end|>"},
                                    {"single_word", false},
                                    {"lstrip", false},
                                    {"rstrip", false},
                                    {"normalized", false},
                                    {"special", true}},
                                   {{"id", 261},
                                    {"content", "<|strip|>"},
                                    {"single_word", false},
                                    {"lstrip", true},
                                    {"rstrip", true},
                                    {"normalized", false},
                                    {"special", true}}});
  j["normalizer"] = {{"type", "NFC"}};
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers", Json::array({{{"type", "Split"},
                                                        {"pattern", {{"Regex", kQwenSplit}}},
                                                        {"behavior", "Isolated"},
                                                        {"invert", false}},
                                                       {{"type", "ByteLevel"},
                                                        {"add_prefix_space", false},
                                                        {"trim_offsets", false},
                                                        {"use_regex", false}}})}};
  j["post_processor"] = nullptr;
  j["decoder"] = {{"type", "ByteLevel"}};
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"byte_fallback", false},
                {"ignore_merges", ignore_merges},
                {"vocab", vocab},
                {"merges", merges}};
  return j;
}

// A SentencePiece-style BPE with byte fallback, as Llama-2/Mistral ship it.
Json sentencepiece_json() {
  Json vocab = Json::object();
  vocab["<unk>"] = 0;
  vocab["<s>"] = 1;
  vocab["</s>"] = 2;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = 3 + b;
  }
  int next = 259;
  for (const char* t : {"▁", "h", "e", "l", "o", "w", "r", "d", "▁h", "ll", "▁he", "▁hell",
                        "▁hello", "▁w", "or", "▁wor", "▁world"}) {
    vocab[t] = next++;
  }
  // No merge builds "▁worl", so "▁world" is unreachable and "world" ends as ▁wor + l + d.
  Json merges = Json::array({"▁ h", "l l", "▁h e", "▁he ll", "▁hell o", "▁ w", "o r", "▁w or"});
  Json j;
  j["version"] = "1.0";
  j["added_tokens"] = Json::array();
  for (auto [id, content] : {std::pair<int, const char*>{0, "<unk>"}, {1, "<s>"}, {2, "</s>"}}) {
    j["added_tokens"].push_back({{"id", id},
                                 {"content", content},
                                 {"single_word", false},
                                 {"lstrip", false},
                                 {"rstrip", false},
                                 {"normalized", false},
                                 {"special", true}});
  }
  j["normalizer"] = {
      {"type", "Sequence"},
      {"normalizers",
       Json::array({{{"type", "Prepend"}, {"prepend", "▁"}},
                    {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "▁"}}})}};
  j["pre_tokenizer"] = nullptr;
  j["decoder"] = {
      {"type", "Sequence"},
      {"decoders",
       Json::array({{{"type", "Replace"}, {"pattern", {{"String", "▁"}}}, {"content", " "}},
                    {{"type", "ByteFallback"}},
                    {{"type", "Fuse"}},
                    {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}};
  j["model"] = {{"type", "BPE"},    {"dropout", nullptr},    {"unk_token", "<unk>"},
                {"fuse_unk", true}, {"byte_fallback", true}, {"vocab", vocab},
                {"merges", merges}};
  return j;
}

class TokenizerTest : public ::testing::Test {
 protected:
  std::unique_ptr<Tokenizer> load_json(const Json& j, const std::string& name = "tokenizer.json") {
    const std::string path = dir_.file(name);
    testing::write_text(path, j.dump());
    std::unique_ptr<Tokenizer> tok;
    Status s = Tokenizer::load(path, &tok);
    EXPECT_TRUE(s.is_ok()) << s.to_string();
    return tok;
  }
  Status load_text(const std::string& content, std::unique_ptr<Tokenizer>* tok) {
    const std::string path = dir_.file("bad.json");
    testing::write_text(path, content);
    return Tokenizer::load(path, tok);
  }
  Ids encode(const Tokenizer& tok, const std::string& text) {
    Ids ids;
    Status s = tok.encode(text, &ids);
    EXPECT_TRUE(s.is_ok()) << s.to_string();
    return ids;
  }
  std::string decode(const Tokenizer& tok, const Ids& ids) {
    std::string text;
    Status s = tok.decode(ids, &text);
    EXPECT_TRUE(s.is_ok()) << s.to_string();
    return text;
  }
  testing::TempDir dir_;
};

int32_t byte_id(unsigned char b) {
  return b;
}  // ids 0..255 are the bytes in byte_level_json

TEST_F(TokenizerTest, ByteLevelMergesAndAddedTokens) {
  auto tok = load_json(byte_level_json(/*ignore_merges=*/false));
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(encode(*tok, " the"), (Ids{258}));
  EXPECT_EQ(encode(*tok, "the"), (Ids{byte_id('t'), 257}));
  EXPECT_EQ(encode(*tok, "the the"), (Ids{byte_id('t'), 257, 258}));
  EXPECT_EQ(encode(*tok, "abc"), (Ids{byte_id('a'), byte_id('b'), byte_id('c')}));
  EXPECT_EQ(encode(*tok, "x<|end|> the"), (Ids{byte_id('x'), 260, 258}));
  // Multi-byte characters become one id per byte.
  EXPECT_EQ(encode(*tok, "é"), (Ids{0xC3, 0xA9}));
  // NFC: e + combining acute composes to U+00E9 before byte mapping.
  EXPECT_EQ(encode(*tok, "e\xCC\x81"), (Ids{0xC3, 0xA9}));
  EXPECT_EQ(encode(*tok, ""), Ids{});
  EXPECT_EQ(tok->vocab_size(), 262);
  EXPECT_EQ(tok->token_to_id("<|end|>"), 260);
  EXPECT_EQ(tok->id_to_token(258), "Ġthe");
  EXPECT_EQ(tok->id_to_token(9999), "");
  EXPECT_EQ(decode(*tok, encode(*tok, "x<|end|> the café\n\t")), "x<|end|> the café\n\t");
}

TEST_F(TokenizerTest, IgnoreMergesTakesWholeWordVocabularyHits) {
  auto tok = load_json(byte_level_json(/*ignore_merges=*/true));
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(encode(*tok, "abc"), (Ids{259}));
  EXPECT_EQ(encode(*tok, " the"), (Ids{258}));
}

TEST_F(TokenizerTest, LstripRstripAddedTokenEatsNeighbouringWhiteSpace) {
  auto tok = load_json(byte_level_json(false));
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(encode(*tok, "x  <|strip|>  y"), (Ids{byte_id('x'), 261, byte_id('y')}));
  EXPECT_EQ(encode(*tok, "x  <|end|>"), (Ids{byte_id('x'), byte_id(' '), byte_id(' '), 260}));
}

TEST_F(TokenizerTest, SingleWordAddedTokenMustNotTouchWordCharacters) {
  Json j = byte_level_json(false);
  j["added_tokens"].push_back({{"id", 262},
                               {"content", "<w>"},
                               {"single_word", true},
                               {"lstrip", false},
                               {"rstrip", false},
                               {"normalized", false},
                               {"special", true}});
  auto tok = load_json(j);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(encode(*tok, "<w>"), (Ids{262}));
  EXPECT_EQ(encode(*tok, "x <w>."), (Ids{byte_id('x'), byte_id(' '), 262, byte_id('.')}));
  const Ids glued = encode(*tok, "x<w>");
  EXPECT_EQ(std::count(glued.begin(), glued.end(), 262), 0);
}

TEST_F(TokenizerTest, SentencePieceBpeWithByteFallback) {
  auto tok = load_json(sentencepiece_json());
  ASSERT_NE(tok, nullptr);
  const int32_t hello = *tok->token_to_id("▁hello");
  const int32_t world_w = *tok->token_to_id("▁wor");
  EXPECT_EQ(encode(*tok, "hello"), (Ids{hello}));
  // "▁world" has no merge path ("▁worl" is not a token): ▁wor + l + d.
  EXPECT_EQ(encode(*tok, "hello world"),
            (Ids{hello, world_w, *tok->token_to_id("l"), *tok->token_to_id("d")}));
  // é is not in the vocabulary: bytes C3 A9 -> <0xC3> <0xA9>.
  const Ids ids = encode(*tok, "é");
  EXPECT_EQ(ids, (Ids{*tok->token_to_id("▁"), 3 + 0xC3, 3 + 0xA9}));
  EXPECT_EQ(decode(*tok, ids), "é");
  // Added tokens are matched before the Prepend normalizer, which then applies per section.
  EXPECT_EQ(encode(*tok, "<s>hello"), (Ids{1, hello}));
  EXPECT_EQ(decode(*tok, encode(*tok, "hello world")), "hello world");
  EXPECT_EQ(decode(*tok, Ids{1, hello}), "<s> hello");
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->unk_id(), 0);
  EXPECT_FALSE(tok->pad_id().has_value());
}

TEST_F(TokenizerTest, SentencePieceMergeAcrossMetaspaceDisablesWordCutting) {
  // With a merge "o" + "▁" the section cannot be cut into words before each "▁"; the ids must be
  // those of BPE over the whole section.
  Json j = sentencepiece_json();
  j["model"]["vocab"]["o▁"] = 400;
  j["model"]["merges"].insert(j["model"]["merges"].begin(), "o ▁");
  auto tok = load_json(j);
  ASSERT_NE(tok, nullptr);
  const auto id = [&](const char* t) { return *tok->token_to_id(t); };
  EXPECT_EQ(encode(*tok, "hello world"),
            (Ids{id("▁hell"), id("o▁"), id("w"), id("or"), id("l"), id("d")}));
}

TEST_F(TokenizerTest, MetaspacePreTokenizerWithPrependSchemeFirst) {
  // The layout of newer Llama/Mistral tokenizer.json files (no normalizer, Metaspace with
  // prepend_scheme "first" and split false). Not covered by the npm reference; Rust semantics.
  Json j = sentencepiece_json();
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {
      {"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "first"}, {"split", false}};
  j["decoder"] = {{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "first"}};
  auto tok = load_json(j);
  ASSERT_NE(tok, nullptr);
  const auto id = [&](const char* t) { return *tok->token_to_id(t); };
  EXPECT_EQ(encode(*tok, "hello world"), (Ids{id("▁hello"), id("▁wor"), id("l"), id("d")}));
  // Only the first section gets the prefix: after an added token the text starts bare.
  EXPECT_EQ(encode(*tok, "<s>hello"), (Ids{1, id("h"), id("e"), id("ll"), id("o")}));
  EXPECT_EQ(decode(*tok, encode(*tok, "hello world")), "hello world");
}

TEST_F(TokenizerTest, LoadsFromModelDirectoryAndDigestIsStable) {
  auto a = load_json(sentencepiece_json(), "tokenizer.json");
  std::unique_ptr<Tokenizer> b;
  ASSERT_OK(Tokenizer::load(dir_.path(), &b));
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->digest(), b->digest());
  EXPECT_EQ(a->digest().size(), 64u);
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex(std::string(1000, 'a')),
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
}

TEST_F(TokenizerTest, InvalidUtf8IsRejectedWithOffset) {
  auto tok = load_json(byte_level_json(false));
  ASSERT_NE(tok, nullptr);
  for (const std::string& bad : {std::string("\xFF"), std::string("abc\xC3"),
                                 std::string("\xC0\xAF"), std::string("ok \xED\xA0\x80")}) {
    Ids ids;
    Status s = tok->encode(bad, &ids);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("byte offset"), std::string::npos) << s.message();
  }
}

TEST_F(TokenizerTest, DecodeRejectsUnknownIds) {
  auto tok = load_json(byte_level_json(false));
  ASSERT_NE(tok, nullptr);
  std::string text;
  EXPECT_EQ(tok->decode({1, 99999}, &text).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(tok->decode({-1}, &text).code(), StatusCode::kInvalidArgument);
  // Partial UTF-8 sequences decode lossily, never to invalid UTF-8.
  ASSERT_OK(tok->decode({0xC3}, &text));
  EXPECT_EQ(text, "\xEF\xBF\xBD");
}

TEST_F(TokenizerTest, MalformedFilesGiveClearErrors) {
  std::unique_ptr<Tokenizer> tok;
  Status s = Tokenizer::load(dir_.file("missing.json"), &tok);
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  s = Tokenizer::load(dir_.path(), &tok);  // a directory without tokenizer.json
  EXPECT_EQ(s.code(), StatusCode::kNotFound);

  s = load_text("{\"model\": ", &tok);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("not valid JSON"), std::string::npos) << s.message();

  s = load_text("[1, 2]", &tok);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  s = load_text("{\"version\": \"1.0\"}", &tok);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("model"), std::string::npos) << s.message();

  Json j = sentencepiece_json();
  j["model"]["type"] = "Unigram";
  s = load_text(j.dump(), &tok);
  EXPECT_EQ(s.code(), StatusCode::kUnimplemented);
  EXPECT_NE(s.message().find("Unigram"), std::string::npos) << s.message();

  j = sentencepiece_json();
  j["model"]["merges"].push_back("▁ zz");
  s = load_text(j.dump(), &tok);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("zz"), std::string::npos) << s.message();

  j = sentencepiece_json();
  j["model"]["merges"].push_back("nospace");
  EXPECT_EQ(load_text(j.dump(), &tok).code(), StatusCode::kInvalidArgument);

  j = sentencepiece_json();
  j["model"]["vocab"]["h"] = "seven";
  EXPECT_EQ(load_text(j.dump(), &tok).code(), StatusCode::kInvalidArgument);

  j = sentencepiece_json();
  j["model"].erase("vocab");
  EXPECT_EQ(load_text(j.dump(), &tok).code(), StatusCode::kInvalidArgument);

  j = sentencepiece_json();
  j["model"]["unk_token"] = "<nope>";
  EXPECT_EQ(load_text(j.dump(), &tok).code(), StatusCode::kInvalidArgument);

  j = byte_level_json(false);
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "([unclosed";
  s = load_text(j.dump(), &tok);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("does not compile"), std::string::npos) << s.message();

  j = byte_level_json(false);
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  EXPECT_EQ(load_text(j.dump(), &tok).code(), StatusCode::kUnimplemented);

  j = byte_level_json(false);
  j["added_tokens"][0]["content"] = 5;
  EXPECT_EQ(load_text(j.dump(), &tok).code(), StatusCode::kInvalidArgument);

  j = byte_level_json(false);
  j["decoder"] = {{"type", "Strip"}, {"content", " "}};
  EXPECT_EQ(load_text(j.dump(), &tok).code(), StatusCode::kInvalidArgument);
}

TEST_F(TokenizerTest, RegexFollowsJavaScriptWhiteSpace) {
  std::unique_ptr<internal::Regex> re;
  ASSERT_OK(internal::Regex::compile("\\s+", &re));
  std::vector<internal::Regex::Span> spans;
  ASSERT_OK(
      re->find_all("a\xEF\xBB\xBF"
                   "b\xC2\x85"
                   "c",
                   &spans));  // U+FEFF yes, U+0085 no
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_EQ(spans[0], (internal::Regex::Span{1, 4}));
  ASSERT_OK(internal::Regex::compile("(?i:'s|'t|'re|'ve|'m|'ll|'d)", &re));
  spans.clear();
  ASSERT_OK(re->find_all("'S '\xC5\xBF", &spans));  // 'ſ is not a contraction in JavaScript
  EXPECT_EQ(spans.size(), 1u);
}

TEST_F(TokenizerTest, ConcurrentEncodesAgree) {
  auto tok = load_json(byte_level_json(false));
  ASSERT_NE(tok, nullptr);
  const std::string text = "the the <|end|> thethe the café 12345 ";
  const Ids expected = encode(*tok, text);
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) {
        Ids ids;
        if (!tok->encode(text + std::to_string(i % 7), &ids).is_ok() ||
            !std::equal(expected.begin(), expected.end(), ids.begin())) {
          ++failures[t];
        }
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  EXPECT_EQ(failures, std::vector<int>(4, 0));
}

}  // namespace
}  // namespace blockrank
