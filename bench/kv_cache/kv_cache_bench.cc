// SPDX-License-Identifier: Apache-2.0
// Cost of the KV cache's store operations for instruction-prefix values the size the ranker will
// hand in: Qwen2.5-0.5B (K+V of layers 0..15, 2 KV heads x 64, bf16, 150 tokens = 1.2 MB) and
// Mistral-7B (layers 0..20, 8 x 128, bf16, 150 tokens = 12.9 MB). Payloads are random bytes, as
// bf16 K/V is close to incompressible. Prints a markdown table for docs/BENCHMARKS.md.
//
// What each row times (one call each, median and p90 over --reps calls):
//  - key (miss): lookup of a prefix that is not cached: the SHA-256 chain + index probes.
//  - memory hit: lookup served from the memory tier (no copy: a shared payload is returned).
//  - disk hit: lookup with the memory tier off: RocksDB read + header/XXH64 check. The blob files
//    were just written, so they come from the OS page cache, not the device.
//  - put (memory only) and put (memory + disk): includes the copy into the RocksDB value, the XXH64
//    of the payload and the write (WAL off, as by default).
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ranker/kv_cache/kv_cache.h"

#include <CLI/CLI.hpp>

namespace blockrank {
namespace {

struct Shape {
  const char* name;
  int32_t num_layers;
  int32_t num_kv_heads;
  int32_t head_dim;
};

KvModelFingerprint fingerprint_for(const Shape& shape) {
  KvModelFingerprint fp;
  fp.architecture = shape.name;
  fp.weights_digest = "bench";
  fp.tokenizer_digest = "bench";
  fp.position_scheme = "rope";
  fp.dtype = KvDtype::kBFloat16;
  fp.num_layers = shape.num_layers;
  fp.num_kv_heads = shape.num_kv_heads;
  fp.head_dim = shape.head_dim;
  return fp;
}

std::vector<int32_t> prompt(int32_t n, uint32_t variant) {
  std::vector<int32_t> t(n);
  for (int32_t i = 0; i < n; ++i) {
    t[i] = static_cast<int32_t>(1000 + i * 13 + (variant << 20));
  }
  return t;
}

struct Timing {
  double median_us = 0;
  double p90_us = 0;
};

Timing time_calls(int reps, const std::function<void(int)>& call) {
  std::vector<double> us;
  us.reserve(reps);
  for (int i = 0; i < reps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    call(i);
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
                     .count());
  }
  std::sort(us.begin(), us.end());
  return {us[us.size() / 2], us[std::min(us.size() - 1, us.size() * 9 / 10)]};
}

void check(const Status& s) {
  if (!s.is_ok()) {
    std::fprintf(stderr, "kv_cache_bench: %s\n", s.to_string().c_str());
    std::exit(1);
  }
}

// GB/s only where bytes move (disk rows, puts); a memory hit hands out a shared pointer.
void row(const char* shape, const char* op, size_t bytes, const Timing& t) {
  const double gbps = static_cast<double>(bytes) / (t.median_us * 1e-6) / 1e9;
  std::printf("| %s | %s | %.1f | %.1f | %s |\n", shape, op, t.median_us, t.p90_us,
              bytes > 0 ? std::to_string(gbps).substr(0, 5).c_str() : "-");
}

void run_shape(const Shape& shape, int32_t tokens, int reps, const std::string& dir) {
  const KvModelFingerprint fp = fingerprint_for(shape);
  const size_t bytes = fp.bytes_per_token() * static_cast<size_t>(tokens);
  std::mt19937_64 rng(42);
  std::string random(bytes, '\0');
  for (size_t i = 0; i + 8 <= bytes; i += 8) {
    const uint64_t v = rng();
    std::memcpy(&random[i], &v, 8);
  }
  const auto payload = KvPayload::from_host(random);

  // Memory only: key cost, put, hit.
  {
    KvCacheOptions o;
    o.memory_budget_bytes = uint64_t{4} << 30;
    std::unique_ptr<KvCache> cache;
    check(KvCache::open(o, &cache));
    KvLookupResult r;
    row(shape.name, "key (miss)", 0, time_calls(reps, [&](int i) {
          check(cache->lookup(fp, prompt(tokens, 1000000 + i), &r));
        }));
    row(shape.name, "put (memory only)", 0,
        time_calls(reps, [&](int i) { check(cache->put(fp, prompt(tokens, i), payload)); }));
    row(shape.name, "memory hit", 0, time_calls(reps, [&](int i) {
          check(cache->lookup(fp, prompt(tokens, i), &r));
          if (r.tier != KvTier::kMemory) {
            std::exit(2);
          }
        }));
  }
  // Disk: put through to RocksDB, then hits with the memory tier off.
  const std::string path = dir + "/" + shape.name;
  {
    KvCacheOptions o;
    o.disk_path = path;
    o.memory_budget_bytes = 0;
    std::unique_ptr<KvCache> cache;
    check(KvCache::open(o, &cache));
    check(cache->disk_status());
    check(cache->clear());
    row(shape.name, "put (memory + disk)", bytes,
        time_calls(reps, [&](int i) { check(cache->put(fp, prompt(tokens, i), payload)); }));
  }
  {
    KvCacheOptions o;
    o.disk_path = path;
    o.memory_budget_bytes = 0;
    std::unique_ptr<KvCache> cache;
    check(KvCache::open(o, &cache));
    KvLookupResult r;
    row(shape.name, "disk hit (after reopen)", bytes, time_calls(reps, [&](int i) {
          check(cache->lookup(fp, prompt(tokens, i), &r));
          if (r.tier != KvTier::kDisk) {
            std::exit(3);
          }
        }));
    check(cache->clear());
  }
}

}  // namespace
}  // namespace blockrank

int main(int argc, char** argv) {
  CLI::App app("KV cache store benchmark");
  std::string dir = "/tmp/kv_cache_bench";
  int reps = 40;
  int32_t tokens = 150;
  app.add_option("--dir", dir, "Scratch directory for the RocksDB stores")->capture_default_str();
  app.add_option("--reps", reps, "Calls timed per row")->capture_default_str();
  app.add_option("--tokens", tokens, "Prefix length in tokens")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  std::printf("value bytes: Qwen2.5-0.5B %" PRIu64 ", Mistral-7B %" PRIu64 " (%d tokens)\n\n",
              uint64_t{16} * 2 * 2 * 64 * 2 * static_cast<uint64_t>(tokens),
              uint64_t{21} * 2 * 8 * 128 * 2 * static_cast<uint64_t>(tokens), tokens);
  std::printf("| shape | operation | median us | p90 us | GB/s (median) |\n");
  std::printf("| --- | --- | --- | --- | --- |\n");
  const blockrank::Shape qwen{"Qwen2.5-0.5B", 16, 2, 64};
  const blockrank::Shape mistral{"Mistral-7B", 21, 8, 128};
  blockrank::run_shape(qwen, tokens, reps, dir);
  blockrank::run_shape(mistral, tokens, reps, dir);
  return 0;
}
