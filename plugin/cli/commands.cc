// SPDX-License-Identifier: Apache-2.0
#include "plugin/cli/commands.h"

namespace blockrank {

void add_all_commands(CLI::App& app, CommandContext& ctx) {
  add_index_command(app, ctx);
  add_search_command(app, ctx);
  add_eval_command(app, ctx);
  add_tokenize_command(app, ctx);
#ifdef BLOCKRANK_HAVE_TORCH
  add_forward_command(app, ctx);
#endif
}

}  // namespace blockrank
