// SPDX-License-Identifier: Apache-2.0
// `blockrank mine`: BM25 hard negatives from an index + positives from qrels, written as the
// upstream training JSONL (indexer/mine.h), so that a user can train on their own corpus.
#include <cstdio>

#include "indexer/mine.h"
#include "plugin/base/cli_command.h"
#include "plugin/cli/commands.h"

#include <CLI/CLI.hpp>

namespace blockrank {

namespace {
struct MineArgs {
  MineOptions options;
  std::string query_format = "auto";
  std::vector<std::string> trec_fields = {"title"};
  bool smart_by_position = false;
  bool retrieved_positives_only = false;
  double k1 = SearchOptions().bm25_k1;
  double b = SearchOptions().bm25_b;
  double k3 = SearchOptions().bm25_k3;
};

Status run_mine(MineArgs& a) {
  MineOptions& o = a.options;
  o.query_reader.format = a.query_format;
  o.query_reader.trec_fields = a.trec_fields;
  o.query_reader.number_by_position = a.smart_by_position;
  o.add_unretrieved_positives = !a.retrieved_positives_only;
  o.retrieval.search.bm25_k1 = a.k1;
  o.retrieval.search.bm25_b = a.b;
  o.retrieval.search.bm25_k3 = a.k3;
  MineStats s;
  BLOCKRANK_RETURN_IF_ERROR(mine_training_data(o, &s));
  const double per_query = s.written > 0 ? 1.0 / static_cast<double>(s.written) : 0.0;
  std::fprintf(
      stderr,
      "mine: %lld of %lld queries written to %s (%.1f s)\n"
      "  skipped: %lld without judgements, %lld without a usable positive\n"
      "  positives %lld (%.2f/query; %lld in the BM25 top %d = %.1f%%; %lld judged but not "
      "in the index)\n"
      "  hard negatives %lld (%.1f/query; %lld queries with none), %lld empty documents "
      "dropped\n",
      static_cast<long long>(s.written), static_cast<long long>(s.queries_read), o.out.c_str(),
      s.seconds, static_cast<long long>(s.skipped_no_qrels),
      static_cast<long long>(s.skipped_no_positives), static_cast<long long>(s.positives),
      static_cast<double>(s.positives) * per_query, static_cast<long long>(s.positives_retrieved),
      o.k,
      s.positives > 0
          ? 100.0 * static_cast<double>(s.positives_retrieved) / static_cast<double>(s.positives)
          : 0.0,
      static_cast<long long>(s.positives_missing), static_cast<long long>(s.negatives),
      static_cast<double>(s.negatives) * per_query, static_cast<long long>(s.no_negatives),
      static_cast<long long>(s.empty_documents));
  return Status::ok();
}
}  // namespace

void add_mine_command(CLI::App& app, CommandContext& ctx) {
  auto a = std::make_shared<MineArgs>();
  MineOptions& o = a->options;
  CLI::App* cmd = app.add_subcommand(
      "mine",
      "Build BlockRank training JSONL: BM25 top-k hard negatives from an index, positives from "
      "qrels");
  cmd->add_option("--db", o.db, "Index to mine")->required();
  cmd->add_option("--queries", o.queries, "Queries: BEIR queries.jsonl, TSV, TREC topics, SMART")
      ->required();
  cmd->add_option("--qrels", o.qrels, "Judgements: TREC 4-column, BEIR TSV, or 'qid docid rel'")
      ->required();
  cmd->add_option("--out", o.out, "Output JSONL (gzip when it ends in .gz)")->required();
  cmd->add_option("--k", o.k, "BM25 candidates per query")->capture_default_str();
  cmd->add_option("--rel-threshold", o.rel_threshold, "Lowest grade counted as a positive")
      ->capture_default_str();
  cmd->add_flag("--retrieved-positives-only", a->retrieved_positives_only,
                "Keep only positives BM25 retrieved in the top k (default: add the missed ones)");
  cmd->add_option("--query-format", a->query_format, "auto, beir, tsv, trec or smart")
      ->capture_default_str();
  cmd->add_option("--trec-fields", a->trec_fields, "TREC topic fields used as the query")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_flag("--smart-by-position", a->smart_by_position,
                "Number SMART queries by position (Cranfield's qrels do)");
  cmd->add_option("--rel-map", o.qrels_reader.relevance_map,
                  "Map relevance codes, e.g. Cranfield '1:4,2:3,3:2,4:1,-1:0'");
  cmd->add_flag("--remove-query", o.retrieval.remove_query,
                "Drop hits whose id equals the query id (ArguAna, Quora)");
  cmd->add_option("--k1", a->k1, "BM25 k1")->capture_default_str();
  cmd->add_option("--b", a->b, "BM25 b")->capture_default_str();
  cmd->add_option("--k3", a->k3, "BM25 k3 (query term frequency saturation)")
      ->capture_default_str();
  cmd->add_option("--threads", o.retrieval.threads, "Search threads")->capture_default_str();
  cmd->callback([a, &ctx]() { ctx.exit_code = report_status("mine", run_mine(*a)); });
}

}  // namespace blockrank
