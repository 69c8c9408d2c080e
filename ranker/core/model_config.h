// SPDX-License-Identifier: Apache-2.0
// The model hyper-parameters read from a Hugging Face checkpoint's config.json, and the BlockRank
// settings read from its optional blockrank.json. Only what the forward pass and the scorer need is
// kept; anything the C++ forward would compute differently from the reference (an unknown
// architecture, rope scaling, partial rotary, a non-SiLU activation, sliding-window Qwen layers) is
// refused with kUnimplemented naming the file and field, so a checkpoint never runs silently wrong.
// No LibTorch types here: the prompt builder and the HTTP layer may include this header.
//
// Thread-safety: plain value types.
#ifndef BLOCKRANK_RANKER_CORE_MODEL_CONFIG_H_
#define BLOCKRANK_RANKER_CORE_MODEL_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>

#include "blockrank/status.h"

namespace blockrank {

enum class Architecture { kLlama, kMistral, kQwen2, kQwen3 };

/// Returns "llama", "mistral", "qwen2" or "qwen3".
const char* architecture_name(Architecture arch);

struct ModelConfig {
  Architecture arch = Architecture::kLlama;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;  ///< config "head_dim" when given, else hidden_size / num_heads.
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;  ///< Top-level "rope_theta" or "rope_parameters.rope_theta".
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  ///< Qwen2 always; Llama/Mistral when "attention_bias".
  bool o_bias = false;    ///< Llama/Mistral "attention_bias".
  bool mlp_bias = false;  ///< Llama "mlp_bias".
  bool qk_norm = false;   ///< Qwen3: per-head RMSNorm on q and k before RoPE.
  /// Mistral's sliding window (tokens), when set. Causal sequences longer than it are refused;
  /// BlockRank attention ignores it, as the reference BlockRank attention functions do.
  std::optional<int64_t> sliding_window;
  std::string torch_dtype;  ///< "dtype"/"torch_dtype" as written (informational).
};

/// Parses `dir`/config.json. kNotFound if absent; kInvalidArgument for bad JSON or a
/// missing/ill-typed field; kUnimplemented for an architecture or feature the forward pass does not
/// implement.
StatusOr<ModelConfig> load_model_config(const std::string& dir);
/// The same, from JSON text (`source` names it in messages).
StatusOr<ModelConfig> parse_model_config(const std::string& json_text, const std::string& source);

/// BlockRank inference settings (blockrank.json, every field optional).
struct BlockRankSettings {
  /// 0-based decoder layer whose attention scores documents (HF layer_idx; 20 for Mistral-7B).
  /// Default: num_layers * 5 / 8 (20 of 32), clamped to the model.
  int64_t scoring_layer = -1;
  /// Signal rows: the last `signal_rows` tokens of the query block. Default: 2 (BLOCKRANK.md §1.6
  /// HEAD).
  int64_t signal_rows = 2;
  /// First position of the query block. Default: 16384 (BLOCKRANK.md §2.2).
  int64_t query_position_offset = 16384;
  /// Longest block kept (first tokens). Default: 384 (eval config).
  int64_t max_block_length = 384;
  /// Score temperature τ (only rescales; ranking unchanged). Default: 0.05.
  double temperature = 0.05;
  /// Prompt template name for the prompt builder. Default: "mistral".
  std::string prompt_template = "mistral";
};

/// Reads `dir`/blockrank.json when present (defaults otherwise) and validates it against `config`.
StatusOr<BlockRankSettings> load_blockrank_settings(const std::string& dir,
                                                    const ModelConfig& config);
StatusOr<BlockRankSettings> parse_blockrank_settings(const std::string& json_text,
                                                     const std::string& source,
                                                     const ModelConfig& config);

}  // namespace blockrank

#endif  // BLOCKRANK_RANKER_CORE_MODEL_CONFIG_H_
