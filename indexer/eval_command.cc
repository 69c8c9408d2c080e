// SPDX-License-Identifier: Apache-2.0
// `blockrank eval`: runs queries against an index (or reads a TREC run) and scores the run against
// relevance judgements with trec_eval semantics. With --model, each query's BM25 top
// --rerank-depth is also reranked by a BlockRank model (the LibTorch module, loaded on demand
// through plugin/base/rerank_backend.h, as the server does), fused with BM25 per --fusion
// (blockrank/fusion.h), and scored beside BM25: the reranked list is followed by the rest of the
// BM25 run, so Recall@100 and MAP see the same depth.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <set>
#include <string>

#include "blockrank/fusion.h"
#include "indexer/eval_data.h"
#include "indexer/metrics.h"
#include "indexer/retrieval_run.h"
#include "indexer/searcher.h"
#include "plugin/base/cli_command.h"
#include "plugin/base/rerank_backend.h"
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
  // Reranking (--model).
  std::string model;
  int rerank_depth = 100;
  std::vector<std::string> fusion = {"rerank"};
  std::string device = "cpu";
  std::string dtype = "auto";
  int64_t max_block_length = 0;
};

// One reranked run per fusion setting, from a single model pass over each query's BM25 top
// `depth`. Within a fused list, equal fused scores keep the BM25 (trec_eval) order, so
// interpolate:1 reproduces the BM25 run's order exactly.
struct RerankedRuns {
  std::vector<FusionOptions> fusions;
  std::vector<Run> runs;
  size_t queries = 0;
  size_t documents = 0;
  double model_seconds = 0;
};

Status rerank_run(const EvalArgs& a,
                  const std::vector<EvalQuery>& queries,
                  const Run& bm25,
                  const Qrels& qrels,
                  RerankedRuns* out) {
  if (a.rerank_depth < 1) {
    return Status::invalid_argument("--rerank-depth must be >= 1");
  }
  for (const std::string& f : a.fusion) {
    BLOCKRANK_ASSIGN_OR_RETURN(FusionOptions fo, resolve_fusion(f, a.model));
    out->fusions.push_back(fo);
  }
  out->runs.resize(out->fusions.size());
  RerankBackendOptions bo;
  bo.model_dir = a.model;
  bo.device = a.device;
  bo.dtype = a.dtype;
  bo.threads = a.threads;
  bo.max_block_length = a.max_block_length;
  std::unique_ptr<RerankBackend> backend;
  BLOCKRANK_RETURN_IF_ERROR(open_rerank_backend(bo, &backend));
  SearchOptions so;
  so.fetch_text = true;
  std::unique_ptr<Searcher> docs;
  BLOCKRANK_RETURN_IF_ERROR(Searcher::open(a.db, so, &docs));
  for (const EvalQuery& q : queries) {
    auto it = bm25.find(q.id);
    if (it == bm25.end() || it->second.empty()) {
      continue;
    }
    // Unjudged queries do not count in any metric: skip the model pass.
    if (qrels.count(a.normalize_ids ? normalize_numeric_id(q.id) : q.id) == 0) {
      continue;
    }
    std::vector<RunEntry> ranked = it->second;
    sort_trec_order(&ranked);
    const size_t depth = std::min(ranked.size(), static_cast<size_t>(a.rerank_depth));
    RerankRequest req;
    req.query = q.text;
    std::vector<double> first_stage;
    for (size_t i = 0; i < depth; ++i) {
      SearchHit hit;
      BLOCKRANK_RETURN_IF_ERROR(docs->get_document(ranked[i].doc_id, &hit));
      req.documents.push_back({hit.id, hit.title, hit.text});
      first_stage.push_back(ranked[i].score);
    }
    std::vector<RerankResult> results;
    const auto t0 = std::chrono::steady_clock::now();
    BLOCKRANK_RETURN_IF_ERROR(backend->rerank({req}, &results).with_context("query " + q.id));
    out->model_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (results.size() != 1 || results[0].scores.size() != depth) {
      return Status::internal("query " + q.id +
                              ": the reranker returned the wrong number of scores");
    }
    const std::vector<double> model_scores(results[0].scores.begin(), results[0].scores.end());
    ++out->queries;
    out->documents += depth;
    for (size_t f = 0; f < out->fusions.size(); ++f) {
      BLOCKRANK_ASSIGN_OR_RETURN(std::vector<double> fused,
                                 fuse_scores(first_stage, model_scores, out->fusions[f]));
      std::vector<size_t> order(depth);
      for (size_t i = 0; i < depth; ++i) {
        order[i] = i;
      }
      std::stable_sort(order.begin(), order.end(),
                       [&](size_t x, size_t y) { return fused[x] > fused[y]; });
      // Distinct descending scores: the fused top `depth`, then the rest of the BM25 run.
      std::vector<RunEntry>& entries = out->runs[f][q.id];
      const double n = static_cast<double>(ranked.size());
      for (size_t pos = 0; pos < ranked.size(); ++pos) {
        const size_t src = pos < depth ? order[pos] : pos;
        entries.push_back({ranked[src].doc_id, n - static_cast<double>(pos)});
      }
    }
  }
  return Status::ok();
}

Run normalize_run_ids(Run run) {
  Run nr;
  for (auto& [qid, entries] : run) {
    for (RunEntry& e : entries) {
      e.doc_id = normalize_numeric_id(e.doc_id);
    }
    nr[normalize_numeric_id(qid)] = std::move(entries);
  }
  return nr;
}

nlohmann::json metrics_json(const EvalSummary& s) {
  return {{"queries", s.queries},
          {"queries_in_run", s.queries_in_run},
          {"ndcg@10", s.ndcg},
          {"mrr@10", s.mrr},
          {"recall@100", s.recall},
          {"map", s.map},
          {"p@1", s.p1}};
}

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
  if (!a.model.empty() && a.db.empty()) {
    return Status::invalid_argument("--model reranks BM25 over an index: give --db and --queries");
  }
  Run run;
  RetrievalRunStats stats;
  RerankedRuns reranked;
  size_t judged_not_asked = 0;
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
    // Score the queries that were asked: judged queries missing from --queries (a subset file) are
    // left out of every metric rather than counted as zero (they are with --run, trec_eval -c).
    std::set<std::string> asked;
    for (const EvalQuery& q : queries) {
      asked.insert(a.normalize_ids ? normalize_numeric_id(q.id) : q.id);
    }
    for (auto it = qrels.begin(); it != qrels.end();) {
      if (asked.count(a.normalize_ids ? normalize_numeric_id(it->first) : it->first) == 0) {
        it = qrels.erase(it);
        ++judged_not_asked;
      } else {
        ++it;
      }
    }
    RetrievalRunOptions opts;
    opts.search.bm25_k1 = a.k1;
    opts.search.bm25_b = a.b;
    opts.search.bm25_k3 = a.k3;
    opts.depth = a.depth;
    opts.remove_query = a.remove_query;
    opts.threads = a.threads;
    BLOCKRANK_RETURN_IF_ERROR(run_queries(a.db, queries, opts, &run, &stats));
    if (!a.model.empty()) {
      Qrels judged;  // qrels keyed as the run will be, to skip unjudged queries
      for (const auto& [qid, docs] : qrels) {
        judged[a.normalize_ids ? normalize_numeric_id(qid) : qid];
      }
      BLOCKRANK_RETURN_IF_ERROR(rerank_run(a, queries, run, judged, &reranked));
    }
  }
  if (a.normalize_ids) {
    Qrels nq;
    for (const auto& [qid, docs] : qrels) {
      for (const auto& [did, rel] : docs) {
        nq[normalize_numeric_id(qid)][normalize_numeric_id(did)] = rel;
      }
    }
    qrels = std::move(nq);
    run = normalize_run_ids(std::move(run));
    for (Run& r : reranked.runs) {
      r = normalize_run_ids(std::move(r));
    }
  }
  if (!a.run_out.empty()) {
    BLOCKRANK_RETURN_IF_ERROR(write_run(a.run_out, run, a.tag));
  }
  MetricOptions mo;
  mo.relevance_threshold = a.rel_threshold;
  const EvalSummary s = evaluate_run(run, qrels, mo);
  std::vector<EvalSummary> rs;
  for (const Run& r : reranked.runs) {
    rs.push_back(evaluate_run(r, qrels, mo));
  }
  const double rerank_ms =
      reranked.queries > 0 ? 1000.0 * reranked.model_seconds / static_cast<double>(reranked.queries)
                           : 0.0;
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
      j["judged_queries_not_asked"] = judged_not_asked;
    }
    if (a.per_query) {
      for (const auto& [qid, m] : s.per_query) {
        j["per_query"][qid] = {
            {"ndcg@10", m.ndcg}, {"mrr@10", m.mrr}, {"recall@100", m.recall}, {"ap", m.ap}};
      }
    }
    if (!a.model.empty()) {
      // The top level stays BM25's (as without --model); the reranked runs sit beside it.
      j["rerank"] = {{"model", a.model},
                     {"depth", a.rerank_depth},
                     {"queries", reranked.queries},
                     {"documents", reranked.documents},
                     {"model_seconds", reranked.model_seconds},
                     {"ms_per_query", rerank_ms}};
      for (size_t f = 0; f < rs.size(); ++f) {
        nlohmann::json m = metrics_json(rs[f]);
        if (a.per_query) {
          for (const auto& [qid, pq] : rs[f].per_query) {
            m["per_query"][qid] = {
                {"ndcg@10", pq.ndcg}, {"mrr@10", pq.mrr}, {"recall@100", pq.recall}, {"ap", pq.ap}};
          }
        }
        j["reranked"][fusion_name(reranked.fusions[f])] = m;
      }
    }
    std::fprintf(out, "%s\n", j.dump(2).c_str());
  } else if (!a.model.empty()) {
    // BM25 and each fusion side by side.
    std::fprintf(out, "%-12s %10s", "", "BM25");
    for (const FusionOptions& f : reranked.fusions) {
      std::fprintf(out, " %16s", fusion_name(f).c_str());
    }
    std::fprintf(out, "\n");
    auto row = [&](const char* name, double bm25_value, double EvalSummary::*field) {
      std::fprintf(out, "%-12s %10.4f", name, bm25_value);
      for (const EvalSummary& r : rs) {
        std::fprintf(out, " %16.4f", r.*field);
      }
      std::fprintf(out, "\n");
    };
    row("nDCG@10", s.ndcg, &EvalSummary::ndcg);
    row("MRR@10", s.mrr, &EvalSummary::mrr);
    row("Recall@100", s.recall, &EvalSummary::recall);
    row("MAP", s.map, &EvalSummary::map);
    row("P@1", s.p1, &EvalSummary::p1);
    std::fprintf(out, "queries      %d (%d in run)\n", s.queries, s.queries_in_run);
    std::fprintf(out,
                 "rerank       top %d of BM25 by %s: %zu queries, %zu documents, %.1f ms/query "
                 "(model)\n",
                 a.rerank_depth, a.model.c_str(), reranked.queries, reranked.documents, rerank_ms);
  } else {
    if (a.per_query) {
      for (const auto& [qid, m] : s.per_query) {
        std::fprintf(out, "%-24s ndcg@10 %.4f  mrr@10 %.4f  recall@100 %.4f  ap %.4f\n",
                     qid.c_str(), m.ndcg, m.mrr, m.recall, m.ap);
      }
    }
    std::fprintf(out, "queries      %d (%d in run)\n", s.queries, s.queries_in_run);
    if (judged_not_asked > 0) {
      std::fprintf(out, "             %zu judged queries not in --queries: not scored\n",
                   judged_not_asked);
    }
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
  cmd->add_option("--threads", a->threads, "Search threads (and the reranker's CPU threads)")
      ->capture_default_str();
  cmd->add_option("--rel-threshold", a->rel_threshold,
                  "Lowest grade counted relevant by binary metrics")
      ->capture_default_str();
  cmd->add_option("--model", a->model,
                  "Also rerank each query's BM25 top --rerank-depth with this BlockRank model "
                  "directory and print the reranked metrics beside BM25's");
  cmd->add_option("--rerank-depth", a->rerank_depth, "BM25 hits reranked per query (--model)")
      ->capture_default_str();
  cmd->add_option("--fusion", a->fusion,
                  "rerank, interpolate:ALPHA (ALPHA = BM25 weight of min-max scores) or model "
                  "(the model's blockrank.json \"fusion\"); repeat for several side by side "
                  "(one model pass)")
      ->capture_default_str();
  cmd->add_option("--device", a->device, "Reranker device (cpu, cuda, cuda:N)")
      ->capture_default_str();
  cmd->add_option("--dtype", a->dtype, "Reranker dtype (auto, float32, bfloat16)")
      ->capture_default_str();
  cmd->add_option("--max-block-length", a->max_block_length,
                  "Reranker: longest block in tokens (0 = the model's blockrank.json)")
      ->capture_default_str();
  cmd->add_flag("--json", a->json, "Print JSON");
  cmd->add_flag("--per-query", a->per_query, "Also print each query's metrics");
  cmd->callback([a, &ctx]() { ctx.exit_code = report_status("eval", run_eval(*a, stdout)); });
}

}  // namespace blockrank
