// SPDX-License-Identifier: Apache-2.0
// PCRE2 adapter for the tokenizer's Split/Replace patterns; see regex.h for why the pattern is
// rewritten before compiling.
#include "ranker/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include "ranker/tokenizer/unicode_util.h"

#include <pcre2.h>

namespace blockrank::internal {
namespace {

// JavaScript's WhiteSpace + LineTerminator set, as a character-class body.
constexpr char kJsSpaceBody[] = "\\t\\n\\x{0B}\\f\\r\\p{Zs}\\x{2028}\\x{2029}\\x{FEFF}";
constexpr char kJsDigitBody[] = "0-9";
constexpr char kJsWordBody[] = "A-Za-z0-9_";

// transformers.js replaces this group because JavaScript has no inline (?i:...) modifier.
constexpr char kContractionsCaseless[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
constexpr char kContractionsExpanded[] = "(?:'([sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))";

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  if (pcre2_get_error_message(code, buffer, sizeof(buffer)) < 0) {
    return "pcre2 error " + std::to_string(code);
  }
  return reinterpret_cast<const char*>(buffer);
}

}  // namespace

Status Regex::rewrite_js_compatible(std::string_view pattern, std::string* out) {
  std::string src(pattern);
  for (size_t pos = src.find(kContractionsCaseless); pos != std::string::npos;
       pos = src.find(kContractionsCaseless, pos)) {
    src.replace(pos, sizeof(kContractionsCaseless) - 1, kContractionsExpanded);
    pos += sizeof(kContractionsExpanded) - 1;
  }
  out->clear();
  bool in_class = false;
  for (size_t i = 0; i < src.size(); ++i) {
    const char c = src[i];
    if (c == '\\' && i + 1 < src.size()) {
      const char e = src[i + 1];
      const char* body = nullptr;
      bool negated = false;
      switch (e) {
        case 's':
        case 'S':
          body = kJsSpaceBody;
          negated = e == 'S';
          break;
        case 'd':
        case 'D':
          body = kJsDigitBody;
          negated = e == 'D';
          break;
        case 'w':
        case 'W':
          body = kJsWordBody;
          negated = e == 'W';
          break;
        default:
          break;
      }
      if (body == nullptr) {
        out->push_back(c);
        out->push_back(e);
      } else if (in_class) {
        if (negated) {
          return Status::unimplemented("regex: negated class escape \\" + std::string(1, e) +
                                       " inside [...] is not supported: " + std::string(pattern));
        }
        *out += body;
      } else {
        *out += negated ? "[^" : "[";
        *out += body;
        *out += "]";
      }
      ++i;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out->push_back(c);
      // A ']' (or '^]') right after '[' is a literal, not the end of the class.
      if (i + 1 < src.size() && src[i + 1] == '^') {
        out->push_back(src[++i]);
      }
      if (i + 1 < src.size() && src[i + 1] == ']') {
        out->push_back(src[++i]);
      }
      continue;
    }
    if (in_class && c == ']') {
      in_class = false;
    }
    out->push_back(c);
  }
  return Status::ok();
}

Status Regex::compile(std::string_view pattern, std::unique_ptr<Regex>* out) {
  std::string rewritten;
  BLOCKRANK_RETURN_IF_ERROR(rewrite_js_compatible(pattern, &rewritten));
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(rewritten.data()), rewritten.size(),
                                   PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
  if (code == nullptr) {
    return Status::invalid_argument("regex " + std::string(pattern) +
                                    " does not compile: " + pcre2_message(error_code) +
                                    " at offset " + std::to_string(error_offset));
  }
  std::unique_ptr<Regex> regex(new Regex());
  regex->pattern_ = std::string(pattern);
  regex->code_ = code;
  regex->jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  *out = std::move(regex);
  return Status::ok();
}

Status Regex::compile_literal(std::string_view literal, std::unique_ptr<Regex>* out) {
  std::string quoted = "\\Q";
  // \Q...\E cannot contain "\E"; split it out as an escaped backslash + 'E'.
  for (size_t i = 0; i < literal.size(); ++i) {
    if (literal[i] == '\\' && i + 1 < literal.size() && literal[i + 1] == 'E') {
      quoted += "\\E\\\\\\Q";
    } else {
      quoted.push_back(literal[i]);
    }
  }
  quoted += "\\E";
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(quoted.data()), quoted.size(),
                                   PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
  if (code == nullptr) {
    return Status::invalid_argument("literal pattern does not compile: " +
                                    pcre2_message(error_code));
  }
  std::unique_ptr<Regex> regex(new Regex());
  regex->pattern_ = std::string(literal);
  regex->code_ = code;
  regex->jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  *out = std::move(regex);
  return Status::ok();
}

Regex::~Regex() {
  pcre2_code_free(static_cast<pcre2_code*>(code_));
}

Status Regex::find_all(std::string_view text, std::vector<Span>* matches) const {
  auto* code = static_cast<pcre2_code*>(code_);
  pcre2_match_data* data = pcre2_match_data_create_from_pattern(code, nullptr);
  if (data == nullptr) {
    return Status::resource_exhausted("regex: out of memory for match data");
  }
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0;
  Status status;
  while (start <= text.size()) {
    // The text was validated once by the caller, so PCRE2 need not re-check it per match.
    int rc =
        jit_ ? pcre2_jit_match(code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, data, nullptr)
             : PCRE2_ERROR_JIT_BADOPTION;
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT || rc == PCRE2_ERROR_JIT_BADOPTION) {
      // The interpreter keeps its backtracking state on the heap, so it copes with inputs
      // (very long runs) that overflow the JIT's small default stack.
      rc = pcre2_match(code, subject, text.size(), start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, data,
                       nullptr);
    }
    if (rc == PCRE2_ERROR_NOMATCH) {
      break;
    }
    if (rc < 0) {
      status = Status::internal("regex " + pattern_ + ": match failed: " + pcre2_message(rc));
      break;
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
    const size_t begin = ovector[0];
    const size_t end = ovector[1];
    if (end > begin) {
      matches->emplace_back(begin, end);
      start = end;
    } else {
      if (begin >= text.size()) {
        break;
      }
      start = begin + utf8_char_len(static_cast<unsigned char>(text[begin]));
    }
  }
  pcre2_match_data_free(data);
  return status;
}

}  // namespace blockrank::internal
