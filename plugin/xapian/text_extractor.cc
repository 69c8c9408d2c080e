// SPDX-License-Identifier: Apache-2.0
// The candidate-text extractors of the Xapian plugin: document data in the layouts Xapian programs
// commonly store (our JSON, Omega's name=value lines, plain text), or value slots.
#include <cctype>
#include <string>
#include <string_view>

#include "blockrank/xapian_reranker.h"
#include "indexer/xapian_status.h"
#include "plugin/base/strings.h"

#include <nlohmann/json.hpp>

namespace blockrank {

namespace {

// A JSON string field, or a number's text (ids are sometimes numbers); empty otherwise.
std::string json_field(const nlohmann::json& object, const char* name) {
  const auto it = object.find(name);
  if (it == object.end()) {
    return {};
  }
  if (it->is_string()) {
    return it->get<std::string>();
  }
  if (it->is_number()) {
    return it->dump();
  }
  return {};
}

bool read_json(const std::string& data, XapianDocumentText* out) {
  const std::string_view body = trim(data);
  if (body.empty() || body.front() != '{') {
    return false;
  }
  const nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    return false;
  }
  std::string text;
  bool has_text = false;
  for (const char* name : {"text", "body", "contents"}) {
    if (j.contains(name) && j[name].is_string()) {
      text = j[name].get<std::string>();
      has_text = true;
      break;
    }
  }
  std::string title = json_field(j, "title");
  if (!has_text && title.empty()) {
    return false;  // some other application's JSON: let the model read it as text
  }
  out->id = json_field(j, "id");
  if (out->id.empty()) {
    out->id = json_field(j, "_id");
  }
  out->title = std::move(title);
  out->text = std::move(text);
  return true;
}

// Omega (and several Xapian tools) store one "name=value" field per line. Only data where every
// non-empty line is such a field and a text or title field is present is read this way, so plain
// text that happens to contain '=' stays plain text.
bool read_fields(const std::string& data, XapianDocumentText* out) {
  XapianDocumentText fields;
  bool any = false;
  size_t pos = 0;
  while (pos < data.size()) {
    size_t end = data.find('\n', pos);
    if (end == std::string::npos) {
      end = data.size();
    }
    const std::string_view line(data.data() + pos, end - pos);
    pos = end + 1;
    if (trim(line).empty()) {
      continue;
    }
    const size_t eq = line.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      return false;
    }
    const std::string_view name = line.substr(0, eq);
    for (char c : name) {
      if (!(std::islower(static_cast<unsigned char>(c)) ||
            std::isdigit(static_cast<unsigned char>(c)) || c == '_')) {
        return false;
      }
    }
    const std::string value(line.substr(eq + 1));
    if (name == "caption" || (name == "title" && fields.title.empty())) {
      fields.title = value;
      any = true;
    } else if (name == "sample" || (name == "text" && fields.text.empty())) {
      fields.text = value;
      any = true;
    } else if (name == "id") {
      fields.id = value;
    }
  }
  if (!any) {
    return false;
  }
  *out = std::move(fields);
  return true;
}

// The unique-id term "Q<id>" (Xapian's convention for the external id), if the document has one.
std::string id_from_terms(const Xapian::Document& doc) {
  Xapian::TermIterator term = doc.termlist_begin();
  term.skip_to("Q");
  if (term != doc.termlist_end()) {
    const std::string name = *term;
    if (name.size() > 1 && name[0] == 'Q') {
      return name.substr(1);
    }
  }
  return {};
}

void make_utf8(XapianDocumentText* text) {
  for (std::string* s : {&text->id, &text->title, &text->text}) {
    if (find_invalid_utf8(*s) != std::string::npos) {
      *s = sanitize_utf8(*s);
    }
  }
}

}  // namespace

Status extract_text_from_data(const Xapian::Document& doc, XapianDocumentText* out) {
  *out = XapianDocumentText();
  try {
    const std::string data = doc.get_data();
    if (!read_json(data, out) && !read_fields(data, out)) {
      out->text = data;
    }
    if (out->id.empty()) {
      out->id = id_from_terms(doc);
    }
    make_utf8(out);
    return Status::ok();
  } catch (const Xapian::Error& e) {
    return status_from_xapian("reading document " + std::to_string(doc.get_docid()), e);
  }
}

XapianTextExtractor make_value_slot_extractor(Xapian::valueno text_slot,
                                              Xapian::valueno title_slot,
                                              Xapian::valueno id_slot) {
  return [=](const Xapian::Document& doc, XapianDocumentText* out) -> Status {
    *out = XapianDocumentText();
    try {
      out->text = doc.get_value(text_slot);
      if (title_slot != Xapian::BAD_VALUENO) {
        out->title = doc.get_value(title_slot);
      }
      if (id_slot != Xapian::BAD_VALUENO) {
        out->id = doc.get_value(id_slot);
      }
      make_utf8(out);
      return Status::ok();
    } catch (const Xapian::Error& e) {
      return status_from_xapian("reading the values of document " + std::to_string(doc.get_docid()),
                                e);
    }
  };
}

}  // namespace blockrank
