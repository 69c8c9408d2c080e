// SPDX-License-Identifier: Apache-2.0
// Ranker facade over Model (see ranker.h).
#include "ranker/core/ranker.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>

#include "ranker/core/model.h"
#include "ranker/core/prefix_cache.h"

namespace blockrank {

struct Ranker::Impl {
  std::unique_ptr<Model> model;
  BlockRankSettings settings;
  std::unique_ptr<internal::PrefixCache> cache;  // null: no KV cache
  int64_t block_size = KvCacheOptions().block_size;

  Status open_cache(const RankerOptions& options);
};

Status Ranker::Impl::open_cache(const RankerOptions& options) {
  const int64_t layer = settings.scoring_layer;
  const std::shared_ptr<Logger> logger = options.logger ? options.logger : Logger::null_logger();
  if (layer < 1) {
    BLOCKRANK_LOG_WARNING(logger,
                          "KV cache: off (the scoring layer is 0, so the instruction "
                          "block contributes nothing to the scores)");
    return Status::ok();
  }
  const LoadOptions& lo = model->options();
  // Whether score_documents takes the fused CUDA loop, whose values round differently from the
  // ATen loop's: part of the fingerprint.
  const bool fused = model->uses_fused_layers();
  KvCacheOptions ko;
  ko.disk_path = options.kv_cache_dir;
  ko.memory_budget_bytes = options.kv_cache_memory_bytes;
  ko.disk_budget_bytes = options.kv_cache_disk_bytes;
  ko.logger = logger;
  return internal::PrefixCache::open(
      ko, internal::make_kv_fingerprint(*model, layer, options.tokenizer_digest, fused), lo.device,
      lo.dtype, static_cast<size_t>(std::max(options.kv_cache_put_queue, 1)), &cache);
}

Ranker::Ranker() : impl_(std::make_unique<Impl>()) {}
Ranker::~Ranker() = default;

Status Ranker::open(const std::string& model_dir,
                    const RankerOptions& options,
                    std::unique_ptr<Ranker>* out) {
  LoadOptions lo;
  try {
    lo.device = c10::Device(options.device);
  } catch (const c10::Error& e) {
    return Status::invalid_argument("device '" + options.device +
                                    "': " + e.what_without_backtrace());
  }
  if (options.dtype == "auto") {
    lo.dtype = lo.device.is_cpu() ? at::kFloat : at::kBFloat16;
  } else if (options.dtype == "float32") {
    lo.dtype = at::kFloat;
  } else if (options.dtype == "bfloat16") {
    lo.dtype = at::kBFloat16;
  } else {
    return Status::invalid_argument("dtype '" + options.dtype +
                                    "': expected auto, float32 or bfloat16");
  }
  if (options.num_threads > 0) {
    at::set_num_threads(options.num_threads);
  }
  std::unique_ptr<Ranker> r(new Ranker());
  BLOCKRANK_RETURN_IF_ERROR(Model::load(model_dir, lo, &r->impl_->model));
  r->impl_->settings = r->impl_->model->settings();
  if (options.scoring_layer >= 0) {
    if (options.scoring_layer >= r->impl_->model->config().num_layers) {
      return Status::invalid_argument(
          "scoring_layer " + std::to_string(options.scoring_layer) + " is not below the model's " +
          std::to_string(r->impl_->model->config().num_layers) + " layers");
    }
    r->impl_->settings.scoring_layer = options.scoring_layer;
  }
  if (options.signal_rows >= 1) {
    r->impl_->settings.signal_rows = options.signal_rows;
  }
  if (options.kv_cache) {
    BLOCKRANK_RETURN_IF_ERROR(r->impl_->open_cache(options));
  }
  *out = std::move(r);
  return Status::ok();
}

Status Ranker::score(const RankerInput& input, std::vector<float>* scores) const {
  BlockLayout layout;
  layout.block_lengths.assign(input.block_lengths.begin(), input.block_lengths.end());
  layout.query_position_offset = impl_->settings.query_position_offset;
  std::vector<int64_t> ids(input.input_ids.begin(), input.input_ids.end());
  // Row groups (model.h PrefixKv): the block-aligned instruction part, the rest of block 0, the
  // rest of the prompt; the same with and without the cache, so cached scores equal uncached ones.
  const int64_t l0 = input.block_lengths.empty() ? 0 : input.block_lengths.front();
  const int64_t instruction = std::min<int64_t>(std::max(input.instruction_length, 0), l0);
  PrefixKv prefix;
  prefix.split = instruction / impl_->block_size * impl_->block_size;
  internal::PrefixCache* cache = impl_->cache.get();
  std::vector<int32_t> prefix_tokens;
  internal::PrefixLookup hit;
  at::Tensor present;
  // A malformed input is the model's to report; only a plausible block 0 goes to the cache.
  const bool use_cache = cache != nullptr && input.block_lengths.size() >= 3 && l0 >= 1 &&
                         l0 <= static_cast<int64_t>(input.input_ids.size());
  if (use_cache) {
    prefix_tokens.assign(input.input_ids.begin(), input.input_ids.begin() + l0);
    BLOCKRANK_RETURN_IF_ERROR(cache->lookup(prefix_tokens, prefix.split, &hit));
    prefix.past = hit.past;
    prefix.present = &present;
  }
  BLOCKRANK_ASSIGN_OR_RETURN(
      *scores, impl_->model->score_documents(ids, layout, impl_->settings.scoring_layer,
                                             impl_->settings.signal_rows, &prefix));
  if (use_cache && present.defined()) {
    try {
      c10::InferenceMode guard;
      const int64_t cached = hit.past.defined() ? hit.past.size(3) : 0;
      // The instruction part on its own first (new queries hit it), then the whole block 0 (the
      // same prompt again hits it).
      if (prefix.split > 0 && prefix.split < l0 && cached < prefix.split) {
        cache->put_async(
            std::vector<int32_t>(prefix_tokens.begin(), prefix_tokens.begin() + prefix.split),
            present.narrow(3, 0, prefix.split).contiguous());
      }
      cache->put_async(std::move(prefix_tokens), present);
    } catch (const c10::Error& e) {
      // Not storing costs only a later recomputation; the scores are already there.
      (void)e;
    }
  }
  return Status::ok();
}

Status Ranker::generate(const RankerInput& input,
                        const RankerGenerateOptions& options,
                        RankerGeneration* out) const {
  BlockLayout layout;
  layout.block_lengths.assign(input.block_lengths.begin(), input.block_lengths.end());
  layout.query_position_offset = impl_->settings.query_position_offset;
  GenerateRequest req;
  req.max_new_tokens = options.max_new_tokens;
  req.stop_ids.assign(options.stop_ids.begin(), options.stop_ids.end());
  req.scoring_layer = options.scores ? impl_->settings.scoring_layer : -1;
  req.signal_rows = impl_->settings.signal_rows;
  std::vector<int64_t> ids(input.input_ids.begin(), input.input_ids.end());
  BLOCKRANK_ASSIGN_OR_RETURN(GenerateResult r, impl_->model->generate(ids, layout, req));
  out->tokens.assign(r.tokens.begin(), r.tokens.end());
  out->scores = std::move(r.scores);
  return Status::ok();
}

const ModelConfig& Ranker::config() const {
  return impl_->model->config();
}
const BlockRankSettings& Ranker::settings() const {
  return impl_->settings;
}

RankerCacheStats Ranker::cache_stats() const {
  RankerCacheStats s;
  const internal::PrefixCache* cache = impl_->cache.get();
  if (cache == nullptr) {
    return s;
  }
  s.enabled = true;
  s.store = cache->store_stats();
  const internal::PrefixCacheCounters c = cache->counters();
  s.prefix_tokens = c.prefix_tokens;
  s.reused_tokens = c.reused_tokens;
  s.puts_queued = c.puts_queued;
  s.puts_dropped = c.puts_dropped;
  s.put_errors = c.put_errors;
  const Status disk = cache->disk_status();
  s.disk_status = disk.is_ok() ? "ok" : disk.to_string();
  return s;
}

void Ranker::flush_cache() const {
  if (impl_->cache != nullptr) {
    impl_->cache->flush();
  }
}

Status truncate_blocks(int64_t max_block_length, RankerInput* input) {
  if (max_block_length < 1) {
    return Status::invalid_argument("max_block_length must be >= 1");
  }
  int64_t total = 0, longest = 0;
  for (int32_t n : input->block_lengths) {
    if (n < 0) {
      return Status::invalid_argument("block lengths must be >= 0");
    }
    total += n;
    longest = std::max<int64_t>(longest, n);
  }
  if (total != static_cast<int64_t>(input->input_ids.size())) {
    return Status::invalid_argument("block lengths sum to " + std::to_string(total) +
                                    " but there are " + std::to_string(input->input_ids.size()) +
                                    " ids");
  }
  // Rounding up to 16 matches the reference's padded H, so the same tokens survive as in training.
  const int64_t h = (std::min(longest, max_block_length) + 15) / 16 * 16;
  std::vector<int32_t> ids;
  ids.reserve(input->input_ids.size());
  size_t start = 0;
  for (int32_t& n : input->block_lengths) {
    const int64_t keep = std::min<int64_t>(n, h);
    ids.insert(
        ids.end(), input->input_ids.begin() + static_cast<std::ptrdiff_t>(start),
        input->input_ids.begin() + static_cast<std::ptrdiff_t>(start + static_cast<size_t>(keep)));
    start += static_cast<size_t>(n);
    n = static_cast<int32_t>(keep);
  }
  input->input_ids = std::move(ids);
  return Status::ok();
}

}  // namespace blockrank
