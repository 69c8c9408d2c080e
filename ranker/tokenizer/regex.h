// SPDX-License-Identifier: Apache-2.0
// A PCRE2 (UTF + UCP, JIT when available) regex that behaves like the JavaScript `gu` regex the
// reference tokenizer builds from the same tokenizer.json pattern. The pattern is rewritten first:
// `\s`/`\S` get JavaScript's white-space set (which has U+FEFF and lacks U+0085, where PCRE2 and
// the Rust `onig` engine differ), `\d`/`\w` stay ASCII as in JavaScript, and the case-insensitive
// contraction group is expanded exactly as transformers.js does (so `'ſ` is not matched as `'s`).
//
// Thread-safety: a compiled Regex is immutable; find_all() may run concurrently.
#ifndef BLOCKRANK_RANKER_TOKENIZER_REGEX_H_
#define BLOCKRANK_RANKER_TOKENIZER_REGEX_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "blockrank/status.h"

namespace blockrank::internal {

class Regex {
 public:
  /// A match as [begin, end) byte offsets into the searched text.
  using Span = std::pair<size_t, size_t>;

  /// Compiles `pattern` (tokenizer.json syntax) after the JavaScript-compatibility rewrite.
  /// Returns kInvalidArgument with PCRE2's message and offset when it does not compile.
  static Status compile(std::string_view pattern, std::unique_ptr<Regex>* out);
  /// Compiles `literal` so that it matches itself.
  static Status compile_literal(std::string_view literal, std::unique_ptr<Regex>* out);
  /// The rewrite compile() applies (exposed for tests).
  static Status rewrite_js_compatible(std::string_view pattern, std::string* out);

  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  /// Appends every non-empty match of `text` (valid UTF-8), left to right and non-overlapping, as
  /// JavaScript's String.prototype.matchAll does (an empty match advances by one code point).
  Status find_all(std::string_view text, std::vector<Span>* matches) const;

  const std::string& pattern() const { return pattern_; }

 private:
  Regex() = default;
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*
  bool jit_ = false;
};

}  // namespace blockrank::internal

#endif  // BLOCKRANK_RANKER_TOKENIZER_REGEX_H_
