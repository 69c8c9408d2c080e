// SPDX-License-Identifier: Apache-2.0
// The llama2 reference vocabulary for the training tests (scripts/tokenizer-reference/setup.sh puts
// it in .cache; tests that need it skip without it).
#ifndef BLOCKRANK_TESTS_UNIT_TRAINING_LLAMA2_TOKENIZER_H_
#define BLOCKRANK_TESTS_UNIT_TRAINING_LLAMA2_TOKENIZER_H_

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ranker/tokenizer/tokenizer.h"
#include "test_util.h"

namespace blockrank::training {

/// The tokenizer, or nullptr when the cache is empty.
inline std::unique_ptr<Tokenizer> llama2_tokenizer() {
  const std::string path =
      blockrank::testing::source_dir() + "/.cache/tokenizers/llama2/tokenizer.json";
  if (!std::filesystem::exists(path)) {
    return nullptr;
  }
  std::unique_ptr<Tokenizer> t;
  EXPECT_OK(Tokenizer::load(path, &t));
  return t;
}

/// `text` encoded by `t` (a failure is a test failure).
inline std::vector<int32_t> encode(const Tokenizer& t, const std::string& text) {
  std::vector<int32_t> ids;
  EXPECT_OK(t.encode(text, &ids));
  return ids;
}

}  // namespace blockrank::training

/// Declares `var` as the llama2 tokenizer, or skips the test.
#define REQUIRE_LLAMA2(var)                                          \
  std::unique_ptr<Tokenizer> var = llama2_tokenizer();               \
  if (var == nullptr) {                                              \
    GTEST_SKIP() << "needs .cache/tokenizers/llama2/tokenizer.json " \
                    "(run scripts/tokenizer-reference/setup.sh)";    \
  }

#endif  // BLOCKRANK_TESTS_UNIT_TRAINING_LLAMA2_TOKENIZER_H_
