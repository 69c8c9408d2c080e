// SPDX-License-Identifier: Apache-2.0
// The readers are line-based state machines over LineReader so that gzip and line numbers come for
// free and a multi-GB file is never held in memory.
#include "indexer/corpus_reader.h"

#include <cctype>
#include <cstring>

#include "plugin/base/strings.h"

#include <nlohmann/json.hpp>

namespace blockrank {

Status parse_corpus_format(const std::string& name, CorpusFormat* out) {
  static const std::pair<const char*, CorpusFormat> kNames[] = {
      {"auto", CorpusFormat::kAuto},   {"beir", CorpusFormat::kBeir},
      {"jsonl", CorpusFormat::kJsonl}, {"tsv", CorpusFormat::kTsv},
      {"trec", CorpusFormat::kTrec},   {"smart", CorpusFormat::kSmart}};
  for (const auto& [n, f] : kNames) {
    if (name == n) {
      *out = f;
      return Status::ok();
    }
  }
  return Status::invalid_argument("unknown corpus format '" + name +
                                  "' (expected auto, beir, jsonl, tsv, trec or smart)");
}

const char* corpus_format_name(CorpusFormat format) {
  switch (format) {
    case CorpusFormat::kAuto:
      return "auto";
    case CorpusFormat::kBeir:
      return "beir";
    case CorpusFormat::kJsonl:
      return "jsonl";
    case CorpusFormat::kTsv:
      return "tsv";
    case CorpusFormat::kTrec:
      return "trec";
    case CorpusFormat::kSmart:
      return "smart";
  }
  return "?";
}

Status detect_corpus_format(const std::string& path, CorpusFormat* out) {
  std::string name = to_lower_ascii(path);
  if (ends_with(name, ".gz")) {
    name.resize(name.size() - 3);
  }
  if (ends_with(name, ".jsonl") || ends_with(name, ".json")) {
    *out = CorpusFormat::kBeir;
    return Status::ok();
  }
  if (ends_with(name, ".tsv")) {
    *out = CorpusFormat::kTsv;
    return Status::ok();
  }
  if (ends_with(name, ".trec") || ends_with(name, ".sgml") || ends_with(name, ".sgm")) {
    *out = CorpusFormat::kTrec;
    return Status::ok();
  }
  // Fall back to the content of the first non-empty line.
  std::unique_ptr<LineReader> lines;
  BLOCKRANK_RETURN_IF_ERROR(LineReader::open(path, &lines));
  std::string line;
  bool eof = false;
  while (true) {
    BLOCKRANK_RETURN_IF_ERROR(lines->next(&line, &eof));
    if (eof) {
      return Status::invalid_argument(path + ": empty file, cannot detect its format");
    }
    const std::string_view t = trim(line);
    if (t.empty()) {
      continue;
    }
    if (t.front() == '{') {
      *out = CorpusFormat::kBeir;
    } else if (starts_with(t, "<DOC") || starts_with(t, "<doc")) {
      *out = CorpusFormat::kTrec;
    } else if (starts_with(t, ".I ") || t == ".I") {
      *out = CorpusFormat::kSmart;
    } else if (t.find('\t') != std::string_view::npos) {
      *out = CorpusFormat::kTsv;
    } else {
      return Status::invalid_argument(lines->location() +
                                      ": cannot detect the corpus format; pass --format");
    }
    return Status::ok();
  }
}

namespace {

Status check_utf8(const std::string& where, const char* field, const std::string& value) {
  const size_t bad = find_invalid_utf8(value);
  if (bad != std::string::npos) {
    return Status::invalid_argument(where + ": field '" + field + "' is not valid UTF-8 (byte " +
                                    std::to_string(bad) + ")");
  }
  return Status::ok();
}

Status check_document(CorpusDocument* doc) {
  if (doc->id.empty()) {
    return Status::invalid_argument(doc->location + ": empty document id");
  }
  BLOCKRANK_RETURN_IF_ERROR(check_utf8(doc->location, "id", doc->id));
  BLOCKRANK_RETURN_IF_ERROR(check_utf8(doc->location, "title", doc->title));
  BLOCKRANK_RETURN_IF_ERROR(check_utf8(doc->location, "text", doc->text));
  return Status::ok();
}

// ---- JSONL (BEIR and generic)
// ---------------------------------------------------------------------

class JsonlReader : public CorpusReader {
 public:
  JsonlReader(std::unique_ptr<LineReader> lines, CorpusFormat format, CorpusReaderOptions options)
      : CorpusReader(std::move(lines)), format_(format), options_(std::move(options)) {
    if (options_.id_field.empty()) {
      options_.id_field = format == CorpusFormat::kBeir ? "_id" : "id";
    }
  }

  CorpusFormat format() const override { return format_; }

  Status next(CorpusDocument* doc, bool* eof) override {
    std::string line;
    BLOCKRANK_RETURN_IF_ERROR(lines_->next_nonblank(&line, eof));
    if (*eof) {
      return Status::ok();
    }
    doc->location = lines_->location();
    nlohmann::json obj;
    try {
      obj = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      return Status::invalid_argument(doc->location + ": invalid JSON: " + e.what());
    }
    if (!obj.is_object()) {
      return Status::invalid_argument(doc->location + ": expected a JSON object per line");
    }
    const auto id_it = obj.find(options_.id_field);
    if (id_it == obj.end() || id_it->is_null()) {
      return Status::invalid_argument(doc->location + ": field '" + options_.id_field +
                                      "' missing (expected the document id, a string or number)");
    }
    if (id_it->is_string()) {
      doc->id = id_it->get<std::string>();
    } else if (id_it->is_number_integer()) {
      doc->id = std::to_string(id_it->get<long long>());
    } else {
      return Status::invalid_argument(doc->location + ": field '" + options_.id_field +
                                      "' must be a string or an integer, got " +
                                      id_it->type_name());
    }
    BLOCKRANK_RETURN_IF_ERROR(string_field(obj, options_.title_field, doc->location, &doc->title));
    doc->text.clear();
    std::vector<std::string> fields = options_.text_fields;
    if (fields.empty()) {
      fields = {obj.contains("text") || format_ == CorpusFormat::kBeir ? "text" : "contents"};
    }
    bool found = false;
    for (const std::string& f : fields) {
      std::string part;
      if (obj.contains(f)) {
        found = true;
      }
      BLOCKRANK_RETURN_IF_ERROR(string_field(obj, f, doc->location, &part));
      if (!part.empty()) {
        if (!doc->text.empty()) {
          doc->text.push_back(' ');
        }
        doc->text += part;
      }
    }
    if (!found) {
      std::string names;
      for (const std::string& f : fields) {
        names += (names.empty() ? "'" : ", '") + f + "'";
      }
      return Status::invalid_argument(doc->location + ": no text field " + names +
                                      " (use --text-fields to map your fields)");
    }
    return check_document(doc);
  }

 private:
  static Status string_field(const nlohmann::json& obj,
                             const std::string& field,
                             const std::string& where,
                             std::string* out) {
    out->clear();
    if (field.empty()) {
      return Status::ok();
    }
    const auto it = obj.find(field);
    if (it == obj.end() || it->is_null()) {
      return Status::ok();
    }
    if (it->is_string()) {
      *out = it->get<std::string>();
      return Status::ok();
    }
    if (it->is_number()) {
      *out = it->dump();
      return Status::ok();
    }
    return Status::invalid_argument(where + ": field '" + field + "' must be a string, got " +
                                    it->type_name());
  }

  CorpusFormat format_;
  CorpusReaderOptions options_;
};

// ---- TSV
// ------------------------------------------------------------------------------------------

class TsvReader : public CorpusReader {
 public:
  using CorpusReader::CorpusReader;
  CorpusFormat format() const override { return CorpusFormat::kTsv; }

  Status next(CorpusDocument* doc, bool* eof) override {
    std::string line;
    BLOCKRANK_RETURN_IF_ERROR(lines_->next_nonblank(&line, eof));
    if (*eof) {
      return Status::ok();
    }
    doc->location = lines_->location();
    const std::vector<std::string> cols = split(line, '\t');
    if (cols.size() == 2) {
      doc->id = std::string(trim(cols[0]));
      doc->title.clear();
      doc->text = cols[1];
    } else if (cols.size() == 3) {
      doc->id = std::string(trim(cols[0]));
      doc->title = cols[1];
      doc->text = cols[2];
    } else {
      return Status::invalid_argument(doc->location + ": expected 'id<TAB>text' or " +
                                      "'id<TAB>title<TAB>text', found " +
                                      std::to_string(cols.size()) + " tab-separated columns");
    }
    return check_document(doc);
  }
};

// ---- TREC SGML
// ------------------------------------------------------------------------------------

// Returns the content between <tag> and </tag> in `s` (first occurrence), or npos-based failure.
bool extract_tag(const std::string& s, const char* tag, std::string* out) {
  const std::string open = std::string("<") + tag + ">";
  const std::string close = std::string("</") + tag + ">";
  const size_t a = s.find(open);
  if (a == std::string::npos) {
    return false;
  }
  const size_t b = s.find(close, a + open.size());
  if (b == std::string::npos) {
    return false;
  }
  *out = s.substr(a + open.size(), b - a - open.size());
  return true;
}

// Removes all <...> tags and decodes the common entities.
std::string strip_markup(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  bool in_tag = false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '<') {
      in_tag = true;
      out.push_back(' ');
    } else if (c == '>' && in_tag) {
      in_tag = false;
    } else if (!in_tag) {
      if (c == '&') {
        static const std::pair<const char*, char> kEntities[] = {
            {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
        bool done = false;
        for (const auto& [ent, ch] : kEntities) {
          if (s.compare(i, std::strlen(ent), ent) == 0) {
            out.push_back(ch);
            i += std::strlen(ent) - 1;
            done = true;
            break;
          }
        }
        if (!done) {
          out.push_back(c);
        }
      } else {
        out.push_back(c);
      }
    }
  }
  return collapse_whitespace(out);
}

class TrecReader : public CorpusReader {
 public:
  using CorpusReader::CorpusReader;
  CorpusFormat format() const override { return CorpusFormat::kTrec; }

  Status next(CorpusDocument* doc, bool* eof) override {
    std::string line;
    // Find the next <DOC>.
    while (true) {
      BLOCKRANK_RETURN_IF_ERROR(lines_->next(&line, eof));
      if (*eof) {
        return Status::ok();
      }
      const std::string_view t = trim(line);
      if (t.empty()) {
        continue;
      }
      if (starts_with(t, "<DOC>") || starts_with(t, "<DOC ")) {
        break;
      }
      return Status::invalid_argument(lines_->location() + ": expected <DOC>, found '" +
                                      std::string(t.substr(0, 40)) + "'");
    }
    doc->location = lines_->location();
    std::string body;
    std::string_view after = trim(line);
    after.remove_prefix(after.find('>') + 1);
    bool closed = false;
    const size_t same_line_close = after.find("</DOC>");
    if (same_line_close != std::string_view::npos) {
      body.append(after.substr(0, same_line_close));
      closed = true;
    } else {
      body.append(after);
      body.push_back('\n');
    }
    while (!closed) {
      bool end = false;
      BLOCKRANK_RETURN_IF_ERROR(lines_->next(&line, &end));
      if (end) {
        return Status::invalid_argument(doc->location + ": <DOC> is never closed by </DOC>");
      }
      const size_t close = line.find("</DOC>");
      if (close != std::string::npos) {
        body.append(line, 0, close);
        closed = true;
      } else if (trim(line) == "<DOC>") {
        return Status::invalid_argument(lines_->location() +
                                        ": <DOC> starts before the previous one (opened at " +
                                        doc->location + ") is closed by </DOC>");
      } else {
        body += line;
        body.push_back('\n');
      }
    }
    std::string docno;
    if (!extract_tag(body, "DOCNO", &docno)) {
      return Status::invalid_argument(doc->location + ": <DOC> without <DOCNO>…</DOCNO>");
    }
    doc->id = std::string(trim(docno));
    doc->title.clear();
    for (const char* tag : {"TITLE", "HEADLINE", "HEAD"}) {
      std::string title;
      if (extract_tag(body, tag, &title)) {
        doc->title = strip_markup(title);
        break;
      }
    }
    // Text: all <TEXT> sections if there are any, else everything but the DOCNO/title markup.
    std::string text;
    size_t pos = 0;
    bool any_text = false;
    while (true) {
      const size_t a = body.find("<TEXT>", pos);
      if (a == std::string::npos) {
        break;
      }
      const size_t b = body.find("</TEXT>", a);
      if (b == std::string::npos) {
        return Status::invalid_argument(doc->location + ": <TEXT> without </TEXT> in document '" +
                                        doc->id + "'");
      }
      text += body.substr(a + 6, b - a - 6);
      text.push_back('\n');
      pos = b + 7;
      any_text = true;
    }
    if (!any_text) {
      text = body;
      for (const char* tag : {"DOCNO", "DOCID", "TITLE", "HEADLINE", "HEAD"}) {
        const std::string open = std::string("<") + tag + ">";
        const std::string close = std::string("</") + tag + ">";
        const size_t a = text.find(open);
        const size_t b = a == std::string::npos ? a : text.find(close, a);
        if (a != std::string::npos && b != std::string::npos) {
          text.erase(a, b + close.size() - a);
        }
      }
    }
    doc->text = strip_markup(text);
    return check_document(doc);
  }
};

// ---- SMART (.I/.T/.A/.B/.W)
// -----------------------------------------------------------------------

class SmartReader : public CorpusReader {
 public:
  using CorpusReader::CorpusReader;
  CorpusFormat format() const override { return CorpusFormat::kSmart; }

  Status next(CorpusDocument* doc, bool* eof) override {
    std::string line;
    if (!have_pending_) {
      while (true) {
        BLOCKRANK_RETURN_IF_ERROR(lines_->next(&line, eof));
        if (*eof) {
          return Status::ok();
        }
        if (trim(line).empty()) {
          continue;
        }
        if (!starts_with(line, ".I")) {
          return Status::invalid_argument(lines_->location() + ": expected '.I <id>', found '" +
                                          std::string(trim(line).substr(0, 40)) + "'");
        }
        pending_ = line;
        pending_location_ = lines_->location();
        break;
      }
    }
    *eof = false;
    have_pending_ = false;
    doc->location = pending_location_;
    doc->id = std::string(trim(std::string_view(pending_).substr(2)));
    doc->title.clear();
    doc->text.clear();
    if (doc->id.empty()) {
      return Status::invalid_argument(doc->location + ": '.I' without a document number");
    }
    char field = 0;
    while (true) {
      bool end = false;
      BLOCKRANK_RETURN_IF_ERROR(lines_->next(&line, &end));
      if (end) {
        break;
      }
      if (starts_with(line, ".I")) {
        pending_ = line;
        pending_location_ = lines_->location();
        have_pending_ = true;
        break;
      }
      if (line.size() >= 2 && line[0] == '.' && std::isupper(static_cast<unsigned char>(line[1])) &&
          trim(std::string_view(line).substr(2)).empty()) {
        field = line[1];
        continue;
      }
      if (field == 'T') {
        doc->title += line;
        doc->title.push_back(' ');
      } else if (field == 'W') {
        doc->text += line;
        doc->text.push_back(' ');
      } else if (field == 0) {
        return Status::invalid_argument(lines_->location() +
                                        ": text before any field marker (.T, .W, ...)");
      }
    }
    doc->title = collapse_whitespace(doc->title);
    doc->text = collapse_whitespace(doc->text);
    return check_document(doc);
  }

 private:
  std::string pending_;
  std::string pending_location_;
  bool have_pending_ = false;
};

}  // namespace

Status CorpusReader::open(const std::string& path,
                          const CorpusReaderOptions& options,
                          std::unique_ptr<CorpusReader>* out) {
  CorpusFormat format = options.format;
  if (format == CorpusFormat::kAuto) {
    BLOCKRANK_RETURN_IF_ERROR(detect_corpus_format(path, &format));
  }
  std::unique_ptr<LineReader> lines;
  BLOCKRANK_RETURN_IF_ERROR(LineReader::open(path, &lines));
  switch (format) {
    case CorpusFormat::kBeir:
    case CorpusFormat::kJsonl:
      out->reset(new JsonlReader(std::move(lines), format, options));
      break;
    case CorpusFormat::kTsv:
      out->reset(new TsvReader(std::move(lines)));
      break;
    case CorpusFormat::kTrec:
      out->reset(new TrecReader(std::move(lines)));
      break;
    case CorpusFormat::kSmart:
      out->reset(new SmartReader(std::move(lines)));
      break;
    case CorpusFormat::kAuto:
      return Status::internal("unresolved corpus format");
  }
  return Status::ok();
}

}  // namespace blockrank
