// SPDX-License-Identifier: Apache-2.0
// tokenizer.json parsing and the encode/decode pipeline; see hf_tokenizer.h. JSON exceptions are
// caught here and become kInvalidArgument naming the file and the field.
#include "ranker/tokenizer/hf_tokenizer.h"

#include <cstdint>
#include <deque>
#include <new>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "plugin/base/sha256.h"
#include "plugin/base/strings.h"
#include "ranker/tokenizer/bpe_model.h"
#include "ranker/tokenizer/regex.h"
#include "ranker/tokenizer/unicode_util.h"

#include <nlohmann/json.hpp>

namespace blockrank::internal {
namespace {

using Json = nlohmann::json;

// ---------------------------------------------------------------------------------------------
// Pipeline components
// ---------------------------------------------------------------------------------------------

struct NormalizerStep {
  enum class Kind { kUnicode, kPrepend, kReplace };
  Kind kind = Kind::kUnicode;
  NormalForm form = NormalForm::kNfc;
  std::string text;              // Prepend: the prefix; Replace with a String pattern: the literal
  std::string content;           // Replace: the replacement
  std::unique_ptr<Regex> regex;  // Replace with a Regex pattern
};

enum class PrependScheme { kAlways, kFirst, kNever };

struct PreTokenizerStep {
  enum class Kind { kSplit, kByteLevel, kMetaspace };
  Kind kind = Kind::kSplit;
  std::unique_ptr<Regex> regex;  // Split; ByteLevel with use_regex
  bool removed = false;          // Split behavior "Removed" (else "Isolated")
  bool invert = false;
  bool add_prefix_space = false;  // ByteLevel
  std::string replacement;        // Metaspace
  PrependScheme prepend = PrependScheme::kAlways;
  bool split = true;
};

struct DecoderStep {
  enum class Kind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip, kMetaspace };
  Kind kind = Kind::kFuse;
  std::string pattern;  // Replace (String)
  std::string content;  // Replace: replacement; Strip: the character stripped
  std::unique_ptr<Regex> regex;
  size_t start = 0;  // Strip
  size_t stop = 0;
  std::string replacement;  // Metaspace
  bool prepend = true;
};

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool special = false;
};

/// Finds added tokens in text: at each position the longest token that starts there, scanning
/// left to right, as transformers.js's DictionarySplitter (a trie) does.
class AddedTokenMatcher {
 public:
  void build(const std::vector<AddedToken>& tokens) {
    nodes_terminal_.assign(1, -1);
    for (size_t t = 0; t < tokens.size(); ++t) {
      int32_t node = 0;
      for (char ch : tokens[t].content) {
        const auto byte = static_cast<unsigned char>(ch);
        const uint64_t key = (static_cast<uint64_t>(node) << 8) | byte;
        auto it = edges_.find(key);
        if (it == edges_.end()) {
          nodes_terminal_.push_back(-1);
          it = edges_.emplace(key, static_cast<int32_t>(nodes_terminal_.size() - 1)).first;
        }
        node = it->second;
      }
      nodes_terminal_[node] = static_cast<int32_t>(t);
      first_byte_[static_cast<unsigned char>(tokens[t].content[0])] = true;
    }
  }
  bool empty() const { return edges_.empty(); }

  /// The longest token starting at `pos`, as (index into tokens, length), or index -1.
  std::pair<int32_t, size_t> longest_at(std::string_view text, size_t pos) const {
    if (!first_byte_[static_cast<unsigned char>(text[pos])]) {
      return {-1, 0};
    }
    int32_t node = 0;
    std::pair<int32_t, size_t> best{-1, 0};
    for (size_t i = pos; i < text.size(); ++i) {
      auto it =
          edges_.find((static_cast<uint64_t>(node) << 8) | static_cast<unsigned char>(text[i]));
      if (it == edges_.end()) {
        break;
      }
      node = it->second;
      if (nodes_terminal_[node] >= 0) {
        best = {nodes_terminal_[node], i + 1 - pos};
      }
    }
    return best;
  }

 private:
  std::unordered_map<uint64_t, int32_t> edges_;
  std::vector<int32_t> nodes_terminal_;
  bool first_byte_[256] = {};
};

void replace_all(std::string_view text,
                 std::string_view from,
                 std::string_view to,
                 std::string* out) {
  out->clear();
  if (from.empty()) {
    out->assign(text);
    return;
  }
  size_t pos = 0;
  while (true) {
    const size_t hit = text.find(from, pos);
    if (hit == std::string_view::npos) {
      break;
    }
    out->append(text.substr(pos, hit - pos));
    out->append(to);
    pos = hit + from.size();
  }
  out->append(text.substr(pos));
}

Status replace_regex(const Regex& regex,
                     std::string_view text,
                     std::string_view to,
                     std::string* out) {
  std::vector<Regex::Span> spans;
  BLOCKRANK_RETURN_IF_ERROR(regex.find_all(text, &spans));
  out->clear();
  size_t pos = 0;
  for (const auto& [begin, end] : spans) {
    out->append(text.substr(pos, begin - pos));
    out->append(to);
    pos = end;
  }
  out->append(text.substr(pos));
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------
// The tokenizer
// ---------------------------------------------------------------------------------------------

class HfTokenizer final : public Tokenizer {
 public:
  Status encode(std::string_view text, std::vector<int32_t>* ids) const override;
  Status decode(const std::vector<int32_t>& ids, std::string* text) const override;
  std::optional<int32_t> token_to_id(std::string_view token) const override {
    auto it = token_to_id_.find(token);
    if (it == token_to_id_.end()) {
      return std::nullopt;
    }
    return it->second;
  }
  std::string id_to_token(int32_t id) const override {
    if (id < 0 || id >= vocab_size()) {
      return std::string();
    }
    return id_to_token_[static_cast<size_t>(id)];
  }
  int32_t vocab_size() const override { return static_cast<int32_t>(id_to_token_.size()); }
  std::optional<int32_t> bos_id() const override { return bos_id_; }
  std::optional<int32_t> eos_id() const override { return eos_id_; }
  std::optional<int32_t> unk_id() const override { return unk_id_; }
  std::optional<int32_t> pad_id() const override { return pad_id_; }
  const std::string& digest() const override { return digest_; }

 private:
  friend class HfTokenizerBuilder;

  Status encode_section(std::string_view section,
                        size_t section_index,
                        std::vector<int32_t>* ids) const;
  Status normalize(std::string_view text, std::string* out) const;

  std::vector<NormalizerStep> normalizers_;
  std::vector<PreTokenizerStep> pre_tokenizers_;
  std::vector<DecoderStep> decoders_;
  std::unique_ptr<BpeModel> model_;
  std::vector<AddedToken> added_tokens_;
  AddedTokenMatcher added_matcher_;

  std::vector<std::string> id_to_token_;
  std::vector<bool> is_added_;  // by id; the ByteLevel decoder leaves added tokens as they are
  std::unordered_map<std::string_view, int32_t> token_to_id_;
  std::optional<int32_t> bos_id_, eos_id_, unk_id_, pad_id_;
  std::string digest_;
};

Status HfTokenizer::normalize(std::string_view text, std::string* out) const {
  out->assign(text);
  std::string next;
  for (const NormalizerStep& step : normalizers_) {
    switch (step.kind) {
      case NormalizerStep::Kind::kUnicode:
        BLOCKRANK_RETURN_IF_ERROR(normalize_unicode(*out, step.form, &next));
        break;
      case NormalizerStep::Kind::kPrepend:
        // transformers.js prepends unconditionally; empty sections never get here (they are
        // skipped before normalization), which is also what the Rust crate does.
        next = step.text;
        next += *out;
        break;
      case NormalizerStep::Kind::kReplace:
        if (step.regex) {
          BLOCKRANK_RETURN_IF_ERROR(replace_regex(*step.regex, *out, step.content, &next));
        } else {
          replace_all(*out, step.text, step.content, &next);
        }
        break;
    }
    out->swap(next);
  }
  return Status::ok();
}

Status HfTokenizer::encode_section(std::string_view section,
                                   size_t section_index,
                                   std::vector<int32_t>* ids) const {
  std::string normalized_buffer;
  std::string_view normalized = section;
  if (!normalizers_.empty()) {
    BLOCKRANK_RETURN_IF_ERROR(normalize(section, &normalized_buffer));
    normalized = normalized_buffer;
  }
  if (normalized.empty()) {
    return Status::ok();
  }
  std::vector<std::string_view> pieces{normalized};
  std::vector<std::string_view> next;
  std::deque<std::string> owned;  // strings that steps had to build; deque keeps them in place
  std::vector<Regex::Span> spans;
  for (const PreTokenizerStep& step : pre_tokenizers_) {
    next.clear();
    for (std::string_view piece : pieces) {
      switch (step.kind) {
        case PreTokenizerStep::Kind::kSplit: {
          spans.clear();
          BLOCKRANK_RETURN_IF_ERROR(step.regex->find_all(piece, &spans));
          size_t pos = 0;
          for (const auto& [begin, end] : spans) {
            if (!step.invert) {
              if (begin > pos) {
                next.push_back(piece.substr(pos, begin - pos));
              }
            }
            if (step.invert || !step.removed) {
              next.push_back(piece.substr(begin, end - begin));
            }
            pos = end;
          }
          if (!step.invert && pos < piece.size()) {
            next.push_back(piece.substr(pos));
          }
          break;
        }
        case PreTokenizerStep::Kind::kByteLevel: {
          // The mapping to the byte alphabet itself happens inside the model, which works on raw
          // bytes; here only the optional prefix space and GPT-2 regex split are applied.
          // transformers.js adds the prefix space to every piece, not only the first.
          std::string_view text = piece;
          if (step.add_prefix_space && (text.empty() || text[0] != ' ')) {
            owned.push_back(" " + std::string(text));
            text = owned.back();
          }
          if (step.regex) {
            spans.clear();
            BLOCKRANK_RETURN_IF_ERROR(step.regex->find_all(text, &spans));
            for (const auto& [begin, end] : spans) {
              next.push_back(text.substr(begin, end - begin));
            }
          } else {
            next.push_back(text);
          }
          break;
        }
        case PreTokenizerStep::Kind::kMetaspace: {
          std::string replaced;
          replace_all(piece, " ", step.replacement, &replaced);
          const bool prepend = step.prepend == PrependScheme::kAlways ||
                               (step.prepend == PrependScheme::kFirst && section_index == 0);
          if (prepend && !starts_with(replaced, step.replacement)) {
            replaced.insert(0, step.replacement);
          }
          owned.push_back(std::move(replaced));
          std::string_view text = owned.back();
          if (!step.split) {
            next.push_back(text);
            break;
          }
          // Rust's Metaspace(split=true): cut before each replacement character, which starts
          // the next word. transformers.js never splits here; the reference vocabularies do not
          // use Metaspace, so this follows the Rust crate.
          size_t begin = 0;
          for (size_t hit = text.find(step.replacement, 1); hit != std::string_view::npos;
               hit = text.find(step.replacement, hit + 1)) {
            if (hit > begin) {
              next.push_back(text.substr(begin, hit - begin));
              begin = hit;
            }
          }
          if (begin < text.size()) {
            next.push_back(text.substr(begin));
          }
          break;
        }
      }
    }
    pieces.swap(next);
  }
  for (std::string_view piece : pieces) {
    BLOCKRANK_RETURN_IF_ERROR(model_->encode_word(piece, ids));
  }
  return Status::ok();
}

Status HfTokenizer::encode(std::string_view text, std::vector<int32_t>* ids) const {
  ids->clear();
  const size_t bad = find_invalid_utf8(text);
  if (bad != std::string::npos) {
    return Status::invalid_argument("text is not valid UTF-8 at byte offset " +
                                    std::to_string(bad));
  }
  struct Section {
    std::string_view text;
    int32_t added = -1;  // index into added_tokens_
  };
  std::vector<Section> sections;
  size_t start = 0;
  if (!added_matcher_.empty()) {
    size_t pos = 0;
    while (pos < text.size()) {
      auto [token, len] = added_matcher_.longest_at(text, pos);
      if (token >= 0 && added_tokens_[static_cast<size_t>(token)].single_word) {
        // Rust semantics (transformers.js ignores single_word): the match must not touch a word
        // character on either side.
        bool left_ok = true;
        if (pos > 0) {
          size_t before = pos - 1;
          while (before > 0 && (static_cast<unsigned char>(text[before]) & 0xC0) == 0x80) {
            --before;
          }
          left_ok = !is_word_char(utf8_next(text, &before));
        }
        size_t after = pos + len;
        const bool right_ok = after == text.size() || !is_word_char(utf8_next(text, &after));
        if (!left_ok || !right_ok) {
          token = -1;
        }
      }
      if (token < 0) {
        ++pos;
        continue;
      }
      if (pos > start) {
        sections.push_back(Section{text.substr(start, pos - start), -1});
      }
      sections.push_back(Section{text.substr(pos, len), token});
      pos += len;
      start = pos;
    }
  }
  if (start < text.size()) {
    sections.push_back(Section{text.substr(start), -1});
  }
  // lstrip/rstrip remove the white space next to the token (JavaScript's trim set).
  for (size_t i = 0; i < sections.size(); ++i) {
    if (sections[i].added < 0) {
      continue;
    }
    const AddedToken& token = added_tokens_[static_cast<size_t>(sections[i].added)];
    if (token.lstrip && i > 0 && sections[i - 1].added < 0) {
      sections[i - 1].text = js_trim_end(sections[i - 1].text);
    }
    if (token.rstrip && i + 1 < sections.size() && sections[i + 1].added < 0) {
      sections[i + 1].text = js_trim_start(sections[i + 1].text);
    }
  }
  for (size_t i = 0; i < sections.size(); ++i) {
    if (sections[i].added >= 0) {
      ids->push_back(added_tokens_[static_cast<size_t>(sections[i].added)].id);
    } else if (!sections[i].text.empty()) {
      BLOCKRANK_RETURN_IF_ERROR(encode_section(sections[i].text, i, ids));
    }
  }
  return Status::ok();
}

Status HfTokenizer::decode(const std::vector<int32_t>& ids, std::string* text) const {
  text->clear();
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  std::vector<bool> added;
  added.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size() || id_to_token_[static_cast<size_t>(id)].empty()) {
      return Status::invalid_argument("token id " + std::to_string(id) +
                                      " is not in the vocabulary (size " +
                                      std::to_string(vocab_size()) + ")");
    }
    tokens.push_back(id_to_token_[static_cast<size_t>(id)]);
    added.push_back(is_added_[static_cast<size_t>(id)]);
  }
  if (decoders_.empty()) {
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) {
        text->push_back(' ');
      }
      *text += tokens[i];
    }
    return Status::ok();
  }
  std::vector<std::string> next;
  std::string buffer;
  for (const DecoderStep& step : decoders_) {
    next.clear();
    switch (step.kind) {
      case DecoderStep::Kind::kByteLevel: {
        // Runs of ordinary tokens are mapped back to bytes together (a character may span
        // tokens); added tokens pass through as text, as transformers.js does.
        std::string bytes;
        std::string piece;
        bool open = false;
        for (size_t i = 0; i < tokens.size(); ++i) {
          const bool is_added = i < added.size() && added[i];
          if (is_added) {
            if (open) {
              next.push_back(utf8_lossy(bytes));
              bytes.clear();
              open = false;
            }
            next.push_back(tokens[i]);
            continue;
          }
          if (byte_level_to_bytes(tokens[i], &piece)) {
            bytes += piece;
          } else {
            bytes += tokens[i];  // characters outside the alphabet keep their UTF-8 bytes
          }
          open = true;
        }
        if (open) {
          next.push_back(utf8_lossy(bytes));
        }
        added.clear();  // token boundaries no longer line up with ids
        break;
      }
      case DecoderStep::Kind::kReplace:
        for (const std::string& token : tokens) {
          if (step.regex) {
            BLOCKRANK_RETURN_IF_ERROR(replace_regex(*step.regex, token, step.content, &buffer));
          } else {
            replace_all(token, step.pattern, step.content, &buffer);
          }
          next.push_back(buffer);
        }
        break;
      case DecoderStep::Kind::kByteFallback: {
        std::string bytes;
        auto hex = [](char c) -> int {
          if (c >= '0' && c <= '9') {
            return c - '0';
          }
          if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            return (c | 0x20) - 'a' + 10;
          }
          return -1;
        };
        for (const std::string& token : tokens) {
          const bool is_byte = token.size() == 6 && starts_with(token, "<0x") && token[5] == '>' &&
                               hex(token[3]) >= 0 && hex(token[4]) >= 0;
          if (is_byte) {
            bytes.push_back(static_cast<char>(hex(token[3]) * 16 + hex(token[4])));
            continue;
          }
          if (!bytes.empty()) {
            next.push_back(utf8_lossy(bytes));
            bytes.clear();
          }
          next.push_back(token);
        }
        if (!bytes.empty()) {
          next.push_back(utf8_lossy(bytes));
        }
        added.clear();
        break;
      }
      case DecoderStep::Kind::kFuse: {
        std::string joined;
        for (const std::string& token : tokens) {
          joined += token;
        }
        next.push_back(std::move(joined));
        added.clear();
        break;
      }
      case DecoderStep::Kind::kStrip:
        for (const std::string& token : tokens) {
          std::string_view view = token;
          for (size_t k = 0; k < step.start && starts_with(view, step.content); ++k) {
            view.remove_prefix(step.content.size());
          }
          for (size_t k = 0; k < step.stop && ends_with(view, step.content); ++k) {
            view.remove_suffix(step.content.size());
          }
          next.emplace_back(view);
        }
        break;
      case DecoderStep::Kind::kMetaspace:
        for (size_t i = 0; i < tokens.size(); ++i) {
          replace_all(tokens[i], step.replacement, " ", &buffer);
          if (step.prepend && i == 0 && starts_with(buffer, " ")) {
            buffer.erase(0, 1);
          }
          next.push_back(buffer);
        }
        break;
    }
    tokens.swap(next);
  }
  for (const std::string& token : tokens) {
    *text += token;
  }
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

class HfTokenizerBuilder {
 public:
  HfTokenizerBuilder(std::string source, std::string digest)
      : source_(std::move(source)), digest_(std::move(digest)) {}

  Status build(const Json& root, const Json* config, std::unique_ptr<Tokenizer>* out);

 private:
  Status error(const std::string& field, const std::string& what) const {
    return Status::invalid_argument(source_ + ": " + field + ": " + what);
  }
  Status get_bool(
      const Json& obj, const char* key, bool fallback, const std::string& where, bool* out) const {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) {
      *out = fallback;
      return Status::ok();
    }
    if (!it->is_boolean()) {
      return error(where + "." + key, "expected true or false");
    }
    *out = it->get<bool>();
    return Status::ok();
  }
  Status get_string(const Json& obj,
                    const char* key,
                    const std::string& where,
                    std::string* out) const {
    auto it = obj.find(key);
    if (it == obj.end() || !it->is_string()) {
      return error(where + "." + key, "missing or not a string");
    }
    *out = it->get<std::string>();
    return Status::ok();
  }
  Status get_type(const Json& obj, const std::string& where, std::string* type) const {
    if (!obj.is_object()) {
      return error(where, "expected an object");
    }
    return get_string(obj, "type", where, type);
  }
  // A {"String": s} or {"Regex": r} pattern: a literal or a compiled regex.
  Status get_pattern(const Json& obj,
                     const std::string& where,
                     std::string* literal,
                     std::unique_ptr<Regex>* regex) const {
    auto it = obj.find("pattern");
    if (it == obj.end() || !it->is_object()) {
      return error(where + ".pattern", "missing or not an object");
    }
    if (it->contains("String") && (*it)["String"].is_string()) {
      *literal = (*it)["String"].get<std::string>();
      return Status::ok();
    }
    if (it->contains("Regex") && (*it)["Regex"].is_string()) {
      Status s = Regex::compile((*it)["Regex"].get<std::string>(), regex);
      return s.is_ok() ? s : s.with_context(source_ + ": " + where + ".pattern");
    }
    return error(where + ".pattern", "expected {\"String\": ...} or {\"Regex\": ...}");
  }

  Status add_normalizer(const Json& obj, const std::string& where, HfTokenizer* tok);
  Status add_pre_tokenizer(const Json& obj, const std::string& where, HfTokenizer* tok);
  Status add_decoder(const Json& obj, const std::string& where, HfTokenizer* tok);
  Status read_prepend_scheme(const Json& obj,
                             const std::string& where,
                             PrependScheme* scheme) const;

  std::string source_;
  std::string digest_;
};

Status HfTokenizerBuilder::add_normalizer(const Json& obj,
                                          const std::string& where,
                                          HfTokenizer* tok) {
  if (obj.is_null()) {
    return Status::ok();
  }
  std::string type;
  BLOCKRANK_RETURN_IF_ERROR(get_type(obj, where, &type));
  NormalizerStep step;
  if (type == "Sequence") {
    auto it = obj.find("normalizers");
    if (it == obj.end() || !it->is_array()) {
      return error(where + ".normalizers", "missing or not an array");
    }
    for (size_t i = 0; i < it->size(); ++i) {
      BLOCKRANK_RETURN_IF_ERROR(
          add_normalizer((*it)[i], where + ".normalizers[" + std::to_string(i) + "]", tok));
    }
    return Status::ok();
  } else if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    step.kind = NormalizerStep::Kind::kUnicode;
    step.form = type == "NFC"    ? NormalForm::kNfc
                : type == "NFD"  ? NormalForm::kNfd
                : type == "NFKC" ? NormalForm::kNfkc
                                 : NormalForm::kNfkd;
  } else if (type == "Prepend") {
    step.kind = NormalizerStep::Kind::kPrepend;
    BLOCKRANK_RETURN_IF_ERROR(get_string(obj, "prepend", where, &step.text));
  } else if (type == "Replace") {
    step.kind = NormalizerStep::Kind::kReplace;
    BLOCKRANK_RETURN_IF_ERROR(get_pattern(obj, where, &step.text, &step.regex));
    BLOCKRANK_RETURN_IF_ERROR(get_string(obj, "content", where, &step.content));
  } else {
    return Status::unimplemented(source_ + ": " + where + ": normalizer type \"" + type +
                                 "\" is not supported");
  }
  tok->normalizers_.push_back(std::move(step));
  return Status::ok();
}

Status HfTokenizerBuilder::read_prepend_scheme(const Json& obj,
                                               const std::string& where,
                                               PrependScheme* scheme) const {
  // Older files carry add_prefix_space (bool); newer ones prepend_scheme. When both are present
  // add_prefix_space=false wins, as in the Rust crate's deserializer.
  bool add_prefix_space = true;
  BLOCKRANK_RETURN_IF_ERROR(get_bool(obj, "add_prefix_space", true, where, &add_prefix_space));
  *scheme = PrependScheme::kAlways;
  auto it = obj.find("prepend_scheme");
  if (it != obj.end() && it->is_string()) {
    const std::string value = it->get<std::string>();
    if (value == "always") {
      *scheme = PrependScheme::kAlways;
    } else if (value == "first") {
      *scheme = PrependScheme::kFirst;
    } else if (value == "never") {
      *scheme = PrependScheme::kNever;
    } else {
      return error(where + ".prepend_scheme", "expected always, first or never");
    }
  }
  if (!add_prefix_space) {
    *scheme = PrependScheme::kNever;
  }
  return Status::ok();
}

Status HfTokenizerBuilder::add_pre_tokenizer(const Json& obj,
                                             const std::string& where,
                                             HfTokenizer* tok) {
  if (obj.is_null()) {
    return Status::ok();
  }
  std::string type;
  BLOCKRANK_RETURN_IF_ERROR(get_type(obj, where, &type));
  PreTokenizerStep step;
  if (type == "Sequence") {
    auto it = obj.find("pretokenizers");
    if (it == obj.end() || !it->is_array()) {
      return error(where + ".pretokenizers", "missing or not an array");
    }
    for (size_t i = 0; i < it->size(); ++i) {
      BLOCKRANK_RETURN_IF_ERROR(
          add_pre_tokenizer((*it)[i], where + ".pretokenizers[" + std::to_string(i) + "]", tok));
    }
    return Status::ok();
  }
  if (!tok->pre_tokenizers_.empty() &&
      tok->pre_tokenizers_.back().kind == PreTokenizerStep::Kind::kByteLevel) {
    // The model consumes raw bytes, so byte-level mapping must be the last step.
    return Status::unimplemented(source_ + ": " + where + ": a pre-tokenizer after ByteLevel " +
                                 "is not supported");
  }
  if (type == "Split") {
    step.kind = PreTokenizerStep::Kind::kSplit;
    std::string literal;
    BLOCKRANK_RETURN_IF_ERROR(get_pattern(obj, where, &literal, &step.regex));
    if (!step.regex) {
      BLOCKRANK_RETURN_IF_ERROR(Regex::compile_literal(literal, &step.regex));
    }
    std::string behavior;
    BLOCKRANK_RETURN_IF_ERROR(get_string(obj, "behavior", where, &behavior));
    if (behavior == "Isolated") {
      step.removed = false;
    } else if (behavior == "Removed") {
      // Rust semantics: matches are dropped. (transformers.js uses String.split, which would also
      // keep capture groups of the pattern.)
      step.removed = true;
    } else {
      return Status::unimplemented(source_ + ": " + where + ": Split behavior \"" + behavior +
                                   "\" is not supported (only Isolated and Removed)");
    }
    BLOCKRANK_RETURN_IF_ERROR(get_bool(obj, "invert", false, where, &step.invert));
  } else if (type == "ByteLevel") {
    step.kind = PreTokenizerStep::Kind::kByteLevel;
    BLOCKRANK_RETURN_IF_ERROR(
        get_bool(obj, "add_prefix_space", false, where, &step.add_prefix_space));
    bool use_regex = true;
    BLOCKRANK_RETURN_IF_ERROR(get_bool(obj, "use_regex", true, where, &use_regex));
    if (use_regex) {
      // GPT-2's pattern, exactly as transformers.js spells it.
      BLOCKRANK_RETURN_IF_ERROR(Regex::compile(
          "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
          &step.regex));
    }
  } else if (type == "Metaspace") {
    step.kind = PreTokenizerStep::Kind::kMetaspace;
    BLOCKRANK_RETURN_IF_ERROR(get_string(obj, "replacement", where, &step.replacement));
    if (step.replacement.empty()) {
      return error(where + ".replacement", "must not be empty");
    }
    BLOCKRANK_RETURN_IF_ERROR(read_prepend_scheme(obj, where, &step.prepend));
    BLOCKRANK_RETURN_IF_ERROR(get_bool(obj, "split", true, where, &step.split));
  } else {
    return Status::unimplemented(source_ + ": " + where + ": pre-tokenizer type \"" + type +
                                 "\" is not supported");
  }
  tok->pre_tokenizers_.push_back(std::move(step));
  return Status::ok();
}

Status HfTokenizerBuilder::add_decoder(const Json& obj,
                                       const std::string& where,
                                       HfTokenizer* tok) {
  if (obj.is_null()) {
    return Status::ok();
  }
  std::string type;
  BLOCKRANK_RETURN_IF_ERROR(get_type(obj, where, &type));
  DecoderStep step;
  if (type == "Sequence") {
    auto it = obj.find("decoders");
    if (it == obj.end() || !it->is_array()) {
      return error(where + ".decoders", "missing or not an array");
    }
    for (size_t i = 0; i < it->size(); ++i) {
      BLOCKRANK_RETURN_IF_ERROR(
          add_decoder((*it)[i], where + ".decoders[" + std::to_string(i) + "]", tok));
    }
    return Status::ok();
  } else if (type == "ByteLevel") {
    step.kind = DecoderStep::Kind::kByteLevel;
  } else if (type == "Replace") {
    step.kind = DecoderStep::Kind::kReplace;
    BLOCKRANK_RETURN_IF_ERROR(get_pattern(obj, where, &step.pattern, &step.regex));
    BLOCKRANK_RETURN_IF_ERROR(get_string(obj, "content", where, &step.content));
  } else if (type == "ByteFallback") {
    step.kind = DecoderStep::Kind::kByteFallback;
  } else if (type == "Fuse") {
    step.kind = DecoderStep::Kind::kFuse;
  } else if (type == "Strip") {
    step.kind = DecoderStep::Kind::kStrip;
    BLOCKRANK_RETURN_IF_ERROR(get_string(obj, "content", where, &step.content));
    for (const char* key : {"start", "stop"}) {
      auto it = obj.find(key);
      if (it == obj.end() || !it->is_number_unsigned()) {
        return error(where + "." + key, "missing or not a non-negative integer");
      }
      (key[2] == 'a' ? step.start : step.stop) = it->get<size_t>();
    }
  } else if (type == "Metaspace") {
    step.kind = DecoderStep::Kind::kMetaspace;
    BLOCKRANK_RETURN_IF_ERROR(get_string(obj, "replacement", where, &step.replacement));
    PrependScheme scheme = PrependScheme::kAlways;
    BLOCKRANK_RETURN_IF_ERROR(read_prepend_scheme(obj, where, &scheme));
    step.prepend = scheme != PrependScheme::kNever;
  } else {
    return Status::unimplemented(source_ + ": " + where + ": decoder type \"" + type +
                                 "\" is not supported");
  }
  tok->decoders_.push_back(std::move(step));
  return Status::ok();
}

std::optional<std::string> config_token_name(const Json* config, const char* key) {
  if (config == nullptr || !config->is_object()) {
    return std::nullopt;
  }
  auto it = config->find(key);
  if (it == config->end()) {
    return std::nullopt;
  }
  if (it->is_string()) {
    return it->get<std::string>();
  }
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    return (*it)["content"].get<std::string>();
  }
  return std::nullopt;
}

Status HfTokenizerBuilder::build(const Json& root,
                                 const Json* config,
                                 std::unique_ptr<Tokenizer>* out) {
  if (!root.is_object()) {
    return error("(root)", "expected a JSON object");
  }
  auto tok = std::make_unique<HfTokenizer>();
  tok->digest_ = digest_;

  // --- model -----------------------------------------------------------------------------------
  auto model_it = root.find("model");
  if (model_it == root.end() || !model_it->is_object()) {
    return error("model", "missing or not an object");
  }
  const Json& model = *model_it;
  std::string type = "BPE";
  if (model.contains("type")) {
    BLOCKRANK_RETURN_IF_ERROR(get_string(model, "type", "model", &type));
  } else if (!model.contains("merges")) {
    return error("model.type", "missing, and the model has no merges (not BPE)");
  }
  if (type != "BPE") {
    return Status::unimplemented(source_ + ": model.type \"" + type +
                                 "\" is not supported (only BPE)");
  }
  auto dropout = model.find("dropout");
  if (dropout != model.end() && !dropout->is_null() &&
      !(dropout->is_number() && dropout->get<double>() == 0.0)) {
    return Status::unimplemented(source_ + ": model.dropout: BPE dropout is not supported");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = model.find(key);
    if (it != model.end() && !it->is_null() &&
        !(it->is_string() && it->get<std::string>().empty())) {
      return Status::unimplemented(source_ + ": model." + key + " is not supported");
    }
  }
  BpeOptions options;
  BLOCKRANK_RETURN_IF_ERROR(
      get_bool(model, "byte_fallback", false, "model", &options.byte_fallback));
  BLOCKRANK_RETURN_IF_ERROR(
      get_bool(model, "ignore_merges", false, "model", &options.ignore_merges));
  BLOCKRANK_RETURN_IF_ERROR(get_bool(model, "fuse_unk", false, "model", &options.fuse_unk));

  auto vocab_it = model.find("vocab");
  if (vocab_it == model.end() || !vocab_it->is_object()) {
    return error("model.vocab", "missing or not an object of token -> id");
  }
  std::vector<std::string> vocab;
  for (auto it = vocab_it->begin(); it != vocab_it->end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<int64_t>() >= (int64_t{1} << 30)) {
      return error("model.vocab[\"" + it.key() + "\"]", "id must be an integer in [0, 2^30)");
    }
    if (it.key().empty()) {
      return error("model.vocab", "empty token string");
    }
    const auto id = static_cast<size_t>(it.value().get<int64_t>());
    if (id >= vocab.size()) {
      vocab.resize(id + 1);
    }
    if (!vocab[id].empty()) {
      return error("model.vocab", "id " + std::to_string(id) + " is used by both \"" + vocab[id] +
                                      "\" and \"" + it.key() + "\"");
    }
    vocab[id] = it.key();
  }

  auto merges_it = model.find("merges");
  if (merges_it == model.end() || !merges_it->is_array()) {
    return error("model.merges", "missing or not an array");
  }
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(merges_it->size());
  for (size_t i = 0; i < merges_it->size(); ++i) {
    const Json& m = (*merges_it)[i];
    // Two spellings: "a b" (tokenizers < 0.20) and ["a", "b"] (which allows spaces in tokens).
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || space == 0 || space + 1 >= s.size() ||
          s.find(' ', space + 1) != std::string::npos) {
        return error("model.merges[" + std::to_string(i) + "]",
                     "expected \"left right\", got \"" + s + "\"");
      }
      merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      return error("model.merges[" + std::to_string(i) + "]",
                   "expected \"left right\" or [\"left\", \"right\"]");
    }
  }

  // --- added tokens ------------------------------------------------------------------------------
  auto added_it = root.find("added_tokens");
  if (added_it != root.end() && !added_it->is_null()) {
    if (!added_it->is_array()) {
      return error("added_tokens", "not an array");
    }
    for (size_t i = 0; i < added_it->size(); ++i) {
      const Json& a = (*added_it)[i];
      const std::string where = "added_tokens[" + std::to_string(i) + "]";
      if (!a.is_object()) {
        return error(where, "expected an object");
      }
      AddedToken token;
      BLOCKRANK_RETURN_IF_ERROR(get_string(a, "content", where, &token.content));
      if (token.content.empty()) {
        return error(where + ".content", "must not be empty");
      }
      if (find_invalid_utf8(token.content) != std::string::npos) {
        return error(where + ".content", "is not valid UTF-8");
      }
      auto id = a.find("id");
      if (id == a.end() || !id->is_number_integer() || id->get<int64_t>() < 0 ||
          id->get<int64_t>() >= (int64_t{1} << 30)) {
        return error(where + ".id", "missing or not an integer in [0, 2^30)");
      }
      token.id = static_cast<int32_t>(id->get<int64_t>());
      BLOCKRANK_RETURN_IF_ERROR(get_bool(a, "single_word", false, where, &token.single_word));
      BLOCKRANK_RETURN_IF_ERROR(get_bool(a, "lstrip", false, where, &token.lstrip));
      BLOCKRANK_RETURN_IF_ERROR(get_bool(a, "rstrip", false, where, &token.rstrip));
      // `normalized` is recorded but, as in transformers.js, every added token is matched on the
      // raw text. (The Rust crate matches normalized=true tokens after normalization; none of the
      // supported vocabularies has such a token.)
      BLOCKRANK_RETURN_IF_ERROR(get_bool(a, "normalized", false, where, &token.normalized));
      BLOCKRANK_RETURN_IF_ERROR(get_bool(a, "special", false, where, &token.special));
      tok->added_tokens_.push_back(std::move(token));
    }
  }

  // --- the rest of the pipeline ----------------------------------------------------------------
  if (root.contains("normalizer")) {
    BLOCKRANK_RETURN_IF_ERROR(add_normalizer(root["normalizer"], "normalizer", tok.get()));
  }
  if (root.contains("pre_tokenizer")) {
    BLOCKRANK_RETURN_IF_ERROR(add_pre_tokenizer(root["pre_tokenizer"], "pre_tokenizer", tok.get()));
  }
  if (root.contains("decoder")) {
    BLOCKRANK_RETURN_IF_ERROR(add_decoder(root["decoder"], "decoder", tok.get()));
  }
  for (const PreTokenizerStep& step : tok->pre_tokenizers_) {
    options.byte_level = options.byte_level || step.kind == PreTokenizerStep::Kind::kByteLevel;
  }

  // --- id tables -------------------------------------------------------------------------------
  tok->id_to_token_ = vocab;
  for (const AddedToken& token : tok->added_tokens_) {
    if (static_cast<size_t>(token.id) >= tok->id_to_token_.size()) {
      tok->id_to_token_.resize(static_cast<size_t>(token.id) + 1);
    }
    tok->id_to_token_[static_cast<size_t>(token.id)] = token.content;
  }
  tok->is_added_.assign(tok->id_to_token_.size(), false);
  for (const AddedToken& token : tok->added_tokens_) {
    tok->is_added_[static_cast<size_t>(token.id)] = true;
  }
  for (size_t id = 0; id < tok->id_to_token_.size(); ++id) {
    if (!tok->id_to_token_[id].empty()) {
      tok->token_to_id_[tok->id_to_token_[id]] = static_cast<int32_t>(id);
    }
  }
  for (const AddedToken& token : tok->added_tokens_) {
    tok->token_to_id_[tok->id_to_token_[static_cast<size_t>(token.id)]] = token.id;
  }

  auto unk_it = model.find("unk_token");
  if (unk_it != model.end() && unk_it->is_string()) {
    const std::string unk = unk_it->get<std::string>();
    auto id = tok->token_to_id(unk);
    if (!id.has_value()) {
      return error("model.unk_token", "\"" + unk + "\" is not in the vocabulary");
    }
    options.unk_id = id;
  }
  std::vector<std::pair<std::string, int32_t>> added_pairs;
  for (const AddedToken& token : tok->added_tokens_) {
    added_pairs.emplace_back(token.content, token.id);
  }
  BLOCKRANK_RETURN_IF_ERROR(
      BpeModel::build(options, std::move(vocab), added_pairs, merges, &tok->model_)
          .with_context(source_));
  tok->added_matcher_.build(tok->added_tokens_);

  // --- special ids: tokenizer_config.json names them; else the usual names of each family ----
  auto resolve = [&](const char* key,
                     std::initializer_list<const char*> fallbacks) -> std::optional<int32_t> {
    if (auto name = config_token_name(config, key)) {
      return tok->token_to_id(*name);
    }
    if (config != nullptr && config->contains(key)) {
      return std::nullopt;  // explicitly null in the config
    }
    for (const char* name : fallbacks) {
      if (auto id = tok->token_to_id(name)) {
        return id;
      }
    }
    return std::nullopt;
  };
  tok->bos_id_ = resolve("bos_token", {"<s>", "<|begin_of_text|>"});
  tok->eos_id_ = resolve("eos_token", {"</s>", "<|end_of_text|>", "<|endoftext|>"});
  tok->pad_id_ = resolve("pad_token", {"<pad>"});
  tok->unk_id_ = options.unk_id.has_value() ? options.unk_id : resolve("unk_token", {});
  *out = std::move(tok);
  return Status::ok();
}

}  // namespace

Status build_hf_tokenizer(std::string_view content,
                          std::string_view config_content,
                          const std::string& source,
                          std::unique_ptr<Tokenizer>* out) {
  try {
    Json root = Json::parse(content.begin(), content.end());
    Json config;
    if (!config_content.empty()) {
      try {
        config = Json::parse(config_content.begin(), config_content.end());
      } catch (const Json::exception& e) {
        return Status::invalid_argument(source +
                                        ": tokenizer_config.json beside it is not valid "
                                        "JSON: " +
                                        e.what());
      }
    }
    HfTokenizerBuilder builder(source, sha256_hex(content));
    std::unique_ptr<Tokenizer> tok;
    BLOCKRANK_RETURN_IF_ERROR(
        builder.build(root, config_content.empty() ? nullptr : &config, &tok));
    *out = std::move(tok);
    return Status::ok();
  } catch (const Json::parse_error& e) {
    return Status::invalid_argument(source + ": not valid JSON: " + e.what());
  } catch (const Json::exception& e) {
    return Status::invalid_argument(source + ": unexpected JSON structure: " + e.what());
  } catch (const std::bad_alloc&) {
    return Status::resource_exhausted(source + ": out of memory while loading the tokenizer");
  }
}

}  // namespace blockrank::internal
