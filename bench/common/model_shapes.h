// SPDX-License-Identifier: Apache-2.0
// The model shapes the benchmarks run with random weights (Model::create_random), defined once so
// every benchmark and docs/BENCHMARKS.md table means the same model. Values are the published
// Hugging Face config.json fields of Qwen/Qwen2.5-0.5B-Instruct and
// mistralai/Mistral-7B-Instruct-v0.3.
#ifndef BLOCKRANK_BENCH_COMMON_MODEL_SHAPES_H_
#define BLOCKRANK_BENCH_COMMON_MODEL_SHAPES_H_

#include "ranker/core/model_config.h"

namespace blockrank::bench {

/// Qwen2.5-0.5B: 24 layers, hidden 896, 14 query / 2 KV heads of 64, QKV biases, tied embeddings.
inline ModelConfig qwen25_05b_shape() {
  ModelConfig c;
  c.arch = Architecture::kQwen2;
  c.vocab_size = 151936;
  c.hidden_size = 896;
  c.intermediate_size = 4864;
  c.num_layers = 24;
  c.num_heads = 14;
  c.num_kv_heads = 2;
  c.head_dim = 64;
  c.rope_theta = 1000000.0;
  c.rms_norm_eps = 1e-6;
  c.tie_word_embeddings = true;
  c.qkv_bias = true;
  return c;
}

/// Mistral-7B-v0.3: 32 layers, hidden 4096, 32 query / 8 KV heads of 128, SwiGLU 14336.
inline ModelConfig mistral7b_shape() {
  ModelConfig c;
  c.arch = Architecture::kMistral;
  c.vocab_size = 32768;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_layers = 32;
  c.num_heads = 32;
  c.num_kv_heads = 8;
  c.head_dim = 128;
  c.rope_theta = 1000000.0;
  c.rms_norm_eps = 1e-5;
  return c;
}

}  // namespace blockrank::bench

#endif  // BLOCKRANK_BENCH_COMMON_MODEL_SHAPES_H_
