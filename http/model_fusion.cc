// SPDX-License-Identifier: Apache-2.0
// model_fusion() (http/api.h): the fusion a model directory's blockrank.json recommends. Apart from
// api.cc so the request parsers stay free of file access (tests/fuzz builds them alone).
#include <unistd.h>

#include <string>

#include "http/api.h"
#include "plugin/base/line_reader.h"

#include <nlohmann/json.hpp>

namespace blockrank {

using json = nlohmann::json;

StatusOr<FusionOptions> model_fusion(const std::string& model_dir) {
  const std::string path = model_dir + "/blockrank.json";
  std::string text;
  if (::access(path.c_str(), F_OK) != 0) {
    return FusionOptions();  // no blockrank.json: the defaults, pure rerank
  }
  BLOCKRANK_RETURN_IF_ERROR(read_file(path, &text));
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    return Status::invalid_argument(path + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) {
    return Status::invalid_argument(path + ": top level must be an object");
  }
  const auto it = j.find("fusion");
  if (it == j.end() || it->is_null()) {
    return FusionOptions();  // no recommendation: pure rerank
  }
  if (!it->is_string()) {
    return Status::invalid_argument(path + ": field 'fusion' must be a string, got " +
                                    it->type_name());
  }
  StatusOr<FusionOptions> f = parse_fusion(it->get<std::string>());
  if (!f.is_ok()) {
    return Status::invalid_argument(path + ": field 'fusion': " + f.status().message());
  }
  return f;
}

}  // namespace blockrank
