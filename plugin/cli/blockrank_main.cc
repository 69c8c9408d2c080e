// SPDX-License-Identifier: Apache-2.0
// The `blockrank` binary: one entry point, one subcommand per job. Components register their
// subcommands here; `blockrank help` lists them and `blockrank <cmd> --help` shows every flag with
// its default.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "plugin/base/cli_command.h"
#include "plugin/cli/commands.h"

#include <CLI/CLI.hpp>

int main(int argc, char** argv) {
  // LibTorch's OpenMP workers spin while waiting by default. On a CPU shared with the HTTP threads
  // (or other processes) that spinning steals the cycles the model needs: a 2-layer test model took
  // 1.6 s per query with spinning workers and 0.28 s without on a loaded 2-core machine. Must be
  // set before the LibTorch module (and libgomp) is loaded; an explicit setting is kept.
  ::setenv("OMP_WAIT_POLICY", "PASSIVE", /*overwrite=*/0);
  blockrank::CommandContext ctx;
  CLI::App app{"blockrank: BM25 retrieval with BlockRank in-context reranking"};
  app.name("blockrank");
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show every subcommand's flags");
  auto* help =
      app.add_subcommand("help", "List the subcommands (blockrank <cmd> --help for flags)");
  help->callback([&]() {
    // App::help() would describe the selected subcommand ("help" itself); format the top level.
    std::fputs(
        app.get_formatter()->make_help(&app, "blockrank", CLI::AppFormatMode::Normal).c_str(),
        stdout);
  });
  blockrank::add_all_commands(app, ctx, argc, argv);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return ctx.exit_code;
}
