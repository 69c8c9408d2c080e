// SPDX-License-Identifier: Apache-2.0
#include "http/api.h"

#include "plugin/base/strings.h"

#include <nlohmann/json.hpp>

namespace blockrank {

using nlohmann::json;

namespace {

Status parse_object(const std::string& body, json* out) {
  if (find_invalid_utf8(body) != std::string::npos) {
    return Status::invalid_argument("request body is not valid UTF-8 (byte " +
                                    std::to_string(find_invalid_utf8(body)) + ")");
  }
  try {
    *out = json::parse(body);
  } catch (const json::exception& e) {
    return Status::invalid_argument(std::string("malformed JSON: ") + e.what());
  }
  if (!out->is_object()) {
    return Status::invalid_argument("the request body must be a JSON object");
  }
  return Status::ok();
}

Status get_string(const json& j, const char* field, bool required, std::string* out) {
  const auto it = j.find(field);
  if (it == j.end() || it->is_null()) {
    if (required) {
      return Status::invalid_argument(std::string("field '") + field + "' is required (a string)");
    }
    return Status::ok();
  }
  if (!it->is_string()) {
    return Status::invalid_argument(std::string("field '") + field + "' must be a string, got " +
                                    it->type_name());
  }
  *out = it->get<std::string>();
  return Status::ok();
}

Status get_int(const json& j, const char* field, int lo, int hi, int* out) {
  const auto it = j.find(field);
  if (it == j.end() || it->is_null()) {
    return Status::ok();
  }
  if (!it->is_number_integer()) {
    return Status::invalid_argument(std::string("field '") + field + "' must be an integer, got " +
                                    it->type_name());
  }
  const long long v = it->get<long long>();
  if (v < lo || v > hi) {
    return Status::invalid_argument(std::string("field '") + field + "' must be between " +
                                    std::to_string(lo) + " and " + std::to_string(hi));
  }
  *out = static_cast<int>(v);
  return Status::ok();
}

Status get_bool(const json& j, const char* field, bool* out) {
  const auto it = j.find(field);
  if (it == j.end() || it->is_null()) {
    return Status::ok();
  }
  if (!it->is_boolean()) {
    return Status::invalid_argument(std::string("field '") + field + "' must be true or false");
  }
  *out = it->get<bool>();
  return Status::ok();
}

Status check_query(const std::string& q, const ApiLimits& limits) {
  if (trim(q).empty()) {
    return Status::invalid_argument("field 'query' must not be empty");
  }
  if (q.size() > limits.max_query_bytes) {
    return Status::invalid_argument("field 'query' is " + std::to_string(q.size()) +
                                    " bytes; at most " + std::to_string(limits.max_query_bytes));
  }
  return Status::ok();
}

}  // namespace

Status parse_search_request(const std::string& body,
                            const ApiLimits& limits,
                            SearchApiRequest* out) {
  json j;
  BLOCKRANK_RETURN_IF_ERROR(parse_object(body, &j));
  *out = SearchApiRequest();
  BLOCKRANK_RETURN_IF_ERROR(get_string(j, "query", /*required=*/true, &out->query));
  BLOCKRANK_RETURN_IF_ERROR(check_query(out->query, limits));
  BLOCKRANK_RETURN_IF_ERROR(get_int(j, "k", 1, limits.max_results, &out->k));
  BLOCKRANK_RETURN_IF_ERROR(get_int(j, "candidates", 1, limits.max_results, &out->candidates));
  BLOCKRANK_RETURN_IF_ERROR(get_bool(j, "rerank", &out->rerank));
  std::string fusion;
  BLOCKRANK_RETURN_IF_ERROR(get_string(j, "fusion", /*required=*/false, &fusion));
  if (const auto it = j.find("fusion"); it != j.end() && !it->is_null()) {
    StatusOr<FusionOptions> f = parse_fusion(fusion);
    if (!f.is_ok()) {
      return Status::invalid_argument("field 'fusion': " + f.status().message());
    }
    out->has_fusion = true;
    out->fusion = *f;
  }
  return Status::ok();
}

Status parse_rerank_request(const std::string& body,
                            const ApiLimits& limits,
                            RerankApiRequest* out) {
  json j;
  BLOCKRANK_RETURN_IF_ERROR(parse_object(body, &j));
  *out = RerankApiRequest();
  BLOCKRANK_RETURN_IF_ERROR(get_string(j, "model", /*required=*/false, &out->model));
  BLOCKRANK_RETURN_IF_ERROR(get_string(j, "query", /*required=*/true, &out->request.query));
  BLOCKRANK_RETURN_IF_ERROR(check_query(out->request.query, limits));
  const auto docs = j.find("documents");
  if (docs == j.end() || !docs->is_array()) {
    return Status::invalid_argument(
        "field 'documents' is required: an array of strings or of {text, title?} objects");
  }
  if (docs->empty()) {
    return Status::invalid_argument("field 'documents' must not be empty");
  }
  if (static_cast<int>(docs->size()) > limits.max_documents) {
    return Status::invalid_argument("field 'documents' has " + std::to_string(docs->size()) +
                                    " entries; at most " + std::to_string(limits.max_documents));
  }
  int index = 0;
  for (const json& d : *docs) {
    RerankDocument doc;
    doc.id = std::to_string(index);
    const std::string where = "documents[" + std::to_string(index) + "]";
    if (d.is_string()) {
      doc.text = d.get<std::string>();
    } else if (d.is_object()) {
      Status st = get_string(d, "text", /*required=*/true, &doc.text);
      if (st.is_ok()) {
        st = get_string(d, "title", /*required=*/false, &doc.title);
      }
      if (!st.is_ok()) {
        return st.with_context(where);
      }
    } else {
      return Status::invalid_argument(where + " must be a string or an object with 'text'");
    }
    if (doc.text.size() + doc.title.size() > limits.max_document_bytes) {
      return Status::invalid_argument(where + " is " + std::to_string(doc.text.size()) +
                                      " bytes; at most " +
                                      std::to_string(limits.max_document_bytes));
    }
    out->request.documents.push_back(std::move(doc));
    ++index;
  }
  BLOCKRANK_RETURN_IF_ERROR(get_int(j, "top_n", 1, limits.max_documents, &out->top_n));
  BLOCKRANK_RETURN_IF_ERROR(get_bool(j, "return_documents", &out->return_documents));
  BLOCKRANK_RETURN_IF_ERROR(
      get_int(j, "max_tokens_per_doc", 1, 1 << 20, &out->request.max_tokens_per_doc));
  return Status::ok();
}

Status parse_documents_request(const std::string& body,
                               const ApiLimits& limits,
                               DocumentsApiRequest* out) {
  json j;
  BLOCKRANK_RETURN_IF_ERROR(parse_object(body, &j));
  out->documents.clear();
  const auto docs = j.find("documents");
  if (docs == j.end() || !docs->is_array() || docs->empty()) {
    return Status::invalid_argument(
        "field 'documents' is required: a non-empty array of {id, title?, text}");
  }
  if (static_cast<int>(docs->size()) > limits.max_documents) {
    return Status::invalid_argument("field 'documents' has " + std::to_string(docs->size()) +
                                    " entries; at most " + std::to_string(limits.max_documents));
  }
  int index = 0;
  for (const json& d : *docs) {
    const std::string where = "documents[" + std::to_string(index++) + "]";
    if (!d.is_object()) {
      return Status::invalid_argument(where + " must be an object {id, title?, text}");
    }
    CorpusDocument doc;
    const auto id = d.find("id");
    if (id != d.end() && id->is_number_integer()) {
      doc.id = std::to_string(id->get<long long>());
    } else {
      Status st = get_string(d, "id", /*required=*/true, &doc.id);
      if (!st.is_ok()) {
        return st.with_context(where);
      }
    }
    if (trim(doc.id).empty()) {
      return Status::invalid_argument(where + ": field 'id' must not be empty");
    }
    Status st = get_string(d, "text", /*required=*/true, &doc.text);
    if (st.is_ok()) {
      st = get_string(d, "title", /*required=*/false, &doc.title);
    }
    if (!st.is_ok()) {
      return st.with_context(where);
    }
    if (doc.text.size() + doc.title.size() > limits.max_document_bytes) {
      return Status::invalid_argument(where + " is larger than " +
                                      std::to_string(limits.max_document_bytes) + " bytes");
    }
    doc.location = "request " + where;
    out->documents.push_back(std::move(doc));
  }
  return Status::ok();
}

std::string to_json(const SearchApiResponse& r) {
  json results = json::array();
  for (const SearchApiHit& h : r.results) {
    results.push_back({{"rank", h.rank},
                       {"bm25_rank", h.bm25_rank},
                       {"doc_id", h.doc_id},
                       {"score", h.score},
                       {"bm25_score", h.bm25_score},
                       {"title", h.title},
                       {"snippet", h.snippet}});
    if (r.reranked) {
      results.back()["rerank_score"] = h.rerank_score;
    }
  }
  json out = {
      {"results", results},
      {"reranked", r.reranked},
      {"timings",
       {{"retrieve_ms", r.retrieve_ms}, {"rerank_ms", r.rerank_ms}, {"total_ms", r.total_ms}}}};
  if (r.reranked) {
    out["fusion"] = r.fusion;
  }
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string to_json(const RerankApiResponse& r) {
  json results = json::array();
  for (const auto& item : r.results) {
    json e = {{"index", item.index}, {"relevance_score", item.relevance_score}};
    if (r.return_documents) {
      e["document"] = {{"text", item.text}};
      if (!item.title.empty()) {
        e["document"]["title"] = item.title;
      }
    }
    results.push_back(std::move(e));
  }
  json out = {{"id", r.id},
              {"model", r.model},
              {"object", "list"},
              {"results", results},
              {"usage", {{"total_tokens", r.total_tokens}, {"prompt_tokens", r.total_tokens}}}};
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string document_json(const std::string& id,
                          const std::string& title,
                          const std::string& text) {
  return json({{"id", id}, {"title", title}, {"text", text}})
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string error_json(const std::string& code, const std::string& message) {
  return json({{"error", {{"code", code}, {"message", message}}}})
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string simple_json(const std::vector<std::pair<std::string, double>>& numbers,
                        const std::vector<std::pair<std::string, std::string>>& strings) {
  json out = json::object();
  for (const auto& [k, v] : numbers) {
    if (v == static_cast<double>(static_cast<long long>(v))) {
      out[k] = static_cast<long long>(v);  // counts print as integers
    } else {
      out[k] = v;
    }
  }
  for (const auto& [k, v] : strings) {
    out[k] = v;
  }
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace blockrank
