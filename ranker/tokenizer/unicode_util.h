// SPDX-License-Identifier: Apache-2.0
// UTF-8 and Unicode helpers for the tokenizer: code point iteration, NFC/NFD/NFKC/NFKD through
// utf8proc, the GPT-2 byte-level alphabet, JavaScript's definition of whitespace (the reference
// tokenizer is a JavaScript port, so trimming follows String.prototype.trim), and a lossy UTF-8
// decoder that replaces bad sequences the way the WHATWG TextDecoder does.
//
// Thread-safety: all functions are pure; the tables are built once and read-only afterwards.
#ifndef BLOCKRANK_RANKER_TOKENIZER_UNICODE_UTIL_H_
#define BLOCKRANK_RANKER_TOKENIZER_UNICODE_UTIL_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "blockrank/status.h"

namespace blockrank::internal {

/// Length in bytes of the (valid) UTF-8 sequence starting with lead byte `c`; 1 for bytes that
/// cannot start a sequence, so callers always make progress.
inline size_t utf8_char_len(unsigned char c) {
  if (c < 0x80) {
    return 1;
  }
  if (c >= 0xF0) {
    return 4;
  }
  if (c >= 0xE0) {
    return 3;
  }
  if (c >= 0xC0) {
    return 2;
  }
  return 1;
}

/// Decodes the code point at `s[*pos]` (input must be valid UTF-8) and advances `*pos`.
char32_t utf8_next(std::string_view s, size_t* pos);
/// Appends the UTF-8 encoding of `cp`.
void utf8_append(char32_t cp, std::string* out);

/// Which Unicode normalization form a Normalizer step applies.
enum class NormalForm { kNfc, kNfd, kNfkc, kNfkd };
/// Normalizes valid UTF-8 `in` into `out`. Pure ASCII is returned unchanged without calling
/// utf8proc (ASCII is invariant under all four forms).
Status normalize_unicode(std::string_view in, NormalForm form, std::string* out);

/// True for the characters JavaScript's `\s` and String.prototype.trim treat as white space:
/// TAB, LF, VT, FF, CR, the Zs category, U+2028, U+2029 and U+FEFF. Unlike Rust's
/// char::is_whitespace this includes U+FEFF and excludes U+0085.
bool is_js_whitespace(char32_t cp);
/// Trims JavaScript white space from the start or the end of valid UTF-8.
std::string_view js_trim_start(std::string_view s);
std::string_view js_trim_end(std::string_view s);
/// True for letters, numbers (any Unicode L or N category) and '_': the word characters that an
/// added token with single_word=true must not touch.
bool is_word_char(char32_t cp);

/// GPT-2's reversible byte <-> printable-character map used by byte-level BPE.
struct ByteLevelAlphabet {
  /// UTF-8 of the character each byte maps to.
  std::array<std::string, 256> byte_to_utf8;
  /// Code point -> byte for the 256 alphabet characters (all below U+0144); -1 elsewhere.
  std::array<int16_t, 324> char_to_byte;
};
const ByteLevelAlphabet& byte_level_alphabet();
/// Maps raw bytes to their byte-level characters.
std::string bytes_to_byte_level(std::string_view bytes);
/// Inverse of bytes_to_byte_level; returns false (and leaves *out unspecified) if `text` holds a
/// character outside the alphabet.
bool byte_level_to_bytes(std::string_view text, std::string* out);

/// Decodes arbitrary bytes as UTF-8, replacing each maximal invalid subsequence with U+FFFD, as
/// the WHATWG TextDecoder (non-fatal) does; the result is always valid UTF-8.
std::string utf8_lossy(std::string_view bytes);

}  // namespace blockrank::internal

#endif  // BLOCKRANK_RANKER_TOKENIZER_UNICODE_UTIL_H_
