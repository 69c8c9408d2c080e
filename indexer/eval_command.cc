// SPDX-License-Identifier: Apache-2.0
// `blockrank eval`: runs queries against an index (or reads a TREC run) and scores the run against
// relevance judgements with trec_eval semantics.
#include <algorithm>
#include <cstdio>

#include "indexer/eval_data.h"
#include "indexer/metrics.h"
#include "indexer/retrieval_run.h"
#include "plugin/base/cli_command.h"
#include "plugin/cli/commands.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

namespace blockrank {

namespace {
struct EvalArgs {
  std::string db;
  std::string queries;
  std::string qrels;
  std::string run;
  std::string run_out;
  std::string tag = "blockrank-bm25";
  std::string query_format = "auto";
  std::vector<std::string> trec_fields = {"title"};
  bool smart_by_position = false;
  std::string rel_map;
  bool normalize_ids = false;
  int depth = 1000;
  bool remove_query = false;
  double k1 = SearchOptions().bm25_k1;
  double b = SearchOptions().bm25_b;
  double k3 = SearchOptions().bm25_k3;
  int threads = 2;
  int rel_threshold = 1;
  bool json = false;
  bool per_query = false;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) {
    return 0;
  }
  std::sort(v.begin(), v.end());
  const double idx = p / 100.0 * (v.size() - 1);
  const size_t lo = static_cast<size_t>(idx);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (idx - lo);
}

Status run_eval(const EvalArgs& a, FILE* out) {
  if (a.qrels.empty()) {
    return Status::invalid_argument("--qrels is required");
  }
  if (a.run.empty() == a.db.empty()) {
    return Status::invalid_argument("give either --run FILE, or --db DIR with --queries FILE");
  }
  QrelsReaderOptions qo;
  qo.relevance_map = a.rel_map;
  Qrels qrels;
  BLOCKRANK_RETURN_IF_ERROR(read_qrels(a.qrels, qo, &qrels));
  Run run;
  RetrievalRunStats stats;
  if (!a.run.empty()) {
    BLOCKRANK_RETURN_IF_ERROR(read_run(a.run, &run));
  } else {
    if (a.queries.empty()) {
      return Status::invalid_argument("--db needs --queries");
    }
    QueryReaderOptions ro;
    ro.format = a.query_format;
    ro.number_by_position = a.smart_by_position;
    ro.trec_fields = a.trec_fields;
    std::vector<EvalQuery> queries;
    BLOCKRANK_RETURN_IF_ERROR(read_queries(a.queries, ro, &queries));
    RetrievalRunOptions opts;
    opts.search.bm25_k1 = a.k1;
    opts.search.bm25_b = a.b;
    opts.search.bm25_k3 = a.k3;
    opts.depth = a.depth;
    opts.remove_query = a.remove_query;
    opts.threads = a.threads;
    BLOCKRANK_RETURN_IF_ERROR(run_queries(a.db, queries, opts, &run, &stats));
  }
  if (a.normalize_ids) {
    Qrels nq;
    for (const auto& [qid, docs] : qrels) {
      for (const auto& [did, rel] : docs) {
        nq[normalize_numeric_id(qid)][normalize_numeric_id(did)] = rel;
      }
    }
    qrels = std::move(nq);
    Run nr;
    for (auto& [qid, entries] : run) {
      for (RunEntry& e : entries) {
        e.doc_id = normalize_numeric_id(e.doc_id);
      }
      nr[normalize_numeric_id(qid)] = std::move(entries);
    }
    run = std::move(nr);
  }
  if (!a.run_out.empty()) {
    BLOCKRANK_RETURN_IF_ERROR(write_run(a.run_out, run, a.tag));
  }
  MetricOptions mo;
  mo.relevance_threshold = a.rel_threshold;
  const EvalSummary s = evaluate_run(run, qrels, mo);
  const double p50 = percentile(stats.latencies_ms, 50);
  const double p99 = percentile(stats.latencies_ms, 99);
  if (a.json) {
    nlohmann::json j = {{"queries", s.queries},
                        {"queries_in_run", s.queries_in_run},
                        {"ndcg@10", s.ndcg},
                        {"mrr@10", s.mrr},
                        {"recall@100", s.recall},
                        {"map", s.map},
                        {"p@1", s.p1}};
    if (!a.db.empty()) {
      j["latency_ms"] = {{"p50", p50}, {"p99", p99}, {"total_s", stats.seconds}};
    }
    if (a.per_query) {
      for (const auto& [qid, m] : s.per_query) {
        j["per_query"][qid] = {
            {"ndcg@10", m.ndcg}, {"mrr@10", m.mrr}, {"recall@100", m.recall}, {"ap", m.ap}};
      }
    }
    std::fprintf(out, "%s\n", j.dump(2).c_str());
  } else {
    if (a.per_query) {
      for (const auto& [qid, m] : s.per_query) {
        std::fprintf(out, "%-24s ndcg@10 %.4f  mrr@10 %.4f  recall@100 %.4f  ap %.4f\n",
                     qid.c_str(), m.ndcg, m.mrr, m.recall, m.ap);
      }
    }
    std::fprintf(out, "queries      %d (%d in run)\n", s.queries, s.queries_in_run);
    std::fprintf(out, "nDCG@10      %.4f\n", s.ndcg);
    std::fprintf(out, "MRR@10       %.4f\n", s.mrr);
    std::fprintf(out, "Recall@100   %.4f\n", s.recall);
    std::fprintf(out, "MAP          %.4f\n", s.map);
    std::fprintf(out, "P@1          %.4f\n", s.p1);
    if (!a.db.empty()) {
      std::fprintf(out, "latency      p50 %.2f ms, p99 %.2f ms per query (depth %d, %d threads)\n",
                   p50, p99, a.depth, a.threads);
    }
  }
  return Status::ok();
}
}  // namespace

void add_eval_command(CLI::App& app, CommandContext& ctx) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* cmd = app.add_subcommand(
      "eval", "Score a run (or BM25 over an index) against qrels: nDCG@10, MRR@10, R@100, MAP");
  cmd->add_option("--db", a->db, "Index to run the queries against");
  cmd->add_option("--queries", a->queries, "Queries: BEIR queries.jsonl, TSV, TREC topics, SMART");
  cmd->add_option("--qrels", a->qrels, "Judgements: TREC 4-column, BEIR TSV, or 'qid docid rel'")
      ->required();
  cmd->add_option("--run", a->run, "Score this TREC run file instead of searching");
  cmd->add_option("--run-out", a->run_out, "Write the run to this TREC file");
  cmd->add_option("--tag", a->tag, "Run tag written with --run-out")->capture_default_str();
  cmd->add_option("--query-format", a->query_format, "auto, beir, tsv, trec or smart")
      ->capture_default_str();
  cmd->add_option("--trec-fields", a->trec_fields, "TREC topic fields used as the query")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_flag("--smart-by-position", a->smart_by_position,
                "Number SMART queries by position (Cranfield's qrels do)");
  cmd->add_option("--rel-map", a->rel_map,
                  "Map relevance codes, e.g. Cranfield '1:4,2:3,3:2,4:1,-1:0'");
  cmd->add_flag("--normalize-ids", a->normalize_ids,
                "Drop leading zeros of numeric id suffixes (CACM-0756 = CACM-756)");
  cmd->add_option("--depth", a->depth, "Hits per query")->capture_default_str();
  cmd->add_flag("--remove-query", a->remove_query,
                "Drop hits whose id equals the query id (ArguAna, Quora)");
  cmd->add_option("--k1", a->k1, "BM25 k1")->capture_default_str();
  cmd->add_option("--b", a->b, "BM25 b")->capture_default_str();
  cmd->add_option("--k3", a->k3, "BM25 k3 (query term frequency saturation)")
      ->capture_default_str();
  cmd->add_option("--threads", a->threads, "Search threads")->capture_default_str();
  cmd->add_option("--rel-threshold", a->rel_threshold,
                  "Lowest grade counted relevant by binary metrics")
      ->capture_default_str();
  cmd->add_flag("--json", a->json, "Print JSON");
  cmd->add_flag("--per-query", a->per_query, "Also print each query's metrics");
  cmd->callback([a, &ctx]() { ctx.exit_code = report_status("eval", run_eval(*a, stdout)); });
}

}  // namespace blockrank
