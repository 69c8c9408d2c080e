// SPDX-License-Identifier: Apache-2.0
#include "indexer/eval_data.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <set>

#include "plugin/base/line_reader.h"
#include "plugin/base/strings.h"

#include <nlohmann/json.hpp>

namespace blockrank {

namespace {

bool parse_int(const std::string& s, int* out) {
  if (s.empty()) {
    return false;
  }
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(s.c_str(), &end, 10);
  if (errno != 0 || *end != '\0') {
    return false;
  }
  *out = static_cast<int>(v);
  return true;
}

bool parse_double(const std::string& s, double* out) {
  if (s.empty()) {
    return false;
  }
  char* end = nullptr;
  errno = 0;
  *out = std::strtod(s.c_str(), &end);
  return errno == 0 && *end == '\0';
}

std::string detect_query_format(const std::string& path) {
  std::string name = to_lower_ascii(path);
  if (ends_with(name, ".gz")) {
    name.resize(name.size() - 3);
  }
  if (ends_with(name, ".jsonl")) {
    return "beir";
  }
  if (ends_with(name, ".tsv") || ends_with(name, ".queries")) {
    return "tsv";
  }
  std::unique_ptr<LineReader> lines;
  if (!LineReader::open(path, &lines).is_ok()) {
    return "tsv";
  }
  std::string line;
  bool eof = false;
  while (lines->next(&line, &eof).is_ok() && !eof) {
    const std::string_view t = trim(line);
    if (t.empty()) {
      continue;
    }
    if (t.front() == '{') {
      return "beir";
    }
    if (t.front() == '<') {
      return "trec";
    }
    if (starts_with(t, ".I")) {
      return "smart";
    }
    return "tsv";
  }
  return "tsv";
}

// Content of <tag>…</tag> or, for old TREC topics, of "<tag> … " up to the next "<".
bool trec_field(const std::string& body, const std::string& tag, std::string* out) {
  const std::string open = "<" + tag + ">";
  const size_t a = body.find(open);
  if (a == std::string::npos) {
    return false;
  }
  const size_t start = a + open.size();
  const size_t b = body.find('<', start);
  std::string value = body.substr(start, b == std::string::npos ? std::string::npos : b - start);
  // Old TREC topic labels: "<title> Topic: …", "<desc> Description: …", "<num> Number: 301".
  for (const char* label : {"Topic:", "Description:", "Narrative:", "Number:"}) {
    const std::string_view t = trim(value);
    if (starts_with(t, label)) {
      value = std::string(t.substr(std::strlen(label)));
    }
  }
  *out = collapse_whitespace(value);
  return true;
}

Status read_trec_topics(const std::string& path,
                        const QueryReaderOptions& options,
                        std::vector<EvalQuery>* queries) {
  std::string all;
  BLOCKRANK_RETURN_IF_ERROR(read_file(path, &all));
  // Topics are <top>…</top> blocks, or <DOC>…</DOC> blocks with <DOCNO> (CACM's topic file).
  const bool doc_style = all.find("<top>") == std::string::npos;
  const std::string open = doc_style ? "<DOC>" : "<top>";
  const std::string close = doc_style ? "</DOC>" : "</top>";
  size_t pos = 0;
  while (true) {
    const size_t a = all.find(open, pos);
    if (a == std::string::npos) {
      break;
    }
    const size_t b = all.find(close, a);
    const size_t line = static_cast<size_t>(std::count(all.begin(), all.begin() + a, '\n')) + 1;
    const std::string where = path + ":" + std::to_string(line);
    if (b == std::string::npos) {
      return Status::invalid_argument(where + ": " + open + " without " + close);
    }
    const std::string body = all.substr(a + open.size(), b - a - open.size());
    pos = b + close.size();
    EvalQuery q;
    if (!trec_field(body, doc_style ? "DOCNO" : "num", &q.id) || q.id.empty()) {
      return Status::invalid_argument(where + ": topic without " +
                                      (doc_style ? "<DOCNO>" : "<num>"));
    }
    std::string text;
    for (const std::string& f : options.trec_fields) {
      std::string part;
      if (trec_field(body, f, &part) && !part.empty()) {
        text += (text.empty() ? "" : " ") + part;
      }
    }
    if (text.empty()) {
      // No requested field: the whole body minus the id markup.
      std::string rest = body;
      const std::string id_tag = doc_style ? "DOCNO" : "num";
      const size_t s = rest.find("<" + id_tag + ">");
      size_t e = rest.find("</" + id_tag + ">", s);
      if (e != std::string::npos) {
        e += id_tag.size() + 3;
      } else {
        e = rest.find('\n', s);
      }
      rest.erase(s, e == std::string::npos ? std::string::npos : e - s);
      std::string clean;
      bool in_tag = false;
      for (char c : rest) {
        if (c == '<') {
          in_tag = true;
        } else if (c == '>') {
          in_tag = false;
          clean.push_back(' ');
        } else if (!in_tag) {
          clean.push_back(c);
        }
      }
      text = collapse_whitespace(clean);
    }
    if (text.empty()) {
      return Status::invalid_argument(where + ": topic '" + q.id + "' has no text");
    }
    q.text = std::move(text);
    queries->push_back(std::move(q));
  }
  return Status::ok();
}

Status read_smart_queries(const std::string& path,
                          const QueryReaderOptions& options,
                          std::vector<EvalQuery>* queries) {
  std::unique_ptr<LineReader> lines;
  BLOCKRANK_RETURN_IF_ERROR(LineReader::open(path, &lines));
  std::string line;
  bool eof = false;
  bool in_text = false;
  while (true) {
    BLOCKRANK_RETURN_IF_ERROR(lines->next(&line, &eof));
    if (eof) {
      break;
    }
    if (starts_with(line, ".I")) {
      EvalQuery q;
      q.id = std::string(trim(std::string_view(line).substr(2)));
      if (q.id.empty()) {
        return Status::invalid_argument(lines->location() + ": '.I' without a query number");
      }
      if (options.number_by_position) {
        q.id = std::to_string(queries->size() + 1);
      } else {
        q.id = normalize_numeric_id(q.id);
      }
      queries->push_back(std::move(q));
      in_text = false;
    } else if (line.size() >= 2 && line[0] == '.' &&
               trim(std::string_view(line).substr(2)).empty()) {
      in_text = line[1] == 'W';
    } else if (in_text) {
      if (queries->empty()) {
        return Status::invalid_argument(lines->location() + ": text before the first '.I'");
      }
      queries->back().text += line;
      queries->back().text.push_back(' ');
    }
  }
  for (EvalQuery& q : *queries) {
    q.text = collapse_whitespace(q.text);
  }
  return Status::ok();
}

}  // namespace

Status read_queries(const std::string& path,
                    const QueryReaderOptions& options,
                    std::vector<EvalQuery>* queries) {
  queries->clear();
  const std::string format = options.format == "auto" ? detect_query_format(path) : options.format;
  Status st;
  if (format == "trec") {
    st = read_trec_topics(path, options, queries);
  } else if (format == "smart") {
    st = read_smart_queries(path, options, queries);
  } else if (format == "beir" || format == "tsv") {
    std::unique_ptr<LineReader> lines;
    BLOCKRANK_RETURN_IF_ERROR(LineReader::open(path, &lines));
    std::string line;
    bool eof = false;
    while (true) {
      BLOCKRANK_RETURN_IF_ERROR(lines->next_nonblank(&line, &eof));
      if (eof) {
        break;
      }
      EvalQuery q;
      if (format == "beir") {
        nlohmann::json j;
        try {
          j = nlohmann::json::parse(line);
        } catch (const nlohmann::json::exception& e) {
          return Status::invalid_argument(lines->location() + ": invalid JSON: " + e.what());
        }
        if (!j.is_object() || !j.contains("_id") || !j.contains("text")) {
          return Status::invalid_argument(lines->location() +
                                          ": expected an object with '_id' and 'text'");
        }
        const auto& id = j["_id"];
        q.id = id.is_string() ? id.get<std::string>() : id.dump();
        if (!j["text"].is_string()) {
          return Status::invalid_argument(lines->location() + ": field 'text' must be a string");
        }
        q.text = j["text"].get<std::string>();
      } else {
        const size_t tab = line.find('\t');
        if (tab == std::string::npos) {
          return Status::invalid_argument(lines->location() + ": expected 'id<TAB>query text'");
        }
        q.id = std::string(trim(std::string_view(line).substr(0, tab)));
        q.text = line.substr(tab + 1);
        if (q.id == "query-id" || q.id == "qid" || q.id == "id") {
          continue;  // a header line
        }
      }
      if (q.id.empty()) {
        return Status::invalid_argument(lines->location() + ": empty query id");
      }
      queries->push_back(std::move(q));
    }
  } else {
    return Status::invalid_argument("unknown query format '" + format +
                                    "' (expected auto, beir, tsv, trec or smart)");
  }
  BLOCKRANK_RETURN_IF_ERROR(st);
  std::set<std::string> seen;
  for (const EvalQuery& q : *queries) {
    if (!seen.insert(q.id).second) {
      return Status::invalid_argument(path + ": query id '" + q.id + "' appears twice");
    }
  }
  if (queries->empty()) {
    return Status::invalid_argument(path + ": no queries found");
  }
  return Status::ok();
}

Status read_qrels(const std::string& path, const QrelsReaderOptions& options, Qrels* qrels) {
  qrels->clear();
  std::map<int, int> relmap;
  if (!options.relevance_map.empty()) {
    for (const std::string& pair : split(options.relevance_map, ',')) {
      const size_t colon = pair.find(':');
      int from = 0;
      int to = 0;
      if (colon == std::string::npos ||
          !parse_int(std::string(trim(pair.substr(0, colon))), &from) ||
          !parse_int(std::string(trim(pair.substr(colon + 1))), &to)) {
        return Status::invalid_argument("relevance map '" + options.relevance_map +
                                        "': expected 'from:to,from:to'");
      }
      relmap[from] = to;
    }
  }
  std::unique_ptr<LineReader> lines;
  BLOCKRANK_RETURN_IF_ERROR(LineReader::open(path, &lines));
  std::string line;
  bool eof = false;
  while (true) {
    BLOCKRANK_RETURN_IF_ERROR(lines->next_nonblank(&line, &eof));
    if (eof) {
      break;
    }
    const std::vector<std::string> cols = split_whitespace(line);
    std::string qid;
    std::string did;
    std::string rel_s;
    if (cols.size() == 4) {
      qid = cols[0];
      did = cols[2];
      rel_s = cols[3];
    } else if (cols.size() == 3) {
      qid = cols[0];
      did = cols[1];
      rel_s = cols[2];
    } else {
      return Status::invalid_argument(lines->location() +
                                      ": expected 'qid 0 docid rel' (TREC) or 'qid docid rel', "
                                      "found " +
                                      std::to_string(cols.size()) + " columns");
    }
    int rel = 0;
    if (!parse_int(rel_s, &rel)) {
      if (lines->line_number() == 1) {
        continue;  // BEIR header "query-id corpus-id score"
      }
      return Status::invalid_argument(lines->location() + ": relevance '" + rel_s +
                                      "' is not an integer");
    }
    if (!relmap.empty()) {
      const auto it = relmap.find(rel);
      if (it == relmap.end()) {
        return Status::invalid_argument(lines->location() + ": relevance " + std::to_string(rel) +
                                        " has no entry in the relevance map");
      }
      rel = it->second;
    }
    (*qrels)[qid][did] = rel;
  }
  if (qrels->empty()) {
    return Status::invalid_argument(path + ": no judgements found");
  }
  return Status::ok();
}

Status read_run(const std::string& path, Run* run) {
  run->clear();
  std::unique_ptr<LineReader> lines;
  BLOCKRANK_RETURN_IF_ERROR(LineReader::open(path, &lines));
  std::map<std::string, std::set<std::string>> seen;
  std::string line;
  bool eof = false;
  while (true) {
    BLOCKRANK_RETURN_IF_ERROR(lines->next_nonblank(&line, &eof));
    if (eof) {
      break;
    }
    const std::vector<std::string> cols = split_whitespace(line);
    if (cols.size() != 6) {
      return Status::invalid_argument(lines->location() +
                                      ": expected 'qid Q0 docid rank score tag', found " +
                                      std::to_string(cols.size()) + " columns");
    }
    RunEntry e;
    e.doc_id = cols[2];
    if (!parse_double(cols[4], &e.score)) {
      return Status::invalid_argument(lines->location() + ": score '" + cols[4] +
                                      "' is not a number");
    }
    if (seen[cols[0]].insert(e.doc_id).second) {
      (*run)[cols[0]].push_back(std::move(e));
    }
  }
  if (run->empty()) {
    return Status::invalid_argument(path + ": no run lines found");
  }
  return Status::ok();
}

Status write_run(const std::string& path, const Run& run, const std::string& tag) {
  std::string out;
  for (const auto& [qid, entries] : run) {
    std::vector<RunEntry> sorted = entries;
    std::stable_sort(sorted.begin(), sorted.end(),
                     [](const RunEntry& a, const RunEntry& b) { return a.score > b.score; });
    int rank = 0;
    for (const RunEntry& e : sorted) {
      char score[64];
      std::snprintf(score, sizeof(score), "%.6f", e.score);
      out +=
          qid + " Q0 " + e.doc_id + " " + std::to_string(++rank) + " " + score + " " + tag + "\n";
    }
  }
  return write_file_atomic(path, out);
}

std::string normalize_numeric_id(const std::string& id) {
  size_t digits = id.size();
  while (digits > 0 && std::isdigit(static_cast<unsigned char>(id[digits - 1]))) {
    --digits;
  }
  if (digits == id.size()) {
    return id;
  }
  size_t first = digits;
  while (first + 1 < id.size() && id[first] == '0') {
    ++first;
  }
  return id.substr(0, digits) + id.substr(first);
}

}  // namespace blockrank
