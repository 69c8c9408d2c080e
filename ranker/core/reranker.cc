// SPDX-License-Identifier: Apache-2.0
// Reranker: prompt building, attention or decode ranking, and mapping prompt ids back to the
// caller's candidates (see reranker.h).
#include "ranker/core/reranker.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <numeric>
#include <random>
#include <utility>

namespace blockrank {

const char* rerank_mode_name(RerankMode mode) {
  return mode == RerankMode::kDecode ? "decode" : "attention";
}

StatusOr<RerankMode> parse_rerank_mode(std::string_view name) {
  if (name == "attention") {
    return RerankMode::kAttention;
  }
  if (name == "decode") {
    return RerankMode::kDecode;
  }
  return Status::invalid_argument("mode '" + std::string(name) +
                                  "': expected \"attention\" or \"decode\"");
}

Status RerankerOptions::validate() const {
  if (max_block_length < 0) {
    return Status::invalid_argument("max_block_length must be >= 0 (0: blockrank.json)");
  }
  if (max_new_tokens < 1) {
    return Status::invalid_argument("max_new_tokens must be >= 1");
  }
  if (!prompt_template.empty()) {
    BLOCKRANK_RETURN_IF_ERROR(parse_prompt_template(prompt_template).status());
  }
  return Status::ok();
}

std::vector<int32_t> parse_generated_ids(std::string_view text, int32_t num_documents) {
  std::vector<int32_t> ids;
  std::vector<bool> seen(static_cast<size_t>(std::max(num_documents, 0)), false);
  size_t i = 0;
  while (i < text.size() && text[i] != ']') {
    if (text[i] < '0' || text[i] > '9') {
      ++i;
      continue;
    }
    const size_t begin = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      ++i;
    }
    // A digit run glued to a letter ("id3", "3rd") or preceded by '-' is not an id.
    const bool glued = (begin > 0 && (std::isalpha(static_cast<unsigned char>(text[begin - 1])) ||
                                      text[begin - 1] == '-')) ||
                       (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i])));
    if (glued || i - begin > 9) {
      continue;
    }
    const int32_t k = std::stoi(std::string(text.substr(begin, i - begin)));
    if (k < num_documents && !seen[static_cast<size_t>(k)]) {
      seen[static_cast<size_t>(k)] = true;
      ids.push_back(k);
    }
  }
  return ids;
}

struct Reranker::Impl {
  std::unique_ptr<Ranker> ranker;
  std::unique_ptr<Tokenizer> tokenizer;
  PromptTemplate tmpl = PromptTemplate::kMistral;
  int64_t max_block_length = 384;
  int32_t max_new_tokens = 32;
  // EOS and every token whose string contains "]": the id list is complete once one appears
  // ("]", "]</s>", "],", ...), whatever merges the vocabulary has.
  std::vector<int32_t> stop_ids;
  // Tokens at the start of block 0 that no query changes (the KV cache's shared instruction part).
  int32_t instruction_length = 0;
};

namespace {

// The leading block-0 tokens that are the same whatever the query: the longest common prefix of
// block 0 rendered for a few unlike queries (letters, digits, punctuation, non-ASCII; tokenizers
// may merge the query's first characters with the text before it, so one query is not enough).
// A wrong guess could only cost hits: cache keys are the tokens themselves.
Status instruction_token_count(const Tokenizer& tokenizer, PromptTemplate tmpl, int32_t* out) {
  const char* queries[] = {"what is x", "42", "? !", "\xc3\xa9t\xc3\xa9", "Zebra"};
  std::vector<int32_t> common;
  bool first = true;
  for (const char* q : queries) {
    const PromptPieces pieces = render_prompt_pieces(tmpl, q, {PromptDocument{"", "d"}});
    std::vector<int32_t> ids;
    BLOCKRANK_RETURN_IF_ERROR(tokenizer.encode(pieces.instruction, &ids));
    if (first) {
      common = ids;
      first = false;
    } else {
      size_t n = 0;
      while (n < common.size() && n < ids.size() && common[n] == ids[n]) {
        ++n;
      }
      common.resize(n);
    }
  }
  *out = static_cast<int32_t>(common.size());
  return Status::ok();
}

}  // namespace

Reranker::Reranker() : impl_(std::make_unique<Impl>()) {}
Reranker::~Reranker() = default;

const Ranker& Reranker::ranker() const {
  return *impl_->ranker;
}
const Tokenizer& Reranker::tokenizer() const {
  return *impl_->tokenizer;
}
PromptTemplate Reranker::prompt_template() const {
  return impl_->tmpl;
}
int64_t Reranker::max_block_length() const {
  return impl_->max_block_length;
}

Status Reranker::open(const std::string& model_dir,
                      const RerankerOptions& options,
                      std::unique_ptr<Reranker>* out) {
  BLOCKRANK_RETURN_IF_ERROR(options.validate());
  std::unique_ptr<Reranker> r(new Reranker());
  Impl& impl = *r->impl_;
  BLOCKRANK_RETURN_IF_ERROR(
      Tokenizer::load(options.tokenizer.empty() ? model_dir : options.tokenizer, &impl.tokenizer));
  RankerOptions ranker_options = options.ranker;
  ranker_options.tokenizer_digest = impl.tokenizer->digest();
  BLOCKRANK_RETURN_IF_ERROR(Ranker::open(model_dir, ranker_options, &impl.ranker));
  const int64_t model_vocab = impl.ranker->config().vocab_size;
  if (impl.tokenizer->vocab_size() > model_vocab) {
    return Status::invalid_argument(
        model_dir + ": the tokenizer has " + std::to_string(impl.tokenizer->vocab_size()) +
        " ids but the model's vocabulary (config.json vocab_size) has only " +
        std::to_string(model_vocab));
  }
  const BlockRankSettings& settings = impl.ranker->settings();
  BLOCKRANK_ASSIGN_OR_RETURN(
      impl.tmpl, parse_prompt_template(options.prompt_template.empty() ? settings.prompt_template
                                                                       : options.prompt_template));
  impl.max_block_length =
      options.max_block_length > 0 ? options.max_block_length : settings.max_block_length;
  impl.max_new_tokens = options.max_new_tokens;
  BLOCKRANK_RETURN_IF_ERROR(
      instruction_token_count(*impl.tokenizer, impl.tmpl, &impl.instruction_length));
  if (auto eos = impl.tokenizer->eos_id()) {
    impl.stop_ids.push_back(*eos);
  }
  for (int32_t id = 0; id < impl.tokenizer->vocab_size(); ++id) {
    if (impl.tokenizer->id_to_token(id).find(']') != std::string::npos) {
      impl.stop_ids.push_back(id);
    }
  }
  *out = std::move(r);
  return Status::ok();
}

Status Reranker::rerank(std::string_view query,
                        const std::vector<RerankDocument>& documents,
                        const RerankOptions& options,
                        Reranking* out) const {
  const Impl& impl = *impl_;
  const size_t n = documents.size();
  if (n == 0) {
    return Status::invalid_argument("rerank: no candidate documents");
  }
  // order[k] = candidate index shown as prompt id k.
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  if (options.shuffle_seed) {
    std::mt19937_64 rng(*options.shuffle_seed);
    for (size_t i = n - 1; i > 0; --i) {
      std::swap(order[i], order[static_cast<size_t>(rng() % (i + 1))]);
    }
  }
  std::vector<PromptDocument> prompt_docs(n);
  for (size_t k = 0; k < n; ++k) {
    prompt_docs[k].title = documents[order[k]].title;
    prompt_docs[k].text = documents[order[k]].text;
  }
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  PromptOptions po;
  po.tmpl = impl.tmpl;
  po.max_block_length = impl.max_block_length;
  Prompt prompt;
  BLOCKRANK_RETURN_IF_ERROR(build_prompt(*impl.tokenizer, query, prompt_docs, po, &prompt));
  prompt.input.instruction_length = impl.instruction_length;

  const auto t1 = Clock::now();
  Reranking r;
  r.prompt_seconds = std::chrono::duration<double>(t1 - t0).count();
  r.prompt_tokens = static_cast<int64_t>(prompt.input.input_ids.size());
  r.block_length = prompt.block_length;
  r.query_truncated = prompt.query_truncated;
  std::vector<float> attention;
  if (options.mode == RerankMode::kAttention) {
    BLOCKRANK_RETURN_IF_ERROR(impl.ranker->score(prompt.input, &attention));
  } else {
    RankerGenerateOptions go;
    go.max_new_tokens = impl.max_new_tokens;
    go.stop_ids = impl.stop_ids;
    RankerGeneration gen;
    BLOCKRANK_RETURN_IF_ERROR(impl.ranker->generate(prompt.input, go, &gen));
    attention = std::move(gen.scores);
    // A model whose vocabulary is larger than the tokenizer's (Qwen pads it) can emit ids the
    // tokenizer cannot decode; they carry no digits, so dropping them loses nothing.
    std::vector<int32_t> known;
    for (int32_t id : gen.tokens) {
      if (id >= 0 && id < impl.tokenizer->vocab_size()) {
        known.push_back(id);
      }
    }
    if (!impl.tokenizer->decode(known, &r.generated_text).is_ok()) {
      r.generated_text.clear();  // undecodable output ranks like an unparsable one
    }
    r.generated_ids = parse_generated_ids(r.generated_text, static_cast<int32_t>(n));
  }
  r.model_seconds = std::chrono::duration<double>(Clock::now() - t1).count();
  if (attention.size() != n) {
    return Status::internal("rerank: got " + std::to_string(attention.size()) + " scores for " +
                            std::to_string(n) + " documents");
  }

  // Prompt ids best first: attention order (stable, so ties keep the prompt order), with the
  // decoded ids moved to the front in generated order.
  std::vector<int32_t> by_prompt_id(n);
  std::iota(by_prompt_id.begin(), by_prompt_id.end(), 0);
  std::stable_sort(by_prompt_id.begin(), by_prompt_id.end(), [&](int32_t a, int32_t b) {
    return attention[static_cast<size_t>(a)] > attention[static_cast<size_t>(b)];
  });
  std::vector<bool> generated(n, false);
  if (options.mode == RerankMode::kDecode) {
    for (int32_t k : r.generated_ids) {
      generated[static_cast<size_t>(k)] = true;
    }
    std::vector<int32_t> ranked_ids = r.generated_ids;
    for (int32_t k : by_prompt_id) {
      if (!generated[static_cast<size_t>(k)]) {
        ranked_ids.push_back(k);
      }
    }
    by_prompt_id = std::move(ranked_ids);
  }
  r.ranked.reserve(n);
  for (size_t rank = 0; rank < n; ++rank) {
    const auto k = static_cast<size_t>(by_prompt_id[rank]);
    RankedDocument d;
    d.index = order[k];
    d.doc_id = documents[d.index].id;
    d.prompt_id = static_cast<int32_t>(k);
    d.attention = attention[k];
    d.generated = generated[k];
    d.score = options.mode == RerankMode::kAttention ? static_cast<double>(attention[k])
                                                     : static_cast<double>(n - rank);
    r.ranked.push_back(std::move(d));
  }
  // Stable sorting made ties keep the prompt order; with a shuffle, keep the candidate order.
  if (options.mode == RerankMode::kAttention && options.shuffle_seed) {
    std::stable_sort(r.ranked.begin(), r.ranked.end(),
                     [](const RankedDocument& a, const RankedDocument& b) {
                       return a.score > b.score || (a.score == b.score && a.index < b.index);
                     });
  }
  *out = std::move(r);
  return Status::ok();
}

}  // namespace blockrank
