// SPDX-License-Identifier: Apache-2.0
// Training JSONL reading and BlockRank training-sequence building (see example.h).
//
// Sampling follows upstream's `remap_documents` (BLOCKRANK.md §1.7) step for step, with a portable
// generator instead of Python's `random`: the draws are std::mt19937_64 (whose output the standard
// fixes) mapped to a range by rejection, so the same seed gives the same examples with any standard
// library, but not the same examples as upstream's Python.
#include "training/example.h"

#include <algorithm>
#include <random>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "plugin/base/line_reader.h"
#include "plugin/base/strings.h"

#include <nlohmann/json.hpp>

namespace blockrank::training {
namespace {

using Json = nlohmann::json;

constexpr size_t kMaxReportedErrors = 10;

// A uniform draw in [0, n) without modulo bias and without the implementation-defined
// std::uniform_int_distribution.
uint64_t uniform_below(std::mt19937_64& rng, uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x = rng();
  while (x >= limit) {
    x = rng();
  }
  return x % n;
}

// Fisher-Yates over the whole range (std::shuffle's algorithm is unspecified).
template <typename T>
void shuffle_in_place(std::vector<T>* v, std::mt19937_64& rng) {
  for (size_t i = v->size(); i > 1; --i) {
    std::swap((*v)[i - 1], (*v)[uniform_below(rng, i)]);
  }
}

const char* json_type_name(const Json& j) {
  return j.type_name();
}

Status field_error(const std::string& where, const std::string& field, const std::string& what) {
  return Status::invalid_argument(where + ": " + field + ": " + what);
}

// A string field: must be present (unless optional) and a string.
Status get_string(const Json& obj,
                  const char* key,
                  const std::string& where,
                  const std::string& field,
                  bool required,
                  std::string* out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (required) {
      return field_error(where, field, "missing (expected a string)");
    }
    out->clear();
    return Status::ok();
  }
  if (!it->is_string()) {
    return field_error(where, field, std::string("expected a string, got ") + json_type_name(*it));
  }
  *out = it->get<std::string>();
  return Status::ok();
}

bool is_blank(const std::string& s) {
  return strip_whitespace(s).empty();
}

// Ids of the documents, rendered in order; returns the prompt's pieces tokenized. The last block is
// the query prompt only (the completion is appended by the caller).
Status encode(const Tokenizer& tokenizer,
              const std::string& text,
              const std::string& what,
              std::vector<int32_t>* ids) {
  ids->clear();
  Status s = tokenizer.encode(text, ids);
  if (!s.is_ok()) {
    return Status(s.code(), what + ": " + s.message());
  }
  return Status::ok();
}

}  // namespace

Status parse_training_line(const std::string& json_line,
                           const std::string& source,
                           int64_t line,
                           int64_t row,
                           RawExample* out) {
  const std::string where = source + ":" + std::to_string(line);
  Json j = Json::parse(json_line, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return Status::invalid_argument(where + ": not a JSON value");
  }
  if (!j.is_object()) {
    return Status::invalid_argument(where + ": expected a JSON object, got " +
                                    std::string(json_type_name(j)));
  }
  RawExample ex;
  ex.source = source;
  ex.line = line;
  BLOCKRANK_RETURN_IF_ERROR(get_string(j, "query", where, "query", /*required=*/true, &ex.query));
  if (is_blank(ex.query)) {
    return field_error(where, "query", "empty");
  }
  auto qid = j.find("query_id");
  if (qid == j.end() || qid->is_null()) {
    ex.query_id = std::to_string(row);  // upstream's default: the row index
  } else if (qid->is_string()) {
    ex.query_id = qid->get<std::string>();
  } else if (qid->is_number_integer()) {
    ex.query_id = std::to_string(qid->get<int64_t>());
  } else {
    return field_error(where, "query_id",
                       std::string("expected a string, got ") + json_type_name(*qid));
  }

  auto docs = j.find("documents");
  if (docs == j.end()) {
    return field_error(where, "documents", "missing (expected a list of {doc_id, title, text})");
  }
  if (!docs->is_array()) {
    return field_error(where, "documents",
                       std::string("expected a list, got ") + json_type_name(*docs));
  }
  if (docs->empty()) {
    return field_error(where, "documents", "empty list");
  }
  std::unordered_set<std::string> seen;
  for (size_t k = 0; k < docs->size(); ++k) {
    const Json& d = (*docs)[k];
    const std::string field = "documents[" + std::to_string(k) + "]";
    if (!d.is_object()) {
      // Upstream documents a list-of-strings form whose ids never match answer_ids (§5.1).
      return field_error(
          where, field,
          std::string("expected an object {doc_id, title, text}, got ") + json_type_name(d));
    }
    RawDocument doc;
    BLOCKRANK_RETURN_IF_ERROR(
        get_string(d, "doc_id", where, field + ".doc_id", /*required=*/true, &doc.doc_id));
    BLOCKRANK_RETURN_IF_ERROR(
        get_string(d, "title", where, field + ".title", /*required=*/false, &doc.title));
    BLOCKRANK_RETURN_IF_ERROR(
        get_string(d, "text", where, field + ".text", /*required=*/true, &doc.text));
    if (is_blank(doc.text)) {
      return field_error(where, field + ".text", "empty (doc_id '" + doc.doc_id + "')");
    }
    if (!seen.insert(doc.doc_id).second) {
      continue;  // upstream keys documents by doc_id: the first one stays
    }
    ex.documents.push_back(std::move(doc));
  }

  auto answers = j.find("answer_ids");
  if (answers == j.end()) {
    return field_error(where, "answer_ids", "missing (expected a list of doc_id strings)");
  }
  if (!answers->is_array()) {
    return field_error(where, "answer_ids",
                       std::string("expected a list, got ") + json_type_name(*answers));
  }
  bool any_positive = false;
  for (size_t k = 0; k < answers->size(); ++k) {
    const Json& a = (*answers)[k];
    if (!a.is_string()) {
      return field_error(where, "answer_ids[" + std::to_string(k) + "]",
                         std::string("expected a doc_id string, got ") + json_type_name(a) +
                             " (integer answer ids never match upstream's string doc ids)");
    }
    ex.answer_ids.push_back(a.get<std::string>());
    any_positive = any_positive || seen.count(ex.answer_ids.back()) > 0;
  }
  if (!any_positive) {
    return field_error(where, "answer_ids",
                       ex.answer_ids.empty()
                           ? std::string("empty (a training example needs a positive)")
                           : "none of the " + std::to_string(ex.answer_ids.size()) +
                                 " answer id(s) names a document of this line");
  }
  *out = std::move(ex);
  return Status::ok();
}

Status read_training_jsonl(const std::string& path,
                           const ReadOptions& options,
                           std::vector<RawExample>* out,
                           ReadStats* stats) {
  ReadStats local;
  ReadStats& st = stats != nullptr ? *stats : local;
  std::unique_ptr<LineReader> reader;
  BLOCKRANK_RETURN_IF_ERROR(LineReader::open(path, &reader));
  std::string line;
  bool eof = false;
  int64_t row = 0;
  while (true) {
    BLOCKRANK_RETURN_IF_ERROR(reader->next_nonblank(&line, &eof));
    if (eof) {
      break;
    }
    RawExample ex;
    Status s =
        parse_training_line(line, path, static_cast<int64_t>(reader->line_number()), row, &ex);
    ++row;
    if (!s.is_ok()) {
      if (!options.skip_bad) {
        return s;
      }
      ++st.skipped;
      if (st.first_errors.size() < kMaxReportedErrors) {
        st.first_errors.push_back(s.message());
      }
      continue;
    }
    out->push_back(std::move(ex));
    ++st.read;
  }
  return Status::ok();
}

std::string completion_text(const std::vector<int32_t>& positives) {
  std::string s = "[";
  for (size_t k = 0; k < positives.size(); ++k) {
    if (k > 0) {
      s += ", ";
    }
    s += std::to_string(positives[k]);
  }
  s += "]";
  return s;
}

Status build_training_example(const Tokenizer& tokenizer,
                              const RawExample& raw,
                              const ExampleOptions& options,
                              uint64_t index,
                              TrainingExample* out) {
  const std::string where = raw.source + ":" + std::to_string(raw.line);
  if (options.num_documents < 1) {
    return Status::invalid_argument("num_documents must be >= 1");
  }
  if (options.max_block_length < 1) {
    return Status::invalid_argument("max_block_length must be >= 1");
  }
  const std::optional<int32_t> eos = tokenizer.eos_id();
  if (!eos) {
    return Status::invalid_argument("the tokenizer has no EOS token (the completion ends with it)");
  }
  if (raw.documents.empty()) {
    return Status::invalid_argument(where + ": documents: empty");
  }

  // §1.7 step 1: every positive (answer_ids order, each once), at most N of them.
  const size_t n = static_cast<size_t>(options.num_documents);
  std::unordered_map<std::string, size_t> by_id;
  for (size_t k = 0; k < raw.documents.size(); ++k) {
    by_id.emplace(raw.documents[k].doc_id, k);
  }
  std::vector<size_t> positive_docs;
  std::unordered_set<size_t> is_positive;
  for (const std::string& id : raw.answer_ids) {
    auto it = by_id.find(id);
    if (it != by_id.end() && is_positive.insert(it->second).second) {
      positive_docs.push_back(it->second);
    }
  }
  if (positive_docs.empty()) {
    return Status::invalid_argument(where + ": answer_ids: no answer id names a document");
  }
  if (positive_docs.size() > n) {
    positive_docs.resize(n);
  }

  // Step 2: N - #pos negatives drawn without replacement from the other candidates.
  std::mt19937_64 rng(options.seed + index);
  std::vector<size_t> negatives;
  for (size_t k = 0; k < raw.documents.size(); ++k) {
    if (is_positive.count(k) == 0) {
      negatives.push_back(k);
    }
  }
  const size_t want = n - positive_docs.size();
  // Partial Fisher-Yates: the first `take` entries become a uniform sample.
  const size_t take = std::min(want, negatives.size());
  for (size_t i = 0; i < take; ++i) {
    std::swap(negatives[i], negatives[i + uniform_below(rng, negatives.size() - i)]);
  }
  negatives.resize(take);

  // Steps 3-5: candidates (positives, negatives, dummies), shuffled, renumbered 0..N-1.
  struct Candidate {
    const RawDocument* doc;  // null for a dummy
    bool positive;
  };
  std::vector<Candidate> cands;
  cands.reserve(n);
  for (size_t k : positive_docs) {
    cands.push_back({&raw.documents[k], true});
  }
  for (size_t k : negatives) {
    cands.push_back({&raw.documents[k], false});
  }
  while (cands.size() < n) {
    cands.push_back({nullptr, false});
  }
  shuffle_in_place(&cands, rng);

  TrainingExample ex;
  ex.query_id = raw.query_id;
  std::vector<PromptDocument> docs;
  docs.reserve(n);
  for (size_t k = 0; k < cands.size(); ++k) {
    if (cands[k].doc == nullptr) {
      docs.push_back({"", kDummyDocumentText});
      ex.doc_ids.emplace_back();
    } else {
      docs.push_back({cands[k].doc->title, cands[k].doc->text});
      ex.doc_ids.push_back(cands[k].doc->doc_id);
    }
    if (cands[k].positive) {
      ex.positives.push_back(static_cast<int32_t>(k));
    }
  }

  // The prompt pieces (§1.1-§1.3), each tokenized on its own; the training completion
  // "[3, 7]</s>" is one piece (the chat template's EOS becomes the tokenizer's EOS id) merged into
  // the query block.
  const PromptPieces pieces = render_prompt_pieces(options.tmpl, raw.query, docs);
  std::vector<std::vector<int32_t>> blocks(n + 2);
  BLOCKRANK_RETURN_IF_ERROR(encode(tokenizer, pieces.instruction, where + ": query", &blocks[0]));
  for (size_t k = 0; k < n; ++k) {
    const std::string what =
        where + ": document " + (ex.doc_ids[k].empty() ? std::string("(dummy)") : ex.doc_ids[k]);
    BLOCKRANK_RETURN_IF_ERROR(encode(tokenizer, pieces.documents[k], what, &blocks[k + 1]));
  }
  std::vector<int32_t> completion;
  BLOCKRANK_RETURN_IF_ERROR(
      encode(tokenizer, completion_text(ex.positives), where + ": completion", &completion));
  completion.push_back(*eos);
  // The completion must start with the token(s) inference ends with ("["), or the signal rows at
  // training and at inference would be different tokens.
  std::vector<int32_t> open;
  BLOCKRANK_RETURN_IF_ERROR(encode(tokenizer, pieces.completion, where + ": completion", &open));
  if (open.empty() || completion.size() <= open.size() ||
      !std::equal(open.begin(), open.end(), completion.begin())) {
    return Status::invalid_argument(
        where + ": the tokenizer splits the completion \"" + completion_text(ex.positives) +
        "\" so that it does not begin with the tokens of \"" + pieces.completion +
        "\" (inference's last token); this tokenizer cannot train BlockRank's signal token");
  }
  std::vector<int32_t>& query_block = blocks.back();
  BLOCKRANK_RETURN_IF_ERROR(
      encode(tokenizer, pieces.query_prompt, where + ": query", &query_block));
  query_block.insert(query_block.end(), completion.begin(), completion.end());

  // §1.4: H = min(longest block, max_block_length) rounded up to 16; every block keeps its first
  // H tokens.
  int64_t longest = 0;
  for (const auto& b : blocks) {
    longest = std::max<int64_t>(longest, static_cast<int64_t>(b.size()));
  }
  const int64_t h = truncated_block_length(longest, options.max_block_length);
  BLOCKRANK_RETURN_IF_ERROR(fit_query_block(tokenizer, options.tmpl, raw.query, completion, h,
                                            options.max_block_length, where + ": ", &query_block,
                                            &ex.query_truncated));
  ex.block_length = static_cast<int32_t>(h);
  for (auto& b : blocks) {
    if (static_cast<int64_t>(b.size()) > h) {
      b.resize(static_cast<size_t>(h));
    }
    ex.block_lengths.push_back(static_cast<int32_t>(b.size()));
    ex.input_ids.insert(ex.input_ids.end(), b.begin(), b.end());
  }

  // §3.1: labels only on the completion, which ends the sequence.
  ex.labels.assign(ex.input_ids.size(), kIgnoreLabel);
  const size_t first = ex.input_ids.size() - completion.size();
  for (size_t t = first; t < ex.input_ids.size(); ++t) {
    ex.labels[t] = ex.input_ids[t];
  }
  ex.signal_row = static_cast<int32_t>(first);
  *out = std::move(ex);
  return Status::ok();
}

}  // namespace blockrank::training
