// SPDX-License-Identifier: Apache-2.0
// Readers and writers for evaluation data: queries (BEIR queries.jsonl, TSV, TREC topics, SMART
// .I/.W), relevance judgements (TREC 4-column, BEIR TSV with header, 3-column "qid docid rel") and
// TREC run files ("qid Q0 docid rank score tag").
#ifndef BLOCKRANK_INDEXER_EVAL_DATA_H_
#define BLOCKRANK_INDEXER_EVAL_DATA_H_

#include <map>
#include <string>
#include <vector>

#include "blockrank/status.h"

namespace blockrank {

struct EvalQuery {
  std::string id;
  std::string text;
};

/// qrels[query_id][doc_id] = graded relevance (<= 0 means judged non-relevant).
using Qrels = std::map<std::string, std::map<std::string, int>>;

struct RunEntry {
  std::string doc_id;
  double score = 0;
};
/// run[query_id] = retrieved documents (any order; metrics sort them as trec_eval does).
using Run = std::map<std::string, std::vector<RunEntry>>;

struct QueryReaderOptions {
  /// "auto", "beir" (JSONL with _id/text), "tsv", "trec" (<top>/<num>/<title> or <DOC>/<DOCNO>),
  /// "smart" (.I/.W). Default: "auto".
  std::string format = "auto";
  /// SMART: number queries 1..N by position instead of by their .I value (Cranfield's qrels use
  /// positions because its .I numbers skip values). Default: false.
  bool number_by_position = false;
  /// TREC topics: which fields make the query text, e.g. {"title"} or {"title","desc"}.
  /// Default: {"title"}; topics without a <title> (CACM-style <DOC> topics) use their whole text.
  std::vector<std::string> trec_fields = {"title"};
};

Status read_queries(const std::string& path,
                    const QueryReaderOptions& options,
                    std::vector<EvalQuery>* queries);

struct QrelsReaderOptions {
  /// Maps relevance codes before use, e.g. Cranfield "1:4,2:3,3:2,4:1,-1:0". Empty: identity.
  std::string relevance_map;
};

Status read_qrels(const std::string& path, const QrelsReaderOptions& options, Qrels* qrels);

/// Reads a TREC run file; duplicate (query, doc) lines keep the first, as trec_eval does.
Status read_run(const std::string& path, Run* run);
/// Writes a TREC run: per query, entries sorted by score (descending), ranks 1..n.
Status write_run(const std::string& path, const Run& run, const std::string& tag);

/// Canonicalises ids such as "CACM-0756" and "CACM-756" (and "0756"/"756") to one spelling by
/// dropping leading zeros of the trailing number.
std::string normalize_numeric_id(const std::string& id);

}  // namespace blockrank

#endif  // BLOCKRANK_INDEXER_EVAL_DATA_H_
