// SPDX-License-Identifier: Apache-2.0
// Subcommand registry. Commands that need LibTorch live in a module (torch_module.cc) that is
// loaded only when one of them is named on the command line, so the other commands start fast.
#include "plugin/cli/commands.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstring>
#include <string>

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
};

std::string self_dir() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) {
    return ".";
  }
  buf[n] = '\0';
  std::string path(buf);
  return path.substr(0, path.rfind('/'));
}

// Loads the LibTorch module and lets it register the real subcommands. Returns false (with a
// message in *error) when the module is missing or broken.
bool load_torch_module(CLI::App& app, CommandContext& ctx, std::string* error) {
  const std::string dir = self_dir();
  const std::string candidates[] = {dir + "/libblockrank_torch_cli.so",
                                    dir + "/../lib/blockrank/libblockrank_torch_cli.so"};
  std::string errors;
  for (const std::string& path : candidates) {
    if (::access(path.c_str(), R_OK) != 0) {
      continue;
    }
    void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      errors += std::string(::dlerror()) + "; ";
      continue;
    }
    using AddFn = void (*)(CLI::App*, CommandContext*);
    auto add = reinterpret_cast<AddFn>(::dlsym(handle, "blockrank_add_torch_commands"));
    if (add == nullptr) {
      errors += path + ": no blockrank_add_torch_commands; ";
      continue;
    }
    add(&app, &ctx);
    return true;
  }
  *error = errors.empty() ? "libblockrank_torch_cli.so not found beside " + dir +
                                " (this build has no LibTorch)"
                          : errors;
  return false;
}

}  // namespace

void add_all_commands(CLI::App& app, CommandContext& ctx, int argc, char** argv) {
  add_index_command(app, ctx);
  add_search_command(app, ctx);
  add_eval_command(app, ctx);
  add_tokenize_command(app, ctx);
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
