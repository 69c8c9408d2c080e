// SPDX-License-Identifier: Apache-2.0
// `blockrank forward`: runs one full forward pass and writes every intermediate the parity tests
// compare against Hugging Face: `logits` [T,V], `hidden.{l}` (0 = embeddings .. L = after the final
// norm), `attn.{l}` [heads,T,T] (probabilities, 0 where masked) and, in BlockRank mode,
// `scores.{l}` [N] (the document scores layer l would give). Input JSON: {"input_ids": [...],
// "blocks": [L0, d1.., Lq], "mode": "blockrank" | "causal"} (blocks may be omitted in causal mode).
#include <algorithm>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include "plugin/base/cli_command.h"
#include "ranker/core/model.h"
#include "ranker/core/safetensors.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

namespace blockrank {
namespace {

struct ForwardFlags {
  std::string model;
  std::string input;
  std::string out;
  std::string device = "cpu";
  std::string dtype = "float32";
  int threads = 0;
  int64_t signal_rows = 0;
};

struct ForwardInput {
  std::vector<int64_t> ids;
  std::vector<int64_t> blocks;
  bool blockrank = false;
};

Status read_input(const std::string& path, ForwardInput* in) {
  std::ifstream f(path);
  if (!f) {
    return Status::not_found(path + ": cannot open");
  }
  nlohmann::json j;
  try {
    f >> j;
  } catch (const nlohmann::json::exception& e) {
    return Status::invalid_argument(path + ": not valid JSON: " + e.what());
  }
  try {
    if (!j.is_object() || !j.contains("input_ids") || !j["input_ids"].is_array()) {
      return Status::invalid_argument(path + ": missing array field 'input_ids'");
    }
    for (const auto& v : j["input_ids"]) {
      if (!v.is_number_integer()) {
        return Status::invalid_argument(path + ": field 'input_ids' must hold integers");
      }
      in->ids.push_back(v.get<int64_t>());
    }
    const std::string mode = j.value("mode", std::string("causal"));
    if (mode != "causal" && mode != "blockrank") {
      return Status::invalid_argument(path + ": field 'mode' must be \"causal\" or \"blockrank\"");
    }
    in->blockrank = mode == "blockrank";
    if (j.contains("blocks") && !j["blocks"].is_null()) {
      if (!j["blocks"].is_array()) {
        return Status::invalid_argument(path + ": field 'blocks' must be an array");
      }
      for (const auto& v : j["blocks"]) {
        if (!v.is_number_integer()) {
          return Status::invalid_argument(path + ": field 'blocks' must hold integers");
        }
        in->blocks.push_back(v.get<int64_t>());
      }
    }
    if (in->blockrank && in->blocks.empty()) {
      return Status::invalid_argument(path + ": mode \"blockrank\" needs field 'blocks'");
    }
  } catch (const nlohmann::json::exception& e) {
    return Status::invalid_argument(path + ": " + e.what());
  }
  return Status::ok();
}

Status run_forward(const ForwardFlags& flags) {
  ForwardInput in;
  BLOCKRANK_RETURN_IF_ERROR(read_input(flags.input, &in));
  LoadOptions lo;
  try {
    lo.device = c10::Device(flags.device);
  } catch (const c10::Error& e) {
    return Status::invalid_argument("--device '" + flags.device +
                                    "': " + e.what_without_backtrace());
  }
  if (flags.dtype == "float32") {
    lo.dtype = at::kFloat;
  } else if (flags.dtype == "bfloat16") {
    lo.dtype = at::kBFloat16;
  } else {
    return Status::invalid_argument("--dtype must be float32 or bfloat16");
  }
  if (flags.threads > 0) {
    at::set_num_threads(flags.threads);
  }
  std::unique_ptr<Model> model;
  BLOCKRANK_RETURN_IF_ERROR(Model::load(flags.model, lo, &model));
  ForwardRequest req;
  req.logits = req.hidden = req.attention = true;
  req.scores = in.blockrank;
  req.signal_rows = flags.signal_rows > 0 ? flags.signal_rows : model->settings().signal_rows;
  BlockLayout layout;
  layout.block_lengths = in.blocks;
  layout.query_position_offset = model->settings().query_position_offset;
  BLOCKRANK_ASSIGN_OR_RETURN(ForwardResult r,
                             model->forward(in.ids, in.blockrank ? &layout : nullptr, req));
  std::vector<std::pair<std::string, at::Tensor>> out;
  out.emplace_back("logits", r.logits);
  for (size_t l = 0; l < r.hidden.size(); ++l) {
    out.emplace_back("hidden." + std::to_string(l), r.hidden[l]);
  }
  for (size_t l = 0; l < r.attention.size(); ++l) {
    out.emplace_back("attn." + std::to_string(l), r.attention[l]);
  }
  for (size_t l = 0; l < r.scores.size(); ++l) {
    out.emplace_back("scores." + std::to_string(l), r.scores[l]);
  }
  return write_safetensors(flags.out, out, {{"format", "pt"}});
}

}  // namespace

void add_forward_command(CLI::App& app, CommandContext& ctx) {
  auto flags = std::make_shared<ForwardFlags>();
  CLI::App* cmd = app.add_subcommand(
      "forward",
      "Run one model forward (causal or BlockRank) and write logits, hidden states, attention maps "
      "and per-layer document scores to a safetensors file (HF parity checks)");
  cmd->add_option("--model", flags->model, "Model directory (config.json + safetensors)")
      ->required();
  cmd->add_option(
         "--input", flags->input,
         "Input JSON {\"input_ids\": [...], \"blocks\": [...], \"mode\": \"blockrank\"|\"causal\"}")
      ->required();
  cmd->add_option("--out", flags->out, "Output .safetensors file")->required();
  cmd->add_option("--device", flags->device, "Device (cpu, cuda, cuda:N)")->capture_default_str();
  cmd->add_option("--dtype", flags->dtype, "Compute dtype (float32, bfloat16)")
      ->capture_default_str();
  cmd->add_option("--threads", flags->threads, "CPU intra-op threads (0 = all cores)")
      ->capture_default_str();
  cmd->add_option("--signal-rows", flags->signal_rows,
                  "Signal rows for scores (0 = blockrank.json, default 2)")
      ->capture_default_str();
  cmd->callback([flags, &ctx]() {
    ForwardFlags f = *flags;
    if (f.threads <= 0) {
      f.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    }
    ctx.exit_code = report_status("forward", run_forward(f));
  });
}

}  // namespace blockrank
