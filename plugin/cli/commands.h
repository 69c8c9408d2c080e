// SPDX-License-Identifier: Apache-2.0
// The registry of subcommands compiled into this build.
#ifndef BLOCKRANK_CLI_COMMANDS_H_
#define BLOCKRANK_CLI_COMMANDS_H_

#include "plugin/base/cli_command.h"

namespace blockrank {

void add_index_command(CLI::App& app, CommandContext& ctx);
void add_search_command(CLI::App& app, CommandContext& ctx);
void add_eval_command(CLI::App& app, CommandContext& ctx);
void add_tokenize_command(CLI::App& app, CommandContext& ctx);
void add_forward_command(CLI::App& app, CommandContext& ctx);  // ranker/core (LibTorch builds only)

/// Adds every subcommand this build has (ranker commands only when LibTorch was found).
void add_all_commands(CLI::App& app, CommandContext& ctx);

}  // namespace blockrank

#endif  // BLOCKRANK_CLI_COMMANDS_H_
