// SPDX-License-Identifier: Apache-2.0
// `blockrank index`: reads corpus files into a Xapian index, with progress and batched atomic
// commits.
#include <csignal>
#include <cstdio>

#include "indexer/index_writer.h"
#include "plugin/base/cli_command.h"
#include "plugin/base/progress.h"
#include "plugin/cli/commands.h"

#include <CLI/CLI.hpp>

namespace blockrank {

namespace {
std::atomic<bool> g_interrupted{false};
void on_signal(int) {
  g_interrupted.store(true);
}

struct IndexArgs {
  std::string db;
  std::string format = "auto";
  std::string id_field;
  std::vector<std::string> text_fields;
  std::string title_field = "title";
  std::vector<std::string> files;
  bool skip_bad = false;
  size_t batch_size = IndexWriterOptions().batch_size;
  std::string language = "english";
  bool no_stopwords = false;
  bool quiet = false;
};
}  // namespace

void add_index_command(CLI::App& app, CommandContext& ctx) {
  auto args = std::make_shared<IndexArgs>();
  CLI::App* cmd = app.add_subcommand("index", "Index corpus files into a Xapian BM25 index");
  cmd->add_option("--db", args->db, "Index directory (created if missing)")->required();
  cmd->add_option("--format", args->format, "Input format: auto, beir, jsonl, tsv, trec, smart")
      ->capture_default_str();
  cmd->add_option("--id-field", args->id_field,
                  "JSONL field with the document id (default: _id for beir, id for jsonl)");
  cmd->add_option("--text-fields", args->text_fields,
                  "JSONL fields joined into the text, comma-separated (default: text; jsonl: "
                  "text or contents)")
      ->delimiter(',');
  cmd->add_option("--title-field", args->title_field, "JSONL field with the title")
      ->capture_default_str();
  cmd->add_flag("--skip-bad", args->skip_bad,
                "Skip malformed records (counted and reported) instead of stopping");
  cmd->add_option("--batch-size", args->batch_size, "Documents per atomic commit")
      ->capture_default_str();
  cmd->add_option("--language", args->language, "Snowball stemmer ('none' disables stemming)")
      ->capture_default_str();
  cmd->add_flag("--no-stopwords", args->no_stopwords, "Keep English stop words");
  cmd->add_flag("-q,--quiet", args->quiet, "No progress output");
  cmd->add_option("files", args->files, "Corpus files (.gz read transparently)")->required();
  cmd->callback([args, &ctx]() {
    IndexRunOptions opts;
    Status st = parse_corpus_format(args->format, &opts.reader.format);
    if (!st.is_ok()) {
      ctx.exit_code = report_status("index", st);
      return;
    }
    opts.reader.id_field = args->id_field;
    opts.reader.text_fields = args->text_fields;
    opts.reader.title_field = args->title_field;
    opts.writer.batch_size = args->batch_size;
    opts.writer.language = args->language;
    opts.writer.stopwords = !args->no_stopwords;
    opts.writer.logger = ctx.logger;
    opts.skip_bad = args->skip_bad;
    opts.progress = args->quiet ? nullptr : stderr;
    opts.cancel = &g_interrupted;
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    IndexRunStats stats;
    st = index_files(args->db, args->files, opts, &stats);
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    if (st.is_ok() || stats.skipped > 0) {
      std::fprintf(stderr,
                   "indexed %llu documents (%llu replaced, %llu malformed skipped) from %s in "
                   "%.1f s: %.0f docs/s, %.2f MB/s of text\n",
                   static_cast<unsigned long long>(stats.documents),
                   static_cast<unsigned long long>(stats.replaced),
                   static_cast<unsigned long long>(stats.skipped),
                   format_bytes(static_cast<double>(stats.bytes)).c_str(), stats.seconds,
                   stats.seconds > 0 ? stats.documents / stats.seconds : 0.0,
                   stats.seconds > 0 ? stats.text_bytes / stats.seconds / 1e6 : 0.0);
    }
    ctx.exit_code = report_status("index", st);
  });
}

}  // namespace blockrank
