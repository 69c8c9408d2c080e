// SPDX-License-Identifier: Apache-2.0
// Subcommand registry. Commands that need LibTorch live in a module (torch_module.cc) that is
// loaded only when one of them is named on the command line, so the other commands start fast.
#include "plugin/cli/commands.h"

#include <cstring>
#include <string>

#include "plugin/base/module_loader.h"

#include <CLI/CLI.hpp>

namespace blockrank {

namespace {

struct TorchCommand {
  const char* name;
  const char* description;
};
// Keep in sync with add_torch_commands(); listed here so `blockrank help` shows them without
// loading LibTorch.
constexpr TorchCommand kTorchCommands[] = {
    {"forward", "Run a model forward pass and dump logits/hidden states/attention (parity checks)"},
    {"rerank", "Rerank candidate documents with a BlockRank model and report nDCG@10/P@1/MRR@10"},
    {"train", "Fine-tune a BlockRank reranker from a config JSON (--resume continues a run)"},
};

// Loads the LibTorch module and lets it register the real subcommands.
bool load_torch_module(CLI::App& app, CommandContext& ctx, std::string* error) {
  void* sym = nullptr;
  const Status st = find_torch_module_symbol("blockrank_add_torch_commands", &sym);
  if (!st.is_ok()) {
    *error = st.message();
    return false;
  }
  using AddFn = void (*)(CLI::App*, CommandContext*);
  reinterpret_cast<AddFn>(sym)(&app, &ctx);
  return true;
}

}  // namespace

void add_all_commands(CLI::App& app, CommandContext& ctx, int argc, char** argv) {
  add_index_command(app, ctx);
  add_search_command(app, ctx);
  add_eval_command(app, ctx);
  add_mine_command(app, ctx);
  add_serve_command(app, ctx);
  add_tokenize_command(app, ctx);
  add_cache_command(app, ctx);
  // The first non-option argument names the subcommand.
  const char* wanted = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (argv[i][0] != '-') {
      wanted = argv[i];
      break;
    }
  }
  bool needs_torch = false;
  for (const TorchCommand& c : kTorchCommands) {
    if (wanted != nullptr && std::strcmp(wanted, c.name) == 0) {
      needs_torch = true;
    }
  }
  std::string error;
  if (needs_torch && load_torch_module(app, ctx, &error)) {
    return;
  }
  for (const TorchCommand& c : kTorchCommands) {
    CLI::App* stub = app.add_subcommand(c.name, c.description);
    stub->allow_extras();
    stub->prefix_command();
    const std::string name = c.name;
    stub->callback([name, error, &ctx]() {
      ctx.exit_code = report_status(name, Status::unimplemented(error));
    });
  }
}

}  // namespace blockrank
