// SPDX-License-Identifier: Apache-2.0
// The LibTorch half of the `blockrank` binary, built as a module the binary dlopen()s only when a
// subcommand that needs the model is run. Debian's LibTorch pulls in ~290 shared libraries and
// costs ~0.5–1 s at start-up; `index`, `search` and `eval` should not pay that.
#include "plugin/cli/commands.h"

#include <CLI/CLI.hpp>

extern "C" __attribute__((visibility("default"))) void blockrank_add_torch_commands(
    CLI::App* app, blockrank::CommandContext* ctx) {
  blockrank::add_torch_commands(*app, *ctx);
}

namespace blockrank {

void add_torch_commands(CLI::App& app, CommandContext& ctx) {
  add_forward_command(app, ctx);
  add_rerank_command(app, ctx);
#ifdef BLOCKRANK_HAVE_TRAINING
  add_train_command(app, ctx);
#endif
}

}  // namespace blockrank
