// SPDX-License-Identifier: Apache-2.0
// libFuzzer harness for the HTTP request parsers: any byte string must give a Status (ok or a clear
// error), never a crash, a hang or undefined behaviour (run under ASan/UBSan).
#include <cstddef>
#include <cstdint>
#include <string>

#include "http/api.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  blockrank::ApiLimits limits;
  limits.max_documents = 64;
  blockrank::SearchApiRequest search;
  blockrank::parse_search_request(body, limits, &search).ignore_error();
  blockrank::RerankApiRequest rerank;
  blockrank::parse_rerank_request(body, limits, &rerank).ignore_error();
  blockrank::DocumentsApiRequest docs;
  blockrank::parse_documents_request(body, limits, &docs).ignore_error();
  return 0;
}
