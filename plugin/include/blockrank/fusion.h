// SPDX-License-Identifier: Apache-2.0
// Score fusion of the first stage (BM25) and the reranker, shared by the CLI (`eval`, `rerank`),
// the HTTP server and the Xapian plugin so that one setting means the same everywhere.
//
//   kRerank:      final = reranker score (pure BlockRank order).
//   kInterpolate: final = alpha * minmax(bm25) + (1 - alpha) * minmax(rerank), each min-max
//                 normalised over the candidate list (a constant list normalises to 0), so that
//                 BM25's unbounded weights and BlockRank's attention mass (which sums to 1) mix on
//                 one scale. alpha = 0 is the reranker's order, alpha = 1 the BM25 order.
//
// Thread-safety: pure functions.
#ifndef BLOCKRANK_FUSION_H_
#define BLOCKRANK_FUSION_H_

#include <string>
#include <string_view>
#include <vector>

#include "blockrank/status.h"

namespace blockrank {

enum class FusionMethod { kRerank, kInterpolate };

struct FusionOptions {
  FusionMethod method = FusionMethod::kRerank;
  /// Weight of the normalised BM25 score for kInterpolate, in [0, 1]. Default: 0.5.
  double alpha = 0.5;

  /// kInvalidArgument when alpha is outside [0, 1] or not finite.
  Status validate() const;
};

/// Parses "rerank" or "interpolate" / "interpolate:ALPHA" (e.g. "interpolate:0.3").
StatusOr<FusionOptions> parse_fusion(std::string_view text);
/// The inverse of parse_fusion ("rerank", "interpolate:0.3").
std::string fusion_name(const FusionOptions& options);

/// The fusion a model directory recommends: the "fusion" field of `model_dir`/blockrank.json
/// ("rerank" or "interpolate:ALPHA", e.g. the BM25 weight a shipped model was tuned with); kRerank
/// when the file or the field is absent (or null). kInvalidArgument naming the file and the field
/// for a file that is not a JSON object or a value parse_fusion rejects; kIoError when the file
/// exists but cannot be read.
StatusOr<FusionOptions> model_fusion(const std::string& model_dir);
/// parse_fusion, plus "model": model_fusion(model_dir) (kInvalidArgument for "model" with an empty
/// model_dir). What `--fusion` means in `blockrank eval`, `rerank` and `serve`.
StatusOr<FusionOptions> resolve_fusion(std::string_view text, const std::string& model_dir);

/// Fused scores, one per candidate, in input order. `first_stage` and `rerank` have one entry per
/// candidate (kInvalidArgument when their sizes differ or a value is not finite).
StatusOr<std::vector<double>> fuse_scores(const std::vector<double>& first_stage,
                                          const std::vector<double>& rerank,
                                          const FusionOptions& options);

}  // namespace blockrank

#endif  // BLOCKRANK_FUSION_H_
