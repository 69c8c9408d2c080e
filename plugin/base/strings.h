// SPDX-License-Identifier: Apache-2.0
// Small string helpers shared by the readers, the CLI and the server.
#ifndef BLOCKRANK_BASE_STRINGS_H_
#define BLOCKRANK_BASE_STRINGS_H_

#include <string>
#include <string_view>
#include <vector>

namespace blockrank {

std::string_view trim(std::string_view s);
std::vector<std::string> split(std::string_view s, char sep);
/// Splits on runs of spaces and tabs.
std::vector<std::string> split_whitespace(std::string_view s);
bool starts_with(std::string_view s, std::string_view prefix);
bool ends_with(std::string_view s, std::string_view suffix);
std::string to_lower_ascii(std::string_view s);
/// Returns the byte offset of the first invalid UTF-8 sequence, or std::string::npos if valid.
size_t find_invalid_utf8(std::string_view s);
/// Replaces each invalid UTF-8 byte with U+FFFD.
std::string sanitize_utf8(std::string_view s);
/// Collapses runs of whitespace (incl. newlines) into single spaces and trims.
std::string collapse_whitespace(std::string_view s);

}  // namespace blockrank

#endif  // BLOCKRANK_BASE_STRINGS_H_
