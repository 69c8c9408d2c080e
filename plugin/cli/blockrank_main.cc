// SPDX-License-Identifier: Apache-2.0
// The `blockrank` binary: one entry point, one subcommand per job. Components register their
// subcommands here; `blockrank help` lists them and `blockrank <cmd> --help` shows every flag with
// its default.
#include <cstdio>
#include <string>

#include "plugin/base/cli_command.h"
#include "plugin/cli/commands.h"

#include <CLI/CLI.hpp>

int main(int argc, char** argv) {
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
