// SPDX-License-Identifier: Apache-2.0
// config.json / blockrank.json parsing and validation. See model_config.h.
#include "ranker/core/model_config.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>

namespace blockrank {
namespace {

using nlohmann::json;

Status read_file(const std::string& path, std::string* text) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    return Status::not_found(path + ": cannot open");
  }
  std::ostringstream ss;
  ss << f.rdbuf();
  *text = ss.str();
  return Status::ok();
}

// Field readers: absent -> fallback (or error when required); wrong type -> kInvalidArgument naming
// it.
Status get_int(
    const json& j, const std::string& src, const char* key, bool required, int64_t* out) {
  if (!j.contains(key) || j[key].is_null()) {
    return required ? Status::invalid_argument(src + ": missing field '" + key + "'")
                    : Status::ok();
  }
  if (!j[key].is_number_integer()) {
    return Status::invalid_argument(src + ": field '" + key + "' must be an integer");
  }
  *out = j[key].get<int64_t>();
  return Status::ok();
}

Status get_double(const json& j, const std::string& src, const char* key, double* out) {
  if (!j.contains(key) || j[key].is_null()) {
    return Status::ok();
  }
  if (!j[key].is_number()) {
    return Status::invalid_argument(src + ": field '" + key + "' must be a number");
  }
  *out = j[key].get<double>();
  return Status::ok();
}

Status get_bool(const json& j, const std::string& src, const char* key, bool* out) {
  if (!j.contains(key) || j[key].is_null()) {
    return Status::ok();
  }
  if (!j[key].is_boolean()) {
    return Status::invalid_argument(src + ": field '" + key + "' must be a boolean");
  }
  *out = j[key].get<bool>();
  return Status::ok();
}

// RoPE variants other than the default change the frequencies; computing them as default would be
// wrong.
Status check_rope_type(const json& rope, const std::string& src, const char* field) {
  if (rope.is_null()) {
    return Status::ok();
  }
  if (!rope.is_object()) {
    return Status::invalid_argument(src + ": field '" + field + "' must be an object or null");
  }
  std::string type = "default";
  for (const char* key : {"rope_type", "type"}) {
    if (rope.contains(key) && rope[key].is_string()) {
      type = rope[key].get<std::string>();
    }
  }
  if (type != "default") {
    return Status::unimplemented(src + ": field '" + field + "': rope_type '" + type +
                                 "' is not supported (only the default rotary embedding)");
  }
  if (rope.contains("partial_rotary_factor") && rope["partial_rotary_factor"].is_number() &&
      rope["partial_rotary_factor"].get<double>() != 1.0) {
    return Status::unimplemented(src + ": field '" + std::string(field) +
                                 ".partial_rotary_factor' != 1 is not supported");
  }
  return Status::ok();
}

}  // namespace

const char* architecture_name(Architecture arch) {
  switch (arch) {
    case Architecture::kLlama:
      return "llama";
    case Architecture::kMistral:
      return "mistral";
    case Architecture::kQwen2:
      return "qwen2";
    case Architecture::kQwen3:
      return "qwen3";
  }
  return "unknown";
}

StatusOr<ModelConfig> parse_model_config(const std::string& json_text, const std::string& src) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    return Status::invalid_argument(src + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) {
    return Status::invalid_argument(src + ": top level must be an object");
  }
  try {
    ModelConfig c;
    std::string model_type;
    if (j.contains("model_type") && j["model_type"].is_string()) {
      model_type = j["model_type"].get<std::string>();
    } else if (j.contains("architectures") && j["architectures"].is_array() &&
               !j["architectures"].empty() && j["architectures"][0].is_string()) {
      const std::string a = j["architectures"][0].get<std::string>();
      model_type = a == "LlamaForCausalLM"     ? "llama"
                   : a == "MistralForCausalLM" ? "mistral"
                   : a == "Qwen2ForCausalLM"   ? "qwen2"
                   : a == "Qwen3ForCausalLM"   ? "qwen3"
                                               : a;
    } else {
      return Status::invalid_argument(src + ": missing field 'model_type'");
    }
    if (model_type == "llama") {
      c.arch = Architecture::kLlama;
    } else if (model_type == "mistral") {
      c.arch = Architecture::kMistral;
    } else if (model_type == "qwen2") {
      c.arch = Architecture::kQwen2;
    } else if (model_type == "qwen3") {
      c.arch = Architecture::kQwen3;
    } else {
      return Status::unimplemented(src + ": field 'model_type': architecture '" + model_type +
                                   "' is not supported (llama, mistral, qwen2, qwen3)");
    }
    BLOCKRANK_RETURN_IF_ERROR(get_int(j, src, "vocab_size", true, &c.vocab_size));
    BLOCKRANK_RETURN_IF_ERROR(get_int(j, src, "hidden_size", true, &c.hidden_size));
    BLOCKRANK_RETURN_IF_ERROR(get_int(j, src, "intermediate_size", true, &c.intermediate_size));
    BLOCKRANK_RETURN_IF_ERROR(get_int(j, src, "num_hidden_layers", true, &c.num_layers));
    BLOCKRANK_RETURN_IF_ERROR(get_int(j, src, "num_attention_heads", true, &c.num_heads));
    c.num_kv_heads = c.num_heads;
    BLOCKRANK_RETURN_IF_ERROR(get_int(j, src, "num_key_value_heads", false, &c.num_kv_heads));
    for (auto [name, v] : {std::pair<const char*, int64_t>{"vocab_size", c.vocab_size},
                           {"hidden_size", c.hidden_size},
                           {"intermediate_size", c.intermediate_size},
                           {"num_hidden_layers", c.num_layers},
                           {"num_attention_heads", c.num_heads},
                           {"num_key_value_heads", c.num_kv_heads}}) {
      if (v <= 0) {
        return Status::invalid_argument(src + ": field '" + name + "' must be positive");
      }
    }
    if (c.num_heads % c.num_kv_heads != 0) {
      return Status::invalid_argument(
          src + ": 'num_attention_heads' must be a multiple of 'num_key_value_heads'");
    }
    c.head_dim = c.hidden_size / c.num_heads;
    BLOCKRANK_RETURN_IF_ERROR(get_int(j, src, "head_dim", false, &c.head_dim));
    if (c.head_dim <= 0 || c.head_dim % 2 != 0) {
      return Status::invalid_argument(src + ": field 'head_dim' must be positive and even");
    }
    BLOCKRANK_RETURN_IF_ERROR(get_double(j, src, "rms_norm_eps", &c.rms_norm_eps));
    BLOCKRANK_RETURN_IF_ERROR(get_bool(j, src, "tie_word_embeddings", &c.tie_word_embeddings));
    if (j.contains("hidden_act") && !j["hidden_act"].is_null() &&
        !(j["hidden_act"].is_string() && j["hidden_act"].get<std::string>() == "silu")) {
      return Status::unimplemented(src + ": field 'hidden_act': only 'silu' is supported");
    }
    // rope_theta: top level (transformers 4.x, Mistral's own configs) or inside rope_parameters
    // (5.x).
    bool have_theta = false;
    if (j.contains("rope_theta") && !j["rope_theta"].is_null()) {
      BLOCKRANK_RETURN_IF_ERROR(get_double(j, src, "rope_theta", &c.rope_theta));
      have_theta = true;
    }
    if (j.contains("rope_parameters") && !j["rope_parameters"].is_null()) {
      const json& rp = j["rope_parameters"];
      BLOCKRANK_RETURN_IF_ERROR(check_rope_type(rp, src, "rope_parameters"));
      if (rp.contains("rope_theta") && !rp["rope_theta"].is_null()) {
        BLOCKRANK_RETURN_IF_ERROR(
            get_double(rp, src + ": rope_parameters", "rope_theta", &c.rope_theta));
        have_theta = true;
      }
    }
    if (j.contains("rope_scaling")) {
      BLOCKRANK_RETURN_IF_ERROR(check_rope_type(j["rope_scaling"], src, "rope_scaling"));
    }
    if (j.contains("partial_rotary_factor") && j["partial_rotary_factor"].is_number() &&
        j["partial_rotary_factor"].get<double>() != 1.0) {
      return Status::unimplemented(src + ": field 'partial_rotary_factor' != 1 is not supported");
    }
    if (!have_theta) {
      c.rope_theta = 10000.0;  // HF's default for every supported architecture's legacy configs.
    }
    if (!(c.rope_theta > 0)) {
      return Status::invalid_argument(src + ": field 'rope_theta' must be positive");
    }
    bool attention_bias = false;
    BLOCKRANK_RETURN_IF_ERROR(get_bool(j, src, "attention_bias", &attention_bias));
    switch (c.arch) {
      case Architecture::kLlama:
      case Architecture::kMistral:
        c.qkv_bias = attention_bias;
        c.o_bias = attention_bias;
        BLOCKRANK_RETURN_IF_ERROR(get_bool(j, src, "mlp_bias", &c.mlp_bias));
        break;
      case Architecture::kQwen2:
        c.qkv_bias = true;  // Qwen2 always has q/k/v biases and no o bias.
        break;
      case Architecture::kQwen3:
        c.qkv_bias = attention_bias;
        c.o_bias = attention_bias;
        c.qk_norm = true;
        break;
    }
    if (c.arch == Architecture::kQwen2 || c.arch == Architecture::kQwen3) {
      bool use_sliding = false;
      BLOCKRANK_RETURN_IF_ERROR(get_bool(j, src, "use_sliding_window", &use_sliding));
      if (use_sliding) {
        return Status::unimplemented(
            src + ": field 'use_sliding_window': sliding-window layers are not supported");
      }
    } else if (c.arch == Architecture::kMistral && j.contains("sliding_window") &&
               !j["sliding_window"].is_null()) {
      int64_t w = 0;
      BLOCKRANK_RETURN_IF_ERROR(get_int(j, src, "sliding_window", false, &w));
      c.sliding_window = w;
    }
    for (const char* key : {"dtype", "torch_dtype"}) {
      if (j.contains(key) && j[key].is_string()) {
        c.torch_dtype = j[key].get<std::string>();
      }
    }
    return c;
  } catch (const json::exception& e) {
    return Status::invalid_argument(src + ": " + e.what());
  }
}

StatusOr<ModelConfig> load_model_config(const std::string& dir) {
  const std::string path = dir + "/config.json";
  std::string text;
  BLOCKRANK_RETURN_IF_ERROR(read_file(path, &text));
  return parse_model_config(text, path);
}

StatusOr<BlockRankSettings> parse_blockrank_settings(const std::string& json_text,
                                                     const std::string& src,
                                                     const ModelConfig& config) {
  BlockRankSettings s;
  json j;
  if (!json_text.empty()) {
    try {
      j = json::parse(json_text);
    } catch (const json::exception& e) {
      return Status::invalid_argument(src + ": not valid JSON: " + e.what());
    }
    if (!j.is_object()) {
      return Status::invalid_argument(src + ": top level must be an object");
    }
  } else {
    j = json::object();
  }
  try {
    BLOCKRANK_RETURN_IF_ERROR(get_int(j, src, "scoring_layer", false, &s.scoring_layer));
    BLOCKRANK_RETURN_IF_ERROR(get_int(j, src, "signal_rows", false, &s.signal_rows));
    BLOCKRANK_RETURN_IF_ERROR(
        get_int(j, src, "query_position_offset", false, &s.query_position_offset));
    BLOCKRANK_RETURN_IF_ERROR(get_int(j, src, "max_block_length", false, &s.max_block_length));
    BLOCKRANK_RETURN_IF_ERROR(get_double(j, src, "temperature", &s.temperature));
    if (j.contains("prompt_template") && !j["prompt_template"].is_null()) {
      if (!j["prompt_template"].is_string()) {
        return Status::invalid_argument(src + ": field 'prompt_template' must be a string");
      }
      s.prompt_template = j["prompt_template"].get<std::string>();
    }
  } catch (const json::exception& e) {
    return Status::invalid_argument(src + ": " + e.what());
  }
  if (s.scoring_layer < 0) {
    s.scoring_layer = std::min<int64_t>(config.num_layers - 1, config.num_layers * 5 / 8);
  }
  if (s.scoring_layer >= config.num_layers) {
    return Status::invalid_argument(
        src + ": field 'scoring_layer' " + std::to_string(s.scoring_layer) +
        " is not below num_hidden_layers " + std::to_string(config.num_layers));
  }
  if (s.signal_rows < 1) {
    return Status::invalid_argument(src + ": field 'signal_rows' must be >= 1");
  }
  if (s.query_position_offset < 0 || s.max_block_length < 1 || !(s.temperature > 0)) {
    return Status::invalid_argument(
        src + ": 'query_position_offset' must be >= 0, 'max_block_length' >= 1, 'temperature' > 0");
  }
  return s;
}

StatusOr<BlockRankSettings> load_blockrank_settings(const std::string& dir,
                                                    const ModelConfig& config) {
  const std::string path = dir + "/blockrank.json";
  std::string text;
  if (!read_file(path, &text).is_ok()) {
    return parse_blockrank_settings("", path, config);  // Optional file: defaults.
  }
  return parse_blockrank_settings(text, path, config);
}

}  // namespace blockrank
