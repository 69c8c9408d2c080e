// SPDX-License-Identifier: Apache-2.0
// How components add subcommands to the one `blockrank` binary. Each component exposes
// `void add_<name>_command(CLI::App& app, CommandContext& ctx)`; the subcommand's callback stores
// its exit code in ctx. Every flag is declared with its default so `--help` shows it.
#ifndef BLOCKRANK_BASE_CLI_COMMAND_H_
#define BLOCKRANK_BASE_CLI_COMMAND_H_

#include <memory>
#include <string>

#include "blockrank/status.h"
#include "plugin/base/logging.h"

namespace CLI {
class App;
}  // namespace CLI

namespace blockrank {

struct CommandContext {
  int exit_code = 0;
  std::shared_ptr<Logger> logger = Logger::stderr_logger();
};

/// Prints "blockrank <cmd>: <status>" to stderr and returns the exit code for it (0 when ok;
/// 2 for invalid input, 1 otherwise, 130 when cancelled).
int report_status(const std::string& command, const Status& status);

}  // namespace blockrank

#endif  // BLOCKRANK_BASE_CLI_COMMAND_H_
