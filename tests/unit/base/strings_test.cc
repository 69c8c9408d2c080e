// SPDX-License-Identifier: Apache-2.0
#include "plugin/base/strings.h"

#include <gtest/gtest.h>

namespace blockrank {
namespace {

TEST(StringsTest, TrimSplit) {
  EXPECT_EQ(trim("  a b \r\n"), "a b");
  EXPECT_EQ(split("a\tb\t", '\t'), (std::vector<std::string>{"a", "b", ""}));
  EXPECT_EQ(split_whitespace(" 1  Q0\tdoc "), (std::vector<std::string>{"1", "Q0", "doc"}));
  EXPECT_EQ(collapse_whitespace("  a \n\n b  "), "a b");
}

TEST(StringsTest, Utf8Validation) {
  EXPECT_EQ(find_invalid_utf8("caf\xC3\xA9 \xF0\x9F\x98\x80"), std::string::npos);
  EXPECT_EQ(find_invalid_utf8("ab\xC3"), 2u);
  EXPECT_EQ(find_invalid_utf8("\xED\xA0\x80"), 0u);  // surrogate
  EXPECT_EQ(find_invalid_utf8("\xC0\xAF"), 0u);      // overlong
  EXPECT_EQ(sanitize_utf8("a\xFF"
                          "b"),
            "a\xEF\xBF\xBD"
            "b");
}

}  // namespace
}  // namespace blockrank
