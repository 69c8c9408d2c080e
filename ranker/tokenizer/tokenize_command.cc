// SPDX-License-Identifier: Apache-2.0
// `blockrank tokenize --tokenizer PATH [--decode]`: a line filter for checking token ids against a
// reference. Each stdin line is one JSON string (encode) or one JSON array of ids (--decode); each
// output line is the JSON array of ids (no special tokens added) or the decoded JSON string. The
// first bad line stops the run with its line number, so a mismatch is never silently skipped.
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "plugin/base/cli_command.h"
#include "ranker/tokenizer/tokenizer.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

namespace blockrank {
namespace {

struct TokenizeArgs {
  std::string tokenizer;
  bool decode = false;
};

Status run_tokenize(const TokenizeArgs& args, std::istream& in, std::ostream& out) {
  std::unique_ptr<Tokenizer> tokenizer;
  BLOCKRANK_RETURN_IF_ERROR(Tokenizer::load(args.tokenizer, &tokenizer));
  std::string line;
  std::vector<int32_t> ids;
  std::string text;
  size_t line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    const std::string where = "stdin:" + std::to_string(line_number);
    nlohmann::json value;
    try {
      value = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      return Status::invalid_argument(where + ": not valid JSON: " + e.what());
    }
    if (!args.decode) {
      if (!value.is_string()) {
        return Status::invalid_argument(where + ": expected a JSON string");
      }
      BLOCKRANK_RETURN_IF_ERROR(
          tokenizer->encode(value.get_ref<const std::string&>(), &ids).with_context(where));
      out << '[';
      for (size_t i = 0; i < ids.size(); ++i) {
        if (i > 0) {
          out << ',';
        }
        out << ids[i];
      }
      out << "]\n";
    } else {
      if (!value.is_array()) {
        return Status::invalid_argument(where + ": expected a JSON array of token ids");
      }
      ids.clear();
      for (const nlohmann::json& id : value) {
        if (!id.is_number_integer()) {
          return Status::invalid_argument(where + ": expected integer token ids");
        }
        const int64_t v = id.get<int64_t>();
        if (v < INT32_MIN || v > INT32_MAX) {
          return Status::invalid_argument(where + ": token id " + std::to_string(v) +
                                          " out of range");
        }
        ids.push_back(static_cast<int32_t>(v));
      }
      BLOCKRANK_RETURN_IF_ERROR(tokenizer->decode(ids, &text).with_context(where));
      out << nlohmann::json(text).dump(-1, ' ', /*ensure_ascii=*/false,
                                       nlohmann::json::error_handler_t::replace)
          << '\n';
    }
  }
  out.flush();
  if (!out) {
    return Status::io_error("writing to stdout failed");
  }
  return Status::ok();
}

}  // namespace

void add_tokenize_command(CLI::App& app, CommandContext& ctx) {
  auto args = std::make_shared<TokenizeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "tokenize",
      "Encode JSON strings (one per stdin line) to JSON id arrays, or decode with --decode");
  cmd->add_option("--tokenizer", args->tokenizer,
                  "tokenizer.json, or a model directory holding one")
      ->required();
  cmd->add_flag("--decode", args->decode,
                "Read JSON arrays of ids and write decoded JSON strings instead");
  cmd->callback([args, &ctx]() {
    std::ios::sync_with_stdio(false);
    ctx.exit_code = report_status("tokenize", run_tokenize(*args, std::cin, std::cout));
  });
}

}  // namespace blockrank
