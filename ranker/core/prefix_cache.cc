// SPDX-License-Identifier: Apache-2.0
// PrefixCache: the ranker's use of the KV cache store (see prefix_cache.h and kv_cache.h).
#include "ranker/core/prefix_cache.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>

namespace blockrank::internal {

namespace {

// A payload that is a tensor's bytes, kept alive with it: CPU tensors expose their memory in
// place, device tensors are copied to the host only when the disk tier writes them.
class TensorPayload final : public KvPayload {
 public:
  explicit TensorPayload(at::Tensor t) : tensor_(std::move(t)) {}
  size_t size() const override { return static_cast<size_t>(tensor_.nbytes()); }
  const uint8_t* host_data() const override {
    return tensor_.is_cpu() ? static_cast<const uint8_t*>(tensor_.data_ptr()) : nullptr;
  }
  Status copy_to_host(uint8_t* dst) const override {
    try {
      c10::InferenceMode guard;
      const at::Tensor host = tensor_.to(at::kCPU).contiguous();
      std::memcpy(dst, host.data_ptr(), size());
    } catch (const c10::Error& e) {
      return Status::internal(std::string("KV cache: device-to-host copy failed: ") +
                              e.what_without_backtrace());
    }
    return Status::ok();
  }
  const at::Tensor& tensor() const { return tensor_; }

 private:
  at::Tensor tensor_;
};

KvDtype kv_dtype_of(c10::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return KvDtype::kFloat32;
    case at::kHalf:
      return KvDtype::kFloat16;
    default:
      return KvDtype::kBFloat16;
  }
}

}  // namespace

KvModelFingerprint make_kv_fingerprint(const Model& model,
                                       int64_t layer,
                                       const std::string& tokenizer_digest,
                                       bool fused_path) {
  const ModelConfig& c = model.config();
  KvModelFingerprint fp;
  fp.architecture = architecture_name(c.arch);
  fp.weights_digest = model.weights_digest();
  fp.tokenizer_digest = tokenizer_digest.empty() ? "none" : tokenizer_digest;
  char theta[64];
  std::snprintf(theta, sizeof(theta), "%.17g", c.rope_theta);
  char eps[64];
  std::snprintf(eps, sizeof(eps), "%.17g", c.rms_norm_eps);
  // "block0-causal-from-0": block 0 sits at positions 0..L0-1 with causal attention (§2.1/§2.2),
  // which is what makes its K/V a function of its tokens alone. "groups=v1": the row grouping of
  // model.h's PrefixKv (it changes rounding on the CPU).
  fp.position_scheme = std::string("rope;theta=") + theta + ";rms_eps=" + eps +
                       ";blockrank-positions=v1;block0-causal-from-0;groups=v1;device=" +
                       c10::DeviceTypeName(model.options().device.type(), /*lower_case=*/true) +
                       ";path=" + (fused_path ? "cuda-fused" : "aten");
  fp.dtype = kv_dtype_of(model.options().dtype);
  fp.num_layers = static_cast<int32_t>(layer);
  fp.num_kv_heads = static_cast<int32_t>(c.num_kv_heads);
  fp.head_dim = static_cast<int32_t>(c.head_dim);
  return fp;
}

class PrefixCache::Impl {
 public:
  std::unique_ptr<KvCache> store;
  KvModelFingerprint fp;
  c10::Device device = c10::Device(c10::kCPU);
  c10::ScalarType dtype = at::kFloat;
  size_t capacity = 8;
  std::shared_ptr<Logger> logger;

  std::mutex mu;
  std::condition_variable wake, idle;
  std::deque<std::pair<std::vector<int32_t>, at::Tensor>> queue;
  bool writing = false;
  bool stop = false;
  std::thread writer;

  std::atomic<uint64_t> prefix_tokens{0}, reused_tokens{0}, puts_queued{0}, puts_dropped{0},
      put_errors{0};

  void run() {
    while (true) {
      std::pair<std::vector<int32_t>, at::Tensor> item;
      {
        std::unique_lock<std::mutex> lock(mu);
        wake.wait(lock, [&] { return stop || !queue.empty(); });
        if (queue.empty()) {
          return;  // stop requested and drained
        }
        item = std::move(queue.front());
        queue.pop_front();
        writing = true;
      }
      Status st;
      try {
        c10::InferenceMode guard;
        st = store->put(fp, item.first, std::make_shared<TensorPayload>(std::move(item.second)));
      } catch (const std::exception& e) {
        st = Status::internal(std::string("KV cache put threw: ") + e.what());
      }
      if (!st.is_ok()) {
        put_errors.fetch_add(1);
        BLOCKRANK_LOG_WARNING(logger, "KV cache: put of %zu tokens failed: %s", item.first.size(),
                              st.to_string().c_str());
      }
      {
        std::lock_guard<std::mutex> lock(mu);
        writing = false;
      }
      idle.notify_all();
    }
  }

  // The [layers, 2, Hkv, n, D] tensor of a hit, on the model's device.
  at::Tensor tensor_of(const KvValue& value, std::shared_ptr<const KvPayload>* holder) const {
    const std::vector<int64_t> shape = {fp.num_layers, 2, fp.num_kv_heads, value.header.num_tokens,
                                        fp.head_dim};
    if (const auto* tp = dynamic_cast<const TensorPayload*>(value.payload.get())) {
      at::Tensor t = tp->tensor().view(shape);
      *holder = value.payload;
      return t.device() == device ? t : t.to(device);
    }
    const uint8_t* bytes = value.payload->host_data();
    if (bytes == nullptr) {
      return at::Tensor();
    }
    // A host payload viewed in place (read only; `holder` keeps it alive), moved when the model
    // is elsewhere.
    at::Tensor view = at::from_blob(const_cast<uint8_t*>(bytes), shape,
                                    at::TensorOptions().dtype(dtype).device(at::kCPU));
    if (device.is_cpu()) {
      *holder = value.payload;
      return view;
    }
    return view.to(device);
  }
};

PrefixCache::PrefixCache() : impl_(std::make_unique<Impl>()) {}

PrefixCache::~PrefixCache() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stop = true;
  }
  impl_->wake.notify_all();
  if (impl_->writer.joinable()) {
    impl_->writer.join();
  }
}

Status PrefixCache::open(KvCacheOptions options,
                         KvModelFingerprint fingerprint,
                         c10::Device device,
                         c10::ScalarType dtype,
                         size_t queue_capacity,
                         std::unique_ptr<PrefixCache>* out) {
  BLOCKRANK_RETURN_IF_ERROR(fingerprint.validate());
  std::unique_ptr<PrefixCache> cache(new PrefixCache());
  Impl& impl = *cache->impl_;
  impl.fp = std::move(fingerprint);
  impl.device = device;
  impl.dtype = dtype;
  impl.capacity = std::max<size_t>(queue_capacity, 1);
  impl.logger = options.logger ? options.logger : Logger::null_logger();
  if (device.is_cuda() && !options.memory_allocator) {
    // The memory tier holds device tensors: a disk hit is uploaded once, at promotion.
    options.memory_allocator = [device, dtype](
                                   const uint8_t* host, size_t size,
                                   std::shared_ptr<const KvPayload>* payload) -> Status {
      const size_t elem = at::elementSize(dtype);
      if (size % elem != 0) {
        return Status::invalid_argument("KV cache: payload is not a whole number of elements");
      }
      try {
        c10::InferenceMode guard;
        at::Tensor src =
            at::from_blob(const_cast<uint8_t*>(host), {static_cast<int64_t>(size / elem)},
                          at::TensorOptions().dtype(dtype));
        *payload = std::make_shared<TensorPayload>(src.to(device));
      } catch (const c10::Error& e) {
        return Status::resource_exhausted(std::string("KV cache: upload to the device failed: ") +
                                          e.what_without_backtrace());
      }
      return Status::ok();
    };
  }
  BLOCKRANK_RETURN_IF_ERROR(KvCache::open(options, &impl.store));
  impl.writer = std::thread([&impl] { impl.run(); });
  *out = std::move(cache);
  return Status::ok();
}

Status PrefixCache::lookup(const std::vector<int32_t>& tokens, int64_t split, PrefixLookup* out) {
  *out = PrefixLookup();
  const int64_t n = static_cast<int64_t>(tokens.size());
  impl_->prefix_tokens.fetch_add(static_cast<uint64_t>(n));
  KvLookupResult r;
  BLOCKRANK_RETURN_IF_ERROR(impl_->store->lookup(impl_->fp, tokens, &r));
  if (!r.hit()) {
    return Status::ok();
  }
  // Use the hit up to the largest row-group boundary it covers: n, else split.
  int64_t usable = 0;
  if (r.num_tokens >= n) {
    usable = n;
  } else if (split > 0 && r.num_tokens >= split) {
    usable = split;
  }
  if (usable == 0) {
    return Status::ok();
  }
  try {
    c10::InferenceMode guard;
    at::Tensor t = impl_->tensor_of(r.value, &out->holder);
    if (!t.defined()) {
      return Status::ok();
    }
    out->past = usable < r.num_tokens ? t.narrow(3, 0, usable) : t;
  } catch (const c10::Error& e) {
    BLOCKRANK_LOG_WARNING(impl_->logger, "KV cache: cannot use a hit of %d tokens: %s",
                          r.num_tokens, e.what_without_backtrace());
    *out = PrefixLookup();
    return Status::ok();
  }
  impl_->reused_tokens.fetch_add(static_cast<uint64_t>(usable));
  return Status::ok();
}

void PrefixCache::put_async(std::vector<int32_t> tokens, at::Tensor kv) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->queue.size() >= impl_->capacity) {
      impl_->puts_dropped.fetch_add(1);
      return;
    }
    impl_->queue.emplace_back(std::move(tokens), std::move(kv));
    impl_->puts_queued.fetch_add(1);
  }
  impl_->wake.notify_one();
}

void PrefixCache::flush() {
  std::unique_lock<std::mutex> lock(impl_->mu);
  impl_->idle.wait(lock, [&] { return impl_->queue.empty() && !impl_->writing; });
}

int64_t PrefixCache::block_aligned_length(int64_t num_tokens) const {
  return impl_->store->block_aligned_length(static_cast<int32_t>(num_tokens));
}

KvCacheStats PrefixCache::store_stats() const {
  return impl_->store->stats();
}

PrefixCacheCounters PrefixCache::counters() const {
  PrefixCacheCounters c;
  c.prefix_tokens = impl_->prefix_tokens.load();
  c.reused_tokens = impl_->reused_tokens.load();
  c.puts_queued = impl_->puts_queued.load();
  c.puts_dropped = impl_->puts_dropped.load();
  c.put_errors = impl_->put_errors.load();
  return c;
}

Status PrefixCache::disk_status() const {
  return impl_->store->disk_status();
}

const KvModelFingerprint& PrefixCache::fingerprint() const {
  return impl_->fp;
}

Status PrefixCache::clear() {
  flush();
  return impl_->store->clear();
}

}  // namespace blockrank::internal
