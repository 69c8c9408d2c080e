// SPDX-License-Identifier: Apache-2.0
// `blockrank rerank`: reranks every query of a candidate file with the BlockRank reranker and
// writes the rankings (JSONL, or a TREC run when the output name ends in .trec), then reports
// nDCG@10 / P@1 / MRR@10 against qrels, or P@1 against the file's answer_ids.
//
// Input formats (detected from the first non-blank character):
//  - upstream JSONL (BLOCKRANK.md §5.1), one object per line: query, query_id (optional; the
//    0-based record number otherwise), documents [{doc_id, title?, text}] (plain strings are also
//    accepted and get ids "0", "1", ...), answer_ids (optional). Documents are de-duplicated by
//    doc_id, keeping the first, as upstream's dict does.
//  - rank_llm retrieve_results JSON: an array of {query, hits: [{content, qid, docid, rank,
//    score}]} (e.g. msmarco-dl19/retrieve_results_dl19.json); hits keep their file order.
// --fusion mixes the model's scores with the first stage's (blockrank/fusion.h): the hits' "score"
// (BM25 in rank_llm files) when every hit has one, else the candidate order (N - i).
// Every malformed record is reported as "file:line: what is wrong" (exit code 2).
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "blockrank/fusion.h"
#include "indexer/eval_data.h"
#include "indexer/metrics.h"
#include "plugin/base/cli_command.h"
#include "plugin/base/line_reader.h"
#include "plugin/base/strings.h"
#include "ranker/core/reranker.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

namespace blockrank {
namespace {

struct RerankFlags {
  std::string model;
  std::string input;
  std::string mode = "attention";
  std::string qrels;
  std::string output;
  std::string tokenizer;
  std::string prompt_template;
  std::string device = "cpu";
  std::string dtype = "auto";
  int threads = 0;
  int64_t max_block_length = 0;
  int candidates = 0;
  int max_new_tokens = 32;
  int64_t shuffle_seed = -1;
  std::vector<std::string> fusion = {"rerank"};
  std::string kv_cache;
  uint64_t kv_cache_memory_mb = RankerOptions().kv_cache_memory_bytes >> 20;
  uint64_t kv_cache_disk_mb = RankerOptions().kv_cache_disk_bytes >> 20;
};

struct QueryRecord {
  std::string query_id;
  std::string query;
  std::vector<RerankDocument> documents;
  std::vector<std::string> answer_ids;
  /// First-stage score per document (rank_llm "score"); empty when the file has none.
  std::vector<double> first_stage;
};

// A JSON id (string or integer) as a string; false for anything else.
bool id_string(const nlohmann::json& v, std::string* out) {
  if (v.is_string()) {
    *out = v.get<std::string>();
    return true;
  }
  if (v.is_number_integer()) {
    *out = std::to_string(v.get<int64_t>());
    return true;
  }
  return false;
}

Status parse_jsonl_record(const nlohmann::json& j, size_t record, QueryRecord* rec) {
  if (!j.is_object()) {
    return Status::invalid_argument("expected a JSON object");
  }
  if (!j.contains("query") || !j["query"].is_string()) {
    return Status::invalid_argument("missing string field 'query'");
  }
  rec->query = j["query"].get<std::string>();
  if (j.contains("query_id") && !j["query_id"].is_null()) {
    if (!id_string(j["query_id"], &rec->query_id)) {
      return Status::invalid_argument("field 'query_id' must be a string or an integer");
    }
  } else {
    rec->query_id = std::to_string(record);  // upstream defaults to the row index
  }
  if (!j.contains("documents") || !j["documents"].is_array()) {
    return Status::invalid_argument("missing array field 'documents'");
  }
  std::set<std::string> seen;
  const auto& docs = j["documents"];
  for (size_t i = 0; i < docs.size(); ++i) {
    const auto& d = docs[i];
    RerankDocument doc;
    const std::string where = "documents[" + std::to_string(i) + "]";
    if (d.is_string()) {
      doc.id = std::to_string(i);
      doc.text = d.get<std::string>();
    } else if (d.is_object()) {
      if (!d.contains("doc_id") || !id_string(d["doc_id"], &doc.id)) {
        return Status::invalid_argument(where + ": missing string field 'doc_id'");
      }
      if (!d.contains("text") || !d["text"].is_string()) {
        return Status::invalid_argument(where + ": missing string field 'text'");
      }
      doc.text = d["text"].get<std::string>();
      if (d.contains("title") && !d["title"].is_null()) {
        if (!d["title"].is_string()) {
          return Status::invalid_argument(where + ": field 'title' must be a string");
        }
        doc.title = d["title"].get<std::string>();
      }
    } else {
      return Status::invalid_argument(where + ": expected an object {doc_id, title, text}");
    }
    if (seen.insert(doc.id).second) {
      rec->documents.push_back(std::move(doc));
    }
  }
  if (j.contains("answer_ids") && !j["answer_ids"].is_null()) {
    if (!j["answer_ids"].is_array()) {
      return Status::invalid_argument("field 'answer_ids' must be an array");
    }
    for (const auto& a : j["answer_ids"]) {
      std::string id;
      if (!id_string(a, &id)) {
        return Status::invalid_argument("field 'answer_ids' must hold strings or integers");
      }
      rec->answer_ids.push_back(id);
    }
  }
  return Status::ok();
}

Status read_jsonl(const std::string& path, std::vector<QueryRecord>* records) {
  std::unique_ptr<LineReader> reader;
  BLOCKRANK_RETURN_IF_ERROR(LineReader::open(path, &reader));
  std::string line;
  bool eof = false;
  while (true) {
    BLOCKRANK_RETURN_IF_ERROR(reader->next(&line, &eof));
    if (eof) {
      break;
    }
    if (trim(line).empty()) {
      continue;
    }
    QueryRecord rec;
    try {
      const nlohmann::json j = nlohmann::json::parse(line);
      Status s = parse_jsonl_record(j, records->size(), &rec);
      if (!s.is_ok()) {
        return Status::invalid_argument(reader->location() + ": " + s.message());
      }
    } catch (const nlohmann::json::exception& e) {
      return Status::invalid_argument(reader->location() + ": not valid JSON: " + e.what());
    }
    records->push_back(std::move(rec));
  }
  return Status::ok();
}

Status read_rank_llm(const std::string& path, std::vector<QueryRecord>* records) {
  std::ifstream f(path);
  if (!f) {
    return Status::not_found(path + ": cannot open");
  }
  nlohmann::json j;
  try {
    f >> j;
  } catch (const nlohmann::json::exception& e) {
    return Status::invalid_argument(path + ": not valid JSON: " + e.what());
  }
  if (!j.is_array()) {
    return Status::invalid_argument(path + ": expected a JSON array of {query, hits}");
  }
  for (size_t q = 0; q < j.size(); ++q) {
    const auto& e = j[q];
    const std::string where = path + ": entry " + std::to_string(q);
    if (!e.is_object() || !e.contains("query") || !e["query"].is_string()) {
      return Status::invalid_argument(where + ": missing string field 'query'");
    }
    if (!e.contains("hits") || !e["hits"].is_array()) {
      return Status::invalid_argument(where + ": missing array field 'hits'");
    }
    QueryRecord rec;
    rec.query = e["query"].get<std::string>();
    rec.query_id = std::to_string(q);
    std::set<std::string> seen;
    bool all_scored = true;
    for (size_t h = 0; h < e["hits"].size(); ++h) {
      const auto& hit = e["hits"][h];
      const std::string hwhere = where + ": hits[" + std::to_string(h) + "]";
      RerankDocument doc;
      if (!hit.is_object() || !hit.contains("docid") || !id_string(hit["docid"], &doc.id)) {
        return Status::invalid_argument(hwhere + ": missing field 'docid'");
      }
      if (!hit.contains("content") || !hit["content"].is_string()) {
        return Status::invalid_argument(hwhere + ": missing string field 'content'");
      }
      if (h == 0 && hit.contains("qid") && !id_string(hit["qid"], &rec.query_id)) {
        return Status::invalid_argument(hwhere + ": field 'qid' must be a string or an integer");
      }
      doc.text = hit["content"].get<std::string>();
      if (seen.insert(doc.id).second) {
        rec.documents.push_back(std::move(doc));
        const bool scored = hit.contains("score") && hit["score"].is_number();
        all_scored = all_scored && scored;
        rec.first_stage.push_back(scored ? hit["score"].get<double>() : 0.0);
      }
    }
    if (!all_scored) {
      rec.first_stage.clear();
    }
    records->push_back(std::move(rec));
  }
  return Status::ok();
}

Status read_input(const std::string& path, std::vector<QueryRecord>* records) {
  std::ifstream f(path);
  if (!f) {
    return Status::not_found(path + ": cannot open");
  }
  char c = 0;
  while (f.get(c) && std::isspace(static_cast<unsigned char>(c))) {
  }
  f.close();
  return c == '[' ? read_rank_llm(path, records) : read_jsonl(path, records);
}

std::string format_score(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.8g", v);
  return buf;
}

void print_metrics(std::FILE* out, const char* label, const EvalSummary& s) {
  std::fprintf(out, "%-10s nDCG@10 %.4f  P@1 %.4f  MRR@10 %.4f  (%d queries, %d reranked)\n", label,
               s.ndcg, s.p1, s.mrr, s.queries, s.queries_in_run);
}

Status run_rerank(const RerankFlags& flags, CommandContext& ctx) {
  BLOCKRANK_ASSIGN_OR_RETURN(RerankMode mode, parse_rerank_mode(flags.mode));
  if (flags.candidates < 0) {
    return Status::invalid_argument("--candidates must be >= 0 (0: all)");
  }
  std::vector<FusionOptions> fusions;
  for (const std::string& f : flags.fusion) {
    BLOCKRANK_ASSIGN_OR_RETURN(FusionOptions fo, resolve_fusion(f, flags.model));
    fusions.push_back(fo);
  }
  if (fusions.empty()) {
    fusions.push_back(FusionOptions());
  }
  std::vector<QueryRecord> records;
  BLOCKRANK_RETURN_IF_ERROR(read_input(flags.input, &records));
  Qrels qrels;
  if (!flags.qrels.empty()) {
    BLOCKRANK_RETURN_IF_ERROR(read_qrels(flags.qrels, QrelsReaderOptions{}, &qrels));
  }
  RerankerOptions ro;
  ro.ranker.device = flags.device;
  ro.ranker.dtype = flags.dtype;
  ro.ranker.num_threads = flags.threads;
  ro.tokenizer = flags.tokenizer;
  ro.max_block_length = flags.max_block_length;
  ro.prompt_template = flags.prompt_template;
  ro.max_new_tokens = flags.max_new_tokens;
  if (!flags.kv_cache.empty()) {
    ro.ranker.kv_cache = true;
    ro.ranker.kv_cache_dir = flags.kv_cache;
    ro.ranker.kv_cache_memory_bytes = flags.kv_cache_memory_mb << 20;
    ro.ranker.kv_cache_disk_bytes = flags.kv_cache_disk_mb << 20;
    ro.ranker.logger = ctx.logger;
  }
  std::unique_ptr<Reranker> reranker;
  BLOCKRANK_RETURN_IF_ERROR(Reranker::open(flags.model, ro, &reranker));

  const bool trec = ends_with(flags.output, ".trec");
  std::string out_text;
  Run run, input_run;
  // One run per extra --fusion (the first one's is `run`, which is also what is written).
  std::vector<Run> fused_runs(fusions.size() - 1);
  int answered = 0, answer_hits = 0;
  size_t documents = 0;
  int64_t prompt_tokens = 0;
  double prompt_seconds = 0, model_seconds = 0;
  const auto start = std::chrono::steady_clock::now();
  for (size_t record = 0; record < records.size(); ++record) {
    QueryRecord& rec = records[record];
    if (flags.candidates > 0 && rec.documents.size() > static_cast<size_t>(flags.candidates)) {
      rec.documents.resize(static_cast<size_t>(flags.candidates));
      if (!rec.first_stage.empty()) {
        rec.first_stage.resize(rec.documents.size());
      }
    }
    if (rec.documents.empty()) {
      BLOCKRANK_LOG_WARNING(ctx.logger, "query %s has no documents; skipped", rec.query_id.c_str());
      continue;
    }
    RerankOptions opts;
    opts.mode = mode;
    if (flags.shuffle_seed >= 0) {
      // seed + record number, as upstream seeds each example (dataset_seed + index, §1.7).
      opts.shuffle_seed = static_cast<uint64_t>(flags.shuffle_seed) + record;
    }
    Reranking r;
    Status s = reranker->rerank(rec.query, rec.documents, opts, &r);
    if (!s.is_ok()) {
      return Status(s.code(), "query " + rec.query_id + ": " + s.message());
    }
    documents += rec.documents.size();
    prompt_tokens += r.prompt_tokens;
    prompt_seconds += r.prompt_seconds;
    model_seconds += r.model_seconds;
    auto& entries = run[rec.query_id];
    auto& baseline = input_run[rec.query_id];
    for (size_t i = 0; i < rec.documents.size(); ++i) {
      // The candidate order as a run (score N - i), to compare against the first stage.
      baseline.push_back({rec.documents[i].id, static_cast<double>(rec.documents.size() - i)});
    }
    if (fusions.size() > 1 || fusions[0].method != FusionMethod::kRerank) {
      // Fused orders; equal fused scores keep the candidate order (interpolate:1 = the input).
      std::vector<double> first = rec.first_stage;
      std::vector<double> model(rec.documents.size(), 0.0);
      for (size_t i = 0; i < rec.documents.size() && first.size() != rec.documents.size(); ++i) {
        first.push_back(static_cast<double>(rec.documents.size() - i));
      }
      for (const RankedDocument& d : r.ranked) {
        model[d.index] = d.score;
      }
      for (size_t f = 0; f < fusions.size(); ++f) {
        BLOCKRANK_ASSIGN_OR_RETURN(std::vector<double> fused,
                                   fuse_scores(first, model, fusions[f]));
        std::vector<size_t> order(rec.documents.size());
        for (size_t i = 0; i < order.size(); ++i) {
          order[i] = i;
        }
        std::stable_sort(order.begin(), order.end(),
                         [&](size_t x, size_t y) { return fused[x] > fused[y]; });
        if (f > 0) {
          auto& fe = fused_runs[f - 1][rec.query_id];
          for (size_t pos = 0; pos < order.size(); ++pos) {
            fe.push_back({rec.documents[order[pos]].id, static_cast<double>(order.size() - pos)});
          }
          continue;
        }
        // The first fusion decides the written ranking; scores are the fused ones.
        std::vector<RankedDocument> ranked;
        for (size_t i : order) {
          for (const RankedDocument& d : r.ranked) {
            if (d.index == i) {
              ranked.push_back(d);
              ranked.back().score = fused[i];
            }
          }
        }
        r.ranked = std::move(ranked);
      }
    }
    nlohmann::json ranking = nlohmann::json::array();
    int rank = 0;
    for (size_t pos = 0; pos < r.ranked.size(); ++pos) {
      const RankedDocument& d = r.ranked[pos];
      // Distinct descending run scores, so that trec_eval's tie-break cannot reorder the ranking.
      entries.push_back({d.doc_id, static_cast<double>(r.ranked.size() - pos)});
      if (trec) {
        out_text += rec.query_id + " Q0 " + d.doc_id + " " + std::to_string(++rank) + " " +
                    format_score(d.score) + " blockrank-" + rerank_mode_name(mode) + "\n";
      } else {
        ranking.push_back({{"doc_id", d.doc_id}, {"score", d.score}});
      }
    }
    if (!trec) {
      nlohmann::json line = {{"query_id", rec.query_id}, {"ranking", ranking}};
      if (mode == RerankMode::kDecode) {
        line["generated"] = r.generated_text;
      }
      if (r.query_truncated) {
        line["query_truncated"] = true;
      }
      out_text += line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    }
    if (!rec.answer_ids.empty()) {
      ++answered;
      if (std::find(rec.answer_ids.begin(), rec.answer_ids.end(), r.ranked.front().doc_id) !=
          rec.answer_ids.end()) {
        ++answer_hits;
      }
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (flags.output.empty()) {
    std::fwrite(out_text.data(), 1, out_text.size(), stdout);
  } else {
    std::ofstream f(flags.output, std::ios::binary | std::ios::trunc);
    if (!f || !f.write(out_text.data(), static_cast<std::streamsize>(out_text.size()))) {
      return Status::io_error(flags.output + ": cannot write");
    }
  }
  // Metrics go to stdout when the rankings went to a file, else to stderr so stdout stays JSONL.
  std::FILE* report = flags.output.empty() ? stderr : stdout;
  std::fprintf(report, "reranked %zu queries (%zu documents, mode %s) in %.2f s (%.1f ms/query)\n",
               run.size(), documents, rerank_mode_name(mode), seconds,
               run.empty() ? 0.0 : 1000.0 * seconds / static_cast<double>(run.size()));
  if (!run.empty()) {
    const double nq = static_cast<double>(run.size());
    std::fprintf(report, "per query: %.0f prompt tokens, prompt %.1f ms, model %.1f ms\n",
                 static_cast<double>(prompt_tokens) / nq, 1000.0 * prompt_seconds / nq,
                 1000.0 * model_seconds / nq);
  }
  const RankerCacheStats cs = reranker->ranker().cache_stats();
  if (cs.enabled) {
    std::fprintf(
        report,
        "kv cache: %llu lookups, %llu memory hits, %llu disk hits, %llu misses, %llu of "
        "%llu instruction-block tokens reused, %llu corrupt, %llu puts dropped (disk: %s)\n",
        static_cast<unsigned long long>(cs.store.lookups),
        static_cast<unsigned long long>(cs.store.memory_hits),
        static_cast<unsigned long long>(cs.store.disk_hits),
        static_cast<unsigned long long>(cs.store.misses),
        static_cast<unsigned long long>(cs.reused_tokens),
        static_cast<unsigned long long>(cs.prefix_tokens),
        static_cast<unsigned long long>(cs.store.corruptions),
        static_cast<unsigned long long>(cs.puts_dropped), cs.disk_status.c_str());
  }
  if (!flags.qrels.empty()) {
    MetricOptions mo;  // nDCG@10, MRR@10, P@1 with trec_eval semantics
    print_metrics(report, "input", evaluate_run(input_run, qrels, mo));
    for (size_t f = 0; f < fusions.size(); ++f) {
      const std::string label = fusions.size() == 1 && fusions[f].method == FusionMethod::kRerank
                                    ? std::string("reranked")
                                    : "reranked (" + fusion_name(fusions[f]) + ")";
      print_metrics(report, label.c_str(),
                    evaluate_run(f == 0 ? run : fused_runs[f - 1], qrels, mo));
    }
  } else if (answered > 0) {
    std::fprintf(report, "P@1 %.4f (answer_ids, %d queries)\n",
                 static_cast<double>(answer_hits) / answered, answered);
  }
  return Status::ok();
}

}  // namespace

void add_rerank_command(CLI::App& app, CommandContext& ctx) {
  auto flags = std::make_shared<RerankFlags>();
  CLI::App* cmd = app.add_subcommand(
      "rerank",
      "Rerank candidate documents with a BlockRank model (attention or decode inference) and "
      "report nDCG@10 / P@1 / MRR@10");
  cmd->add_option("--model", flags->model,
                  "Model directory (config.json, safetensors, tokenizer.json, blockrank.json)")
      ->required();
  cmd->add_option("--input", flags->input,
                  "Candidates: upstream JSONL {query, query_id, documents, answer_ids} or a "
                  "rank_llm retrieve_results JSON array")
      ->required();
  cmd->add_option("--mode", flags->mode, "attention or decode")->capture_default_str();
  cmd->add_option("--qrels", flags->qrels, "Relevance judgements (TREC or BEIR TSV)");
  cmd->add_option("--output", flags->output,
                  "Rankings: JSONL, or a TREC run when the name ends in .trec (default: stdout)");
  cmd->add_option("--tokenizer", flags->tokenizer,
                  "tokenizer.json or a directory holding one (default: the model directory)");
  cmd->add_option("--template", flags->prompt_template,
                  "Prompt template: mistral or chatml (default: blockrank.json)");
  cmd->add_option("--device", flags->device, "Device (cpu, cuda, cuda:N)")->capture_default_str();
  cmd->add_option("--dtype", flags->dtype, "Compute dtype (auto, float32, bfloat16)")
      ->capture_default_str();
  cmd->add_option("--threads", flags->threads, "CPU intra-op threads (0 = all cores)")
      ->capture_default_str();
  cmd->add_option("--max-block-length", flags->max_block_length,
                  "Longest block in tokens (0 = blockrank.json, default 384)")
      ->capture_default_str();
  cmd->add_option("--candidates", flags->candidates,
                  "Rerank only the first N candidates of each query (0 = all)")
      ->capture_default_str();
  cmd->add_option("--fusion", flags->fusion,
                  "rerank, interpolate:ALPHA (ALPHA = first-stage weight of min-max scores) or "
                  "model (the model's blockrank.json \"fusion\"); repeat for several metric "
                  "lines (the first decides the written ranking)")
      ->capture_default_str();
  cmd->add_option("--max-new-tokens", flags->max_new_tokens, "Decode mode: tokens generated")
      ->capture_default_str();
  cmd->add_option("--shuffle-seed", flags->shuffle_seed,
                  "Shuffle each query's candidates with seed + record number before numbering "
                  "them (-1 = no shuffle)")
      ->capture_default_str();
  cmd->add_option("--kv-cache", flags->kv_cache,
                  "Instruction-prefix KV cache directory (RocksDB; reused across runs; attention "
                  "mode only)");
  cmd->add_option("--kv-cache-memory-mb", flags->kv_cache_memory_mb,
                  "KV cache memory tier (device memory on CUDA)")
      ->capture_default_str();
  cmd->add_option("--kv-cache-disk-mb", flags->kv_cache_disk_mb, "KV cache disk tier")
      ->capture_default_str();
  cmd->callback([flags, &ctx]() {
    RerankFlags f = *flags;
    if (f.threads <= 0) {
      f.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    }
    ctx.exit_code = report_status("rerank", run_rerank(f, ctx));
  });
}

}  // namespace blockrank
