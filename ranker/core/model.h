// SPDX-License-Identifier: Apache-2.0
// The decoder-only transformer (Llama / Mistral / Qwen2 / Qwen3 family) in ATen, with two attention
// layouts:
//  - causal: ordinary causal attention, positions 0..T-1 (parity with HF);
//  - BlockRank (BLOCKRANK.md §2.1/§2.2): blocks [instruction, doc_1..doc_N, query]. The instruction
//  is causal;
//    each document sees the whole instruction and itself causally; the query block sees everything
//    before it and itself causally. Positions: instruction 0..L0-1, every document L0.., query
//    block from the offset (16384). Blocks are ragged: each block's attention is computed over
//    exactly its visible keys, so there is no padding work, and valid-token results equal the
//    padded reference (§9.7).
// GQA indexes KV head h / (Hq/Hkv) by grouping query heads (no K/V copies per head). RMSNorm and
// softmax run in fp32 whatever the compute dtype, as HF does. The code is device-agnostic: tensors
// live where the model was loaded. Internal header (ATen types); components outside ranker/core use
// ranker.h.
//
// Thread-safety: a loaded Model is immutable; forward()/score_documents() may run concurrently.
#ifndef BLOCKRANK_RANKER_CORE_MODEL_H_
#define BLOCKRANK_RANKER_CORE_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include "blockrank/status.h"
#include "ranker/core/model_config.h"

namespace blockrank {

/// The BlockRank block structure of one sequence.
struct BlockLayout {
  /// [L0 (instruction), len(doc_1), ..., len(doc_N), Lq (query block)]; at least 3 blocks, all
  /// >= 1.
  std::vector<int64_t> block_lengths;
  /// First position of the query block (BLOCKRANK.md §2.2). Default: 16384.
  int64_t query_position_offset = 16384;

  int64_t num_tokens() const;
  int64_t num_documents() const { return static_cast<int64_t>(block_lengths.size()) - 2; }
  /// Positions per §2.2: instruction 0..L0-1, each document L0..L0+len-1, query block
  /// offset..offset+Lq-1.
  std::vector<int64_t> positions() const;
  /// kInvalidArgument unless there are >= 3 blocks, all positive, summing to `num_tokens`, and the
  /// query block holds at least `signal_rows` tokens.
  Status validate(int64_t num_tokens, int64_t signal_rows) const;
};

struct LoadOptions {
  c10::Device device = c10::Device(c10::kCPU);
  /// Compute dtype (weights are converted once at load). fp32 or bf16 (fp16 has no CPU kernels
  /// in 1.13).
  c10::ScalarType dtype = c10::kFloat;
};

/// What forward() should return (each costs memory; the scorer needs none of them).
struct ForwardRequest {
  bool logits = false;  ///< [T, V] fp32.
  bool hidden =
      false;  ///< L+1 x [T, hidden] fp32: 0 = embeddings, L = after the final norm (HF convention).
  bool attention = false;  ///< L x [Hq, T, T] fp32 probabilities, 0 where masked.
  bool scores =
      false;  ///< BlockRank only: L x [N] fp32, the document scores each layer would give.
  int64_t signal_rows = 2;
};

/// What generate() should do: greedy decoding after a BlockRank prompt (BLOCKRANK.md §4.2).
struct GenerateRequest {
  /// Tokens generated at most. Default: 16.
  int64_t max_new_tokens = 16;
  /// Generation stops after emitting any of these ids (e.g. EOS and every token containing "]").
  std::vector<int64_t> stop_ids;
  /// When in [0, num_layers): also return the attention scores of this layer (§4.1) from the
  /// prompt pass, at no extra cost. Default: -1 (none).
  int64_t scoring_layer = -1;
  int64_t signal_rows = 2;
};

struct GenerateResult {
  std::vector<int64_t> tokens;  ///< generated ids (a stop id included when one ended it)
  std::vector<float> scores;    ///< [N] document scores when requested, else empty
};

/// The instruction-prefix K/V of score_documents() (issue 6): block 0 of the BlockRank layout is
/// plain causal at positions 0..L0-1 and every later block attends to all of it, so its per-layer
/// K/V depends only on its own tokens, and any prefix of it is itself a valid K/V of those tokens.
/// Layout of `past` / `*present`: [layers, 2 (k, v), Hkv, tokens, D] in the compute dtype on the
/// model's device, K after RoPE; layers = the scoring layer l* (layers 0..l*-1: layer l* itself
/// only takes the norm and Q/K of the signal rows and document tokens, so block 0's K/V there is
/// never used).
///
/// Row groups: the ATen path computes rows [0, split), [split, L0) and [L0, T) as separate groups
/// (each group's GEMMs over its rows only, attending to the K/V of earlier groups), whether or not
/// anything is cached. Dense BLAS results depend on the row count of the call (OpenBLAS picks
/// different micro-kernels for different M), so this fixed grouping is what makes a cached group
/// bitwise equal to a recomputed one on the CPU. The fused CUDA path computes all missing rows
/// in one group (bf16 rounding differences are within tolerance there).
struct PrefixKv {
  /// Query-independent tokens at the start of block 0 (the instruction text, block-aligned by the
  /// caller); a group boundary. 0 or >= L0: none. Default: 0.
  int64_t split = 0;
  /// K/V of block 0's first `past.size(3)` tokens (<= L0); undefined: nothing cached. Its token
  /// count should be 0, `split` or L0 for bitwise equality with an uncached run.
  at::Tensor past;
  /// When non-null and past covers fewer than L0 tokens, receives the K/V of all L0 tokens of
  /// block 0 (past included), contiguous.
  at::Tensor* present = nullptr;
};

struct ForwardResult {
  at::Tensor logits;
  std::vector<at::Tensor> hidden;
  std::vector<at::Tensor> attention;
  std::vector<at::Tensor> scores;
};

class Model {
 public:
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  /// Loads config.json, blockrank.json (optional) and the safetensors weights (single file or
  /// sharded with model.safetensors.index.json) from `dir`. Errors name the file and field/tensor:
  /// kNotFound (missing file or tensor), kInvalidArgument (bad JSON, wrong shape), kCorruption
  /// (truncated/malformed safetensors), kUnimplemented (unsupported architecture/feature/dtype).
  static Status load(const std::string& dir,
                     const LoadOptions& options,
                     std::unique_ptr<Model>* out);

  /// A model of `config`'s shape with random weights (N(0, 1/fan_in) matrices, unit norms), for
  /// benchmarks and tests that need a realistic size without a checkpoint. kInvalidArgument for an
  /// inconsistent config.
  static Status create_random(const ModelConfig& config,
                              const BlockRankSettings& settings,
                              const LoadOptions& options,
                              uint64_t seed,
                              std::unique_ptr<Model>* out);

  const ModelConfig& config() const;
  const BlockRankSettings& settings() const;
  const LoadOptions& options() const;

  /// Full forward. `layout` == nullptr: causal attention, positions 0..T-1; else BlockRank
  /// attention.
  StatusOr<ForwardResult> forward(const std::vector<int64_t>& input_ids,
                                  const BlockLayout* layout,
                                  const ForwardRequest& request) const;

  /// Reference forward with an explicit dense visibility mask [T, T] (bool, row = query token) and
  /// explicit positions; `layout` (optional) only tells which rows/columns the scores use. For
  /// tests.
  StatusOr<ForwardResult> forward_dense(const std::vector<int64_t>& input_ids,
                                        const std::vector<int64_t>& positions,
                                        const at::Tensor& visible,
                                        const BlockLayout* layout,
                                        const ForwardRequest& request) const;

  /// Attention inference (BLOCKRANK.md §4.1): layers 0..layer-1 in full, then at `layer` only the
  /// norm, Q for the signal rows and K for the document tokens; no later layers, no LM head.
  /// Returns [N] fp32 scores (they sum to 1 per query).
  /// With `prefix`: block 0's first past.size(3) tokens are not computed (their cached K/V is used
  /// in each layer) and, on request, block 0's K/V is returned (see PrefixKv). kInvalidArgument
  /// for a past whose shape does not match (layers = `layer`, this model's Hkv and D, at most L0
  /// tokens) or whose dtype/device differ from the model's.
  StatusOr<std::vector<float>> score_documents(const std::vector<int64_t>& input_ids,
                                               const BlockLayout& layout,
                                               int64_t layer,
                                               int64_t signal_rows,
                                               const PrefixKv* prefix = nullptr) const;

  /// Digest of the weights: Model::load hashes each safetensors file's header, size and four
  /// 64 KiB samples of its data (plus the index); create_random hashes the config and seed. For
  /// the KV-cache fingerprint.
  const std::string& weights_digest() const;

  /// True when score_documents() runs the fused CUDA bf16 layer loop (its values round
  /// differently from the ATen loop's; the KV-cache fingerprint tells them apart).
  bool uses_fused_layers() const;

  /// Greedy decoding continuing the BlockRank prompt `input_ids` (§4.2): the prompt runs once
  /// with BlockRank attention, keeping every layer's K/V; each generated token belongs to the
  /// query block, so it attends to all earlier tokens and takes the next query-block position
  /// (offset + Lq, offset + Lq + 1, ...). kInvalidArgument as score_documents().
  StatusOr<GenerateResult> generate(const std::vector<int64_t>& input_ids,
                                    const BlockLayout& layout,
                                    const GenerateRequest& request) const;

  struct Impl;

 private:
  Model();
  std::unique_ptr<Impl> impl_;
};

/// BLOCKRANK.md §3.2 steps 2-4 on pre-softmax, 1/sqrt(D)-scaled logits [Hq, R, T_docs] (document
/// columns only): softmax over all document columns in fp32, mean over heads and rows, sum per
/// document -> [N] fp32.
at::Tensor document_scores_from_logits(const at::Tensor& doc_logits,
                                       const std::vector<int64_t>& doc_lengths);

/// The dense [T, T] bool visibility of a BlockRank layout (§2.1), for the reference path and tests.
at::Tensor blockrank_visibility(const BlockLayout& layout, c10::Device device);

}  // namespace blockrank

#endif  // BLOCKRANK_RANKER_CORE_MODEL_H_
