// SPDX-License-Identifier: Apache-2.0
// The HTTP API's request and response types and their JSON mapping. Requests are parsed into native
// structs here, at once, so no JSON type leaves this file pair; every malformed request becomes a
// kInvalidArgument Status whose message names the field and what was expected.
#ifndef BLOCKRANK_HTTP_API_H_
#define BLOCKRANK_HTTP_API_H_

#include <string>
#include <vector>

#include "blockrank/fusion.h"
#include "blockrank/status.h"
#include "indexer/corpus_reader.h"
#include "plugin/base/rerank_backend.h"

namespace blockrank {

struct ApiLimits {
  /// Longest query in bytes. Default: 16384.
  size_t max_query_bytes = 16384;
  /// Largest k and candidates. Default: 1000.
  int max_results = 1000;
  /// Most documents in one /v1/rerank or /v1/documents request. Default: 1000.
  int max_documents = 1000;
  /// Longest document text in bytes. Default: 262144.
  size_t max_document_bytes = 262144;
};

struct SearchApiRequest {
  std::string query;
  int k = 10;
  int candidates = 100;
  bool rerank = true;
  /// "fusion": "rerank" or "interpolate:ALPHA" for this request (blockrank/fusion.h); absent:
  /// the server's (ServerOptions::fusion).
  bool has_fusion = false;
  FusionOptions fusion;
};

struct SearchApiHit {
  int rank = 0;
  int bm25_rank = 0;
  std::string doc_id;
  double score = 0;  ///< the fused score when reranked (see fusion), else the BM25 score
  double bm25_score = 0;
  double rerank_score = 0;  ///< the reranker's own score (only when reranked)
  std::string title;
  std::string snippet;
};

struct SearchApiResponse {
  std::vector<SearchApiHit> results;
  bool reranked = false;
  std::string fusion;  ///< fusion_name() of the fusion that ordered the results (when reranked)
  double retrieve_ms = 0, rerank_ms = 0, total_ms = 0;
};

struct RerankApiRequest {
  std::string model;
  RerankRequest request;
  int top_n = -1;  ///< -1: all
  bool return_documents = false;
};

struct RerankApiResponse {
  std::string id;
  std::string model;
  struct Item {
    int index = 0;
    double relevance_score = 0;
    std::string text;
    std::string title;
  };
  std::vector<Item> results;
  bool return_documents = false;
  int64_t total_tokens = 0;
};

struct DocumentsApiRequest {
  std::vector<CorpusDocument> documents;
};

Status parse_search_request(const std::string& body,
                            const ApiLimits& limits,
                            SearchApiRequest* out);
Status parse_rerank_request(const std::string& body,
                            const ApiLimits& limits,
                            RerankApiRequest* out);
Status parse_documents_request(const std::string& body,
                               const ApiLimits& limits,
                               DocumentsApiRequest* out);

std::string to_json(const SearchApiResponse& r);
std::string to_json(const RerankApiResponse& r);
std::string document_json(const std::string& id, const std::string& title, const std::string& text);
/// {"error": {"code": "<code>", "message": "..."}}
std::string error_json(const std::string& code, const std::string& message);
/// Any object with string/number fields, e.g. {"added": 3}.
std::string simple_json(const std::vector<std::pair<std::string, double>>& numbers,
                        const std::vector<std::pair<std::string, std::string>>& strings = {});

/// The OpenAPI 3.1 description of every route.
const std::string& openapi_json();
/// The search page served at GET /.
const std::string& search_page_html();

}  // namespace blockrank

#endif  // BLOCKRANK_HTTP_API_H_
