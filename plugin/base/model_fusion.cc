// SPDX-License-Identifier: Apache-2.0
// model_fusion() and resolve_fusion() (blockrank/fusion.h): a model directory's recommended fusion.
// Apart from fusion.cc, which stays free of file access and JSON (the request fuzzer builds it
// alone).
#include <unistd.h>

#include <string>

#include "blockrank/fusion.h"
#include "plugin/base/line_reader.h"

#include <nlohmann/json.hpp>

namespace blockrank {

StatusOr<FusionOptions> model_fusion(const std::string& model_dir) {
  using json = nlohmann::json;
  const std::string path = model_dir + "/blockrank.json";
  if (::access(path.c_str(), F_OK) != 0) {
    return FusionOptions();  // no blockrank.json: the defaults, pure rerank
  }
  std::string text;
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

StatusOr<FusionOptions> resolve_fusion(std::string_view text, const std::string& model_dir) {
  if (text != "model") {
    return parse_fusion(text);
  }
  if (model_dir.empty()) {
    return Status::invalid_argument("fusion 'model' needs a model directory (--model)");
  }
  return model_fusion(model_dir);
}

}  // namespace blockrank
