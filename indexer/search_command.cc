// SPDX-License-Identifier: Apache-2.0
// `blockrank search`: BM25 over an index, as a table or JSON.
#include <cstdio>

#include "indexer/searcher.h"
#include "plugin/base/cli_command.h"
#include "plugin/base/strings.h"
#include "plugin/cli/commands.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

namespace blockrank {

namespace {
struct SearchArgs {
  std::string db;
  int k = 10;
  bool json = false;
  double k1 = SearchOptions().bm25_k1;
  double b = SearchOptions().bm25_b;
  double k3 = SearchOptions().bm25_k3;
  size_t snippet = 160;
  bool terms = false;
  std::vector<std::string> words;
};
}  // namespace

void add_search_command(CLI::App& app, CommandContext& ctx) {
  auto args = std::make_shared<SearchArgs>();
  CLI::App* cmd = app.add_subcommand("search", "BM25 search of an index");
  cmd->add_option("--db", args->db, "Index directory")->required();
  cmd->add_option("-k", args->k, "Number of results")->capture_default_str();
  cmd->add_flag("--json", args->json, "Print JSON instead of a table");
  cmd->add_option("--k1", args->k1, "BM25 k1")->capture_default_str();
  cmd->add_option("--b", args->b, "BM25 b")->capture_default_str();
  cmd->add_option("--k3", args->k3, "BM25 k3 (query term frequency saturation)")
      ->capture_default_str();
  cmd->add_option("--snippet", args->snippet, "Snippet length in bytes")->capture_default_str();
  cmd->add_flag("--terms", args->terms, "Print the analysed query terms and exit");
  cmd->add_option("query", args->words, "Query text")->required();
  cmd->callback([args, &ctx]() {
    SearchOptions opts;
    opts.bm25_k1 = args->k1;
    opts.bm25_b = args->b;
    opts.bm25_k3 = args->k3;
    // Snippets come from the result set itself (one MSet), not a fresh query per hit.
    opts.snippet_bytes = args->snippet;
    std::unique_ptr<Searcher> searcher;
    Status st = Searcher::open(args->db, opts, &searcher);
    std::string query;
    for (const std::string& w : args->words) {
      query += (query.empty() ? "" : " ") + w;
    }
    std::vector<SearchHit> hits;
    if (st.is_ok() && args->terms) {
      for (const std::string& t : searcher->query_terms(query)) {
        std::printf("%s\n", t.c_str());
      }
      ctx.exit_code = 0;
      return;
    }
    if (st.is_ok()) {
      st = searcher->search(query, args->k, &hits);
    }
    if (!st.is_ok()) {
      ctx.exit_code = report_status("search", st);
      return;
    }
    if (args->json) {
      nlohmann::json out = {{"query", query}, {"results", nlohmann::json::array()}};
      for (const SearchHit& h : hits) {
        out["results"].push_back({{"rank", h.rank},
                                  {"doc_id", h.id},
                                  {"score", h.score},
                                  {"title", h.title},
                                  {"snippet", h.snippet}});
      }
      std::printf("%s\n",
                  out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
      if (hits.empty()) {
        std::printf("no results for: %s\n", query.c_str());
      }
      for (const SearchHit& h : hits) {
        std::printf("%3d  %-24s %8.4f  %s\n", h.rank, h.id.c_str(), h.score,
                    h.title.empty() ? "" : h.title.c_str());
        std::printf("     %s\n", collapse_whitespace(h.snippet).c_str());
      }
    }
    ctx.exit_code = 0;
  });
}

}  // namespace blockrank
