// SPDX-License-Identifier: Apache-2.0
// The trainable decoder (Llama / Mistral / Qwen2 / Qwen3 family, the shapes ranker/core/model.h
// runs) with a differentiable BlockRank forward in plain ATen autograd.
//
// Parameters are fp32 leaf tensors (requires_grad) named as in a Hugging Face checkpoint, so the
// optimizer, the checkpoint writer and ranker/core's loader agree on names without a mapping. The
// forward casts them to the compute dtype (bf16 on CUDA: "fp32 master weights"; the cast is part of
// the graph, so gradients arrive in fp32 on the masters).
//
// Batched BlockRank attention (BLOCKRANK.md §2.1, as the reference eager function computes it):
// every block of every sequence is left-padded to the batch's block length H, giving [B, M, H]
// slots, and attention runs as three dense groups with boolean masks:
//  - block 0 (instruction): causal over itself;
//  - the M-2 document blocks at once: keys [block 0 | own block], causal inside its own block;
//  - block M-1 (query + completion): keys = all M·H slots, causal inside its own block.
// Pad keys are masked with a finite large negative (0.7·fp32 min, as the reference), so a pad row
// that sees nothing gets a uniform softmax rather than NaN and no valid row ever sees a pad. This
// costs padding work (a document shorter than H still takes H slots) but needs O(M·H²) mask memory,
// not O((M·H)²), so a Qwen2.5-0.5B shape at 30 × 160 trains with autograd in a few GB.
// Positions follow §2.2 (BlockLayout::positions(); pads get 0). Softmax and RMSNorm run in fp32
// (fp64 when the compute dtype is fp64, used by the finite-difference test).
//
// Thread-safety: none; one trainer owns a model.
#ifndef BLOCKRANK_TRAINING_TRAINABLE_MODEL_H_
#define BLOCKRANK_TRAINING_TRAINABLE_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include "blockrank/status.h"
#include "ranker/core/model_config.h"
#include "training/example.h"

namespace blockrank::training {

/// One parameter: its Hugging Face tensor name and the fp32 leaf.
struct NamedParameter {
  std::string name;
  at::Tensor tensor;
};

struct ModelOptions {
  c10::Device device = c10::Device(c10::kCPU);
  /// Compute dtype: fp32 (CPU default), bf16 (CUDA), or fp64 (gradient checks). Masters stay fp32
  /// (fp64 when the compute dtype is fp64).
  c10::ScalarType dtype = c10::kFloat;
};

/// A batch of TrainingExamples in the padded [B, M, H] layout (all examples have the same number
/// of blocks M). Every tensor lives on the model's device.
struct Batch {
  int64_t batch_size = 0;    ///< B
  int64_t num_blocks = 0;    ///< M = N + 2
  int64_t block_length = 0;  ///< H (padded block length)
  int64_t num_tokens = 0;    ///< real (unpadded) tokens in the batch
  at::Tensor input_ids;      ///< [B, M·H] int64, pads 0
  at::Tensor positions;      ///< [B, M·H] int64, §2.2, pads 0
  at::Tensor valid;          ///< [B, M, H] bool
  at::Tensor label_rows;     ///< [L] int64: flat row b·M·H + slot whose logits predict a label
  at::Tensor label_ids;      ///< [L] int64: the target of each label row
  at::Tensor signal_rows;    ///< [B·R] int64: flat rows of the signal tokens (R per example)
  at::Tensor positive;       ///< [B, N] bool: the relevant documents
  int64_t signal_rows_per_example = 2;  ///< R
};

struct CollateOptions {
  /// Signal rows per example: {signal_row-R+1, ..., signal_row}. Default: 2 (BLOCKRANK.md §1.6).
  int64_t signal_rows = 2;
  /// First position of the query block. Default: 16384 (§2.2).
  int64_t query_position_offset = 16384;
  /// H is the longest block rounded up to a multiple of this (tensor-core friendly). Default: 8.
  int64_t pad_multiple = 8;
};

/// Pads `examples` (all with the same number of blocks) into a Batch on `device`. kInvalidArgument
/// naming the example (query_id) when an example is inconsistent: sizes differ, block lengths do
/// not sum to the ids, fewer than 3 blocks, a signal row outside the last block, a positive outside
/// 0..N-1, an id outside [0, vocab_size).
Status collate(const std::vector<const TrainingExample*>& examples,
               const CollateOptions& options,
               int64_t vocab_size,
               c10::Device device,
               Batch* out);

/// What forward() returns.
struct ForwardOutput {
  /// [L, V] logits (fp32; fp64 for an fp64 model) of the label rows only; undefined unless asked.
  at::Tensor label_logits;
  /// [B, Hq, R, N·H] pre-softmax attention logits (1/sqrt(D) scaled, fp32/fp64) of the signal rows
  /// over the document slots at the aux layer; pad slots hold a large negative. Undefined unless
  /// asked.
  at::Tensor signal_logits;
};

struct ForwardOptions {
  /// Compute the LM logits of the label rows (runs every layer and the LM head).
  bool lm = true;
  /// 0-based layer whose signal-row logits are returned; -1 for none. When `lm` is false the
  /// forward stops at this layer (only its norm and Q/K run), as attention inference does.
  int64_t aux_layer = -1;
};

class TrainableModel {
 public:
  ~TrainableModel();
  TrainableModel(const TrainableModel&) = delete;
  TrainableModel& operator=(const TrainableModel&) = delete;

  /// Loads config.json, blockrank.json (optional) and the safetensors weights (single or sharded)
  /// from a Hugging Face model directory, as ranker/core's loader does. Errors as Model::load.
  static Status load(const std::string& dir,
                     const ModelOptions& options,
                     std::unique_ptr<TrainableModel>* out);

  /// A randomly initialised model of `config` (HF init: N(0, 0.02²) matrices and embeddings, zero
  /// biases, unit norms), drawn on the CPU from `seed` so every device gets the same weights.
  /// `config_json` is the config.json text written into checkpoints.
  static Status create_random(const ModelConfig& config,
                              const std::string& config_json,
                              const BlockRankSettings& settings,
                              const ModelOptions& options,
                              uint64_t seed,
                              std::unique_ptr<TrainableModel>* out);

  const ModelConfig& config() const;
  const BlockRankSettings& settings() const;
  BlockRankSettings& mutable_settings();
  const ModelOptions& options() const;
  /// The parameters in a fixed order (embedding, layers, final norm, LM head when untied).
  const std::vector<NamedParameter>& parameters() const;
  int64_t num_parameters() const;

  /// The differentiable BlockRank forward over a collated batch. kInvalidArgument for a bad
  /// aux_layer; kInternal/kResourceExhausted wrap ATen errors (out of memory included).
  StatusOr<ForwardOutput> forward(const Batch& batch, const ForwardOptions& options) const;

  /// Writes a Hugging Face model directory into `dir` (created if needed): config.json (with the
  /// saved dtype), blockrank.json (settings()), model.safetensors, or shards of at most
  /// `max_shard_bytes` plus model.safetensors.index.json. `dtype` is fp32 or bf16.
  Status save_pretrained(const std::string& dir,
                         c10::ScalarType dtype,
                         int64_t max_shard_bytes) const;

  /// Replaces the parameter values (no_grad copy) from `tensors` by name; every parameter must be
  /// present with its shape. kInvalidArgument/kNotFound otherwise.
  Status load_parameters(const std::vector<std::pair<std::string, at::Tensor>>& tensors);

  struct Impl;

 private:
  TrainableModel();
  std::unique_ptr<Impl> impl_;
};

/// Writes `tensors` as `dir`/`stem`.safetensors, or as shards `stem`-0000k-of-0000n.safetensors of
/// at most `max_shard_bytes` each plus `stem`.safetensors.index.json (HF's layout) when larger.
Status write_sharded_safetensors(const std::string& dir,
                                 const std::string& stem,
                                 const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                                 int64_t max_shard_bytes);

/// Reads every tensor written by write_sharded_safetensors (either layout) into CPU tensors.
Status read_sharded_safetensors(const std::string& dir,
                                const std::string& stem,
                                std::vector<std::pair<std::string, at::Tensor>>* tensors);

}  // namespace blockrank::training

#endif  // BLOCKRANK_TRAINING_TRAINABLE_MODEL_H_
