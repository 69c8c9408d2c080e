// SPDX-License-Identifier: Apache-2.0
// The registry of subcommands compiled into this build.
#ifndef BLOCKRANK_CLI_COMMANDS_H_
#define BLOCKRANK_CLI_COMMANDS_H_

#include "plugin/base/cli_command.h"

namespace blockrank {

void add_index_command(CLI::App& app, CommandContext& ctx);
void add_search_command(CLI::App& app, CommandContext& ctx);
void add_eval_command(CLI::App& app, CommandContext& ctx);
void add_mine_command(CLI::App& app, CommandContext& ctx);  // indexer: training data from BM25
void add_serve_command(CLI::App& app, CommandContext& ctx);
void add_tokenize_command(CLI::App& app, CommandContext& ctx);
void add_cache_command(CLI::App& app, CommandContext& ctx);    // ranker/kv_cache
void add_forward_command(CLI::App& app, CommandContext& ctx);  // ranker/core (LibTorch builds only)
void add_rerank_command(CLI::App& app, CommandContext& ctx);   // ranker/core (LibTorch builds only)
void add_train_command(CLI::App& app, CommandContext& ctx);    // training (LibTorch builds only)

/// Commands that need LibTorch; defined in the torch module (torch_module.cc).
void add_torch_commands(CLI::App& app, CommandContext& ctx);

/// Adds every subcommand. The LibTorch ones are registered from the dlopen()ed module when argv
/// names one of them, and as light stubs (listed by `help`) otherwise.
void add_all_commands(CLI::App& app, CommandContext& ctx, int argc, char** argv);

}  // namespace blockrank

#endif  // BLOCKRANK_CLI_COMMANDS_H_
