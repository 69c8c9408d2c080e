// SPDX-License-Identifier: Apache-2.0
#include "blockrank/fusion.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace blockrank {

namespace {

void min_max_normalise(std::vector<double>* values) {
  if (values->empty()) {
    return;
  }
  const auto [lo, hi] = std::minmax_element(values->begin(), values->end());
  const double low = *lo;
  const double range = *hi - low;
  for (double& v : *values) {
    v = range > 0 ? (v - low) / range : 0.0;
  }
}

}  // namespace

Status FusionOptions::validate() const {
  if (!std::isfinite(alpha) || alpha < 0 || alpha > 1) {
    return Status::invalid_argument("fusion alpha must be in [0, 1], got " + std::to_string(alpha));
  }
  return Status::ok();
}

StatusOr<FusionOptions> parse_fusion(std::string_view text) {
  FusionOptions options;
  if (text == "rerank") {
    options.method = FusionMethod::kRerank;
    return options;
  }
  constexpr std::string_view kInterpolate = "interpolate";
  if (text.substr(0, kInterpolate.size()) != kInterpolate) {
    return Status::invalid_argument("fusion: expected 'rerank' or 'interpolate[:ALPHA]', got '" +
                                    std::string(text) + "'");
  }
  options.method = FusionMethod::kInterpolate;
  std::string_view rest = text.substr(kInterpolate.size());
  if (!rest.empty()) {
    if (rest[0] != ':' || rest.size() == 1) {
      return Status::invalid_argument("fusion: expected 'interpolate:ALPHA', got '" +
                                      std::string(text) + "'");
    }
    const std::string number(rest.substr(1));
    char* end = nullptr;
    options.alpha = std::strtod(number.c_str(), &end);
    if (end != number.c_str() + number.size()) {
      return Status::invalid_argument("fusion: ALPHA in '" + std::string(text) +
                                      "' is not a number");
    }
  }
  BLOCKRANK_RETURN_IF_ERROR(options.validate());
  return options;
}

std::string fusion_name(const FusionOptions& options) {
  if (options.method == FusionMethod::kRerank) {
    return "rerank";
  }
  char buf[64];
  std::snprintf(buf, sizeof(buf), "interpolate:%g", options.alpha);
  return buf;
}

StatusOr<std::vector<double>> fuse_scores(const std::vector<double>& first_stage,
                                          const std::vector<double>& rerank,
                                          const FusionOptions& options) {
  BLOCKRANK_RETURN_IF_ERROR(options.validate());
  if (first_stage.size() != rerank.size()) {
    return Status::invalid_argument("fusion: " + std::to_string(first_stage.size()) +
                                    " first-stage scores but " + std::to_string(rerank.size()) +
                                    " reranker scores");
  }
  for (size_t i = 0; i < rerank.size(); ++i) {
    if (!std::isfinite(first_stage[i]) || !std::isfinite(rerank[i])) {
      return Status::invalid_argument("fusion: candidate " + std::to_string(i) +
                                      " has a score that is not finite");
    }
  }
  if (options.method == FusionMethod::kRerank) {
    return rerank;
  }
  std::vector<double> bm25 = first_stage;
  std::vector<double> model = rerank;
  min_max_normalise(&bm25);
  min_max_normalise(&model);
  std::vector<double> fused(bm25.size());
  for (size_t i = 0; i < fused.size(); ++i) {
    fused[i] = options.alpha * bm25[i] + (1 - options.alpha) * model[i];
  }
  return fused;
}

}  // namespace blockrank
