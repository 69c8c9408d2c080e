// SPDX-License-Identifier: Apache-2.0
// Implementation of the tokenizer's UTF-8 helpers; see unicode_util.h.
#include "ranker/tokenizer/unicode_util.h"

#include <cstdlib>

#include <utf8proc.h>

namespace blockrank::internal {

char32_t utf8_next(std::string_view s, size_t* pos) {
  const auto c = static_cast<unsigned char>(s[*pos]);
  const size_t n = utf8_char_len(c);
  if (n == 1 || *pos + n > s.size()) {
    ++*pos;
    return c;
  }
  char32_t cp = n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < n; ++k) {
    cp = (cp << 6) | (static_cast<unsigned char>(s[*pos + k]) & 0x3F);
  }
  *pos += n;
  return cp;
}

void utf8_append(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

Status normalize_unicode(std::string_view in, NormalForm form, std::string* out) {
  bool ascii = true;
  for (char c : in) {
    if (static_cast<unsigned char>(c) >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) {
    out->assign(in);
    return Status::ok();
  }
  int options = UTF8PROC_STABLE;
  switch (form) {
    case NormalForm::kNfc:
      options |= UTF8PROC_COMPOSE;
      break;
    case NormalForm::kNfd:
      options |= UTF8PROC_DECOMPOSE;
      break;
    case NormalForm::kNfkc:
      options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
      break;
    case NormalForm::kNfkd:
      options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
      break;
  }
  utf8proc_uint8_t* buffer = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(in.data()),
                                          static_cast<utf8proc_ssize_t>(in.size()), &buffer,
                                          static_cast<utf8proc_option_t>(options));
  if (n < 0) {
    return Status::invalid_argument(std::string("unicode normalization failed: ") +
                                    utf8proc_errmsg(n));
  }
  out->assign(reinterpret_cast<const char*>(buffer), static_cast<size_t>(n));
  std::free(buffer);
  return Status::ok();
}

bool is_js_whitespace(char32_t cp) {
  if (cp <= 0x20) {
    return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
  }
  if (cp < 0xA0) {
    return false;
  }
  switch (cp) {
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
    case 0xFEFF:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

std::string_view js_trim_start(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    size_t next = pos;
    if (!is_js_whitespace(utf8_next(s, &next))) {
      break;
    }
    pos = next;
  }
  return s.substr(pos);
}

std::string_view js_trim_end(std::string_view s) {
  // Walk forward remembering where the trailing white-space run began: UTF-8 cannot be decoded
  // backwards without re-synchronising, and the strings here are short.
  size_t pos = 0;
  size_t end = 0;
  while (pos < s.size()) {
    if (!is_js_whitespace(utf8_next(s, &pos))) {
      end = pos;
    }
  }
  return s.substr(0, end);
}

bool is_word_char(char32_t cp) {
  if (cp == '_') {
    return true;
  }
  if (cp < 0x80) {
    return (cp >= '0' && cp <= '9') || ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z');
  }
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}

namespace {
ByteLevelAlphabet build_alphabet() {
  ByteLevelAlphabet a;
  a.char_to_byte.fill(-1);
  // Bytes that are printable Latin-1 keep their own code point; the other 68 are shifted to
  // U+0100.. in byte order, exactly as GPT-2's bytes_to_unicode().
  char32_t next_extra = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    const char32_t cp = printable ? static_cast<char32_t>(b) : next_extra++;
    utf8_append(cp, &a.byte_to_utf8[b]);
    a.char_to_byte[cp] = static_cast<int16_t>(b);
  }
  return a;
}
}  // namespace

const ByteLevelAlphabet& byte_level_alphabet() {
  static const ByteLevelAlphabet alphabet = build_alphabet();
  return alphabet;
}

std::string bytes_to_byte_level(std::string_view bytes) {
  const ByteLevelAlphabet& a = byte_level_alphabet();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) {
    out += a.byte_to_utf8[static_cast<unsigned char>(c)];
  }
  return out;
}

bool byte_level_to_bytes(std::string_view text, std::string* out) {
  const ByteLevelAlphabet& a = byte_level_alphabet();
  out->clear();
  size_t pos = 0;
  while (pos < text.size()) {
    const char32_t cp = utf8_next(text, &pos);
    if (cp >= a.char_to_byte.size() || a.char_to_byte[cp] < 0) {
      return false;
    }
    out->push_back(static_cast<char>(a.char_to_byte[cp]));
  }
  return true;
}

std::string utf8_lossy(std::string_view s) {
  static constexpr char kReplacement[] = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    size_t need = 0;
    unsigned char lower = 0x80;
    unsigned char upper = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      lower = c == 0xE0 ? 0xA0 : 0x80;
      upper = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      lower = c == 0xF0 ? 0x90 : 0x80;
      upper = c == 0xF4 ? 0x8F : 0xBF;
    } else {
      out += kReplacement;
      ++i;
      continue;
    }
    // Consume the longest valid prefix; a bad or missing continuation byte ends the maximal
    // subpart, which becomes one U+FFFD, and is then reprocessed on its own.
    size_t j = i + 1;
    bool ok = true;
    for (size_t k = 0; k < need; ++k, ++j) {
      if (j >= n) {
        ok = false;
        break;
      }
      const auto b = static_cast<unsigned char>(s[j]);
      if (b < lower || b > upper) {
        ok = false;
        break;
      }
      lower = 0x80;
      upper = 0xBF;
    }
    if (ok) {
      out.append(s.substr(i, j - i));
    } else {
      out += kReplacement;
    }
    i = j;
  }
  return out;
}

}  // namespace blockrank::internal
