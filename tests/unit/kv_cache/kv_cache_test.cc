// SPDX-License-Identifier: Apache-2.0
// KvCache behaviour: longest-prefix hits and misses, LRU eviction per tier, persistence across
// reopen and across processes, corrupt entries dropped as misses, RocksDB failures degrading to the
// memory tier, and many threads reading and writing at once. Values are small (a few KB) so the
// suite runs in seconds; sizes do not change the code paths.
#include "ranker/kv_cache/kv_cache.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>

#include "ranker/kv_cache/kv_format.h"
#include "ranker/kv_cache/kv_hash.h"
#include "test_util.h"

#include <sys/stat.h>
#include <sys/wait.h>

namespace blockrank {
namespace {

constexpr int32_t kBlock = 16;

KvModelFingerprint test_fingerprint() {
  KvModelFingerprint fp;
  fp.architecture = "Qwen2ForCausalLM";
  fp.weights_digest = "sha256:weights-0";
  fp.tokenizer_digest = "sha256:tokenizer-0";
  fp.position_scheme = "rope;theta=1000000;blockrank";
  fp.dtype = KvDtype::kBFloat16;
  fp.num_layers = 2;
  fp.num_kv_heads = 2;
  fp.head_dim = 8;  // 2*2*2*8*2 = 128 bytes per token
  return fp;
}

std::vector<int32_t> make_tokens(int n, int32_t start) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) {
    t[i] = start + i * 7;
  }
  return t;
}

std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Deterministic bytes for a prefix: a function of all its tokens, so any mix-up between entries
// (wrong key, wrong length) shows up as different bytes.
std::string expected_bytes(const KvModelFingerprint& fp,
                           const std::vector<int32_t>& tokens,
                           size_t n) {
  uint64_t state = 0x9E3779B97F4A7C15ULL ^ n;
  for (size_t i = 0; i < n; ++i) {
    state = (state ^ static_cast<uint32_t>(tokens[i])) * 0x100000001B3ULL;
  }
  std::string bytes(fp.bytes_per_token() * n, '\0');
  for (size_t i = 0; i < bytes.size(); i += 8) {
    state += 0x9E3779B97F4A7C15ULL;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    std::memcpy(&bytes[i], &z, std::min<size_t>(8, bytes.size() - i));
  }
  return bytes;
}

std::string payload_string(const KvLookupResult& r) {
  if (!r.value.payload) {
    return {};
  }
  return std::string(reinterpret_cast<const char*>(r.value.payload->host_data()),
                     r.value.payload->size());
}

using testing::CapturedLog;

class KvCacheTest : public ::testing::Test {
 protected:
  KvCacheOptions options(bool with_disk) {
    KvCacheOptions o;
    o.disk_path = with_disk ? dir_.file("kv") : "";
    o.memory_budget_bytes = 1 << 20;
    o.disk_budget_bytes = 8 << 20;
    o.block_size = kBlock;
    o.logger = log_.logger();
    return o;
  }
  std::unique_ptr<KvCache> open_cache(const KvCacheOptions& o) {
    std::unique_ptr<KvCache> cache;
    EXPECT_OK(KvCache::open(o, &cache));
    return cache;
  }
  void put(KvCache* cache, const std::vector<int32_t>& tokens, size_t n = SIZE_MAX) {
    n = std::min(n, tokens.size());
    const std::vector<int32_t> prefix(tokens.begin(), tokens.begin() + n);
    ASSERT_OK(cache->put(fp_, prefix, KvPayload::from_host(expected_bytes(fp_, tokens, n))));
  }
  KvLookupResult lookup(KvCache* cache, const std::vector<int32_t>& tokens) {
    KvLookupResult r;
    EXPECT_OK(cache->lookup(fp_, tokens, &r));
    if (r.hit()) {
      EXPECT_EQ(r.value.header.num_tokens, r.num_tokens);
      EXPECT_EQ(payload_string(r), expected_bytes(fp_, tokens, r.num_tokens));
    }
    return r;
  }

  testing::TempDir dir_;
  CapturedLog log_;
  KvModelFingerprint fp_ = test_fingerprint();
  const std::vector<int32_t> instruction_ = make_tokens(40, 1000);  // aligned part: 32 tokens
};

// ---------------------------------------------------------------------------------------------
// Hits, misses, longest prefix

TEST_F(KvCacheTest, MissThenFullHitFromMemory) {
  auto cache = open_cache(options(/*with_disk=*/false));
  const auto prompt = concat(instruction_, make_tokens(13, 5));
  EXPECT_FALSE(lookup(cache.get(), prompt).hit());
  put(cache.get(), prompt);
  const KvLookupResult r = lookup(cache.get(), prompt);
  EXPECT_EQ(r.num_tokens, 53);
  EXPECT_EQ(r.tier, KvTier::kMemory);
  const KvCacheStats st = cache->stats();
  EXPECT_EQ(st.lookups, 2u);
  EXPECT_EQ(st.misses, 1u);
  EXPECT_EQ(st.memory_hits, 1u);
  EXPECT_EQ(st.hit_tokens, 53u);
  EXPECT_FALSE(st.disk_enabled);
  EXPECT_EQ(cache->disk_status().code(), StatusCode::kUnavailable);
}

TEST_F(KvCacheTest, FingerprintChangeMisses) {
  auto cache = open_cache(options(/*with_disk=*/true));
  const auto prompt = concat(instruction_, make_tokens(13, 5));
  put(cache.get(), prompt);
  std::vector<KvModelFingerprint> changed(6, fp_);
  changed[0].weights_digest = "sha256:weights-1";
  changed[1].tokenizer_digest = "sha256:tokenizer-1";
  changed[2].position_scheme = "rope;theta=10000";
  changed[3].architecture = "MistralForCausalLM";
  changed[4].salt = "tenant-b";
  changed[5].num_layers = 3;  // another l*
  for (size_t i = 0; i < changed.size(); ++i) {
    KvLookupResult r;
    ASSERT_OK(cache->lookup(changed[i], prompt, &r));
    EXPECT_FALSE(r.hit()) << "variant " << i;
  }
  EXPECT_TRUE(lookup(cache.get(), prompt).hit());
}

TEST_F(KvCacheTest, SharedInstructionHitsForANewQuery) {
  auto cache = open_cache(options(/*with_disk=*/true));
  // The ranker stores the instruction cut to a block boundary once, and each whole prefix.
  put(cache.get(), instruction_, cache->block_aligned_length(40));
  const auto query_a = concat(instruction_, make_tokens(13, 5));
  put(cache.get(), query_a);

  const auto query_b = concat(instruction_, make_tokens(9, 77));
  const KvLookupResult r = lookup(cache.get(), query_b);
  EXPECT_EQ(r.num_tokens, 32);
  // Repeated query: full hit.
  EXPECT_EQ(lookup(cache.get(), query_a).num_tokens, 53);
  // Same query plus one more token: the exact entry no longer applies, the aligned one does.
  EXPECT_EQ(lookup(cache.get(), concat(query_a, {42})).num_tokens, 32);
  // A different first token shares nothing.
  auto other = query_a;
  other[0] += 1;
  EXPECT_FALSE(lookup(cache.get(), other).hit());
}

TEST_F(KvCacheTest, LongestOfSeveralBoundariesWins) {
  auto cache = open_cache(options(/*with_disk=*/false));
  const auto prompt = make_tokens(70, 3);
  put(cache.get(), prompt, 16);
  put(cache.get(), prompt, 48);
  put(cache.get(), prompt, 32);
  EXPECT_EQ(lookup(cache.get(), prompt).num_tokens, 48);
  EXPECT_EQ(
      lookup(cache.get(), std::vector<int32_t>(prompt.begin(), prompt.begin() + 47)).num_tokens,
      32);
  EXPECT_EQ(
      lookup(cache.get(), std::vector<int32_t>(prompt.begin(), prompt.begin() + 15)).num_tokens, 0);
}

TEST_F(KvCacheTest, RejectsBadInput) {
  auto cache = open_cache(options(/*with_disk=*/false));
  const auto prompt = make_tokens(20, 3);
  EXPECT_EQ(cache->put(fp_, prompt, KvPayload::from_host(std::string(10, 'x'))).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(cache->put(fp_, {}, KvPayload::from_host("")).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(cache->put(fp_, prompt, nullptr).code(), StatusCode::kInvalidArgument);
  KvModelFingerprint bad = fp_;
  bad.num_layers = 0;
  KvLookupResult r;
  EXPECT_EQ(cache->lookup(bad, prompt, &r).code(), StatusCode::kInvalidArgument);
  KvCacheOptions o = options(false);
  o.block_size = 0;
  std::unique_ptr<KvCache> none;
  EXPECT_EQ(KvCache::open(o, &none).code(), StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// Eviction

TEST_F(KvCacheTest, MemoryTierEvictsLeastRecentlyUsed) {
  KvCacheOptions o = options(/*with_disk=*/false);
  const uint64_t value_bytes = fp_.bytes_per_token() * 32;
  o.memory_budget_bytes = value_bytes * 5 / 2;  // room for two values
  auto cache = open_cache(o);
  const auto a = make_tokens(32, 1), b = make_tokens(32, 2), c = make_tokens(32, 3);
  put(cache.get(), a);
  put(cache.get(), b);
  EXPECT_TRUE(lookup(cache.get(), a).hit());  // a is now more recent than b
  put(cache.get(), c);
  EXPECT_TRUE(lookup(cache.get(), a).hit());
  EXPECT_FALSE(lookup(cache.get(), b).hit());
  EXPECT_TRUE(lookup(cache.get(), c).hit());
  const KvCacheStats st = cache->stats();
  EXPECT_EQ(st.memory_evictions, 1u);
  EXPECT_EQ(st.memory_entries, 2u);
  EXPECT_EQ(st.memory_bytes, 2 * value_bytes);
  // A value larger than the whole budget is not kept (and evicts nothing).
  put(cache.get(), make_tokens(96, 4));
  EXPECT_EQ(cache->stats().memory_entries, 2u);
}

TEST_F(KvCacheTest, DiskTierEvictsLeastRecentlyUsedAndKeepsOrderAcrossReopen) {
  KvCacheOptions o = options(/*with_disk=*/true);
  o.memory_budget_bytes = 0;  // disk only, so every hit below is a disk hit
  const uint64_t value_bytes = internal::kKvValueHeaderSize + fp_.bytes_per_token() * 32;
  o.disk_budget_bytes = value_bytes * 3;
  std::vector<std::vector<int32_t>> keys;
  for (int i = 0; i < 6; ++i) {
    keys.push_back(make_tokens(32, 100 * (i + 1)));
  }
  {
    auto cache = open_cache(o);
    for (int i = 0; i < 5; ++i) {
      put(cache.get(), keys[i]);
    }
    KvCacheStats st = cache->stats();
    EXPECT_EQ(st.disk_evictions, 2u);
    EXPECT_EQ(st.disk_entries, 3u);
    EXPECT_EQ(st.disk_bytes, 3 * value_bytes);
    EXPECT_FALSE(lookup(cache.get(), keys[0]).hit());
    EXPECT_FALSE(lookup(cache.get(), keys[1]).hit());
    const KvLookupResult r = lookup(cache.get(), keys[2]);  // keys[2] becomes most recent
    EXPECT_EQ(r.tier, KvTier::kDisk);
    EXPECT_EQ(cache->stats().disk_hits, 1u);
  }
  {
    // The touch of keys[2] was written back at close: keys[3] is now the oldest.
    auto cache = open_cache(o);
    EXPECT_EQ(cache->stats().disk_entries, 3u);
    put(cache.get(), keys[5]);
    EXPECT_EQ(cache->stats().disk_evictions, 1u);
    EXPECT_TRUE(lookup(cache.get(), keys[2]).hit());
    EXPECT_FALSE(lookup(cache.get(), keys[3]).hit());
    EXPECT_TRUE(lookup(cache.get(), keys[4]).hit());
    EXPECT_TRUE(lookup(cache.get(), keys[5]).hit());
  }
  {
    // A smaller budget at open evicts down to it.
    o.disk_budget_bytes = value_bytes;
    auto cache = open_cache(o);
    EXPECT_EQ(cache->stats().disk_entries, 1u);
    EXPECT_EQ(cache->stats().disk_evictions, 2u);
  }
}

// ---------------------------------------------------------------------------------------------
// Persistence

TEST_F(KvCacheTest, SurvivesCloseAndReopen) {
  const auto prompt = concat(instruction_, make_tokens(13, 5));
  {
    auto cache = open_cache(options(/*with_disk=*/true));
    put(cache.get(), prompt);
    put(cache.get(), prompt, 32);
    EXPECT_OK(cache->disk_status());
  }
  auto cache = open_cache(options(/*with_disk=*/true));
  EXPECT_EQ(cache->stats().disk_entries, 2u);
  KvLookupResult r = lookup(cache.get(), prompt);
  EXPECT_EQ(r.num_tokens, 53);
  EXPECT_EQ(r.tier, KvTier::kDisk);
  // Promoted: the second lookup is served from memory.
  r = lookup(cache.get(), prompt);
  EXPECT_EQ(r.tier, KvTier::kMemory);
  EXPECT_EQ(lookup(cache.get(), concat(instruction_, {9})).num_tokens, 32);
  const KvCacheStats st = cache->stats();
  EXPECT_EQ(st.disk_hits, 2u);
  EXPECT_EQ(st.memory_hits, 1u);
  EXPECT_EQ(st.bytes_read, fp_.bytes_per_token() * (53 + 32));
}

// Runs this test binary again as a separate process playing `role` on the store at `dir`, and
// returns its exit code. A fresh exec, not a bare fork: a forked copy of a process that has used
// RocksDB inherits the state of its background thread pool without the threads, and hangs on the
// first flush.
int run_child(const std::string& role, const std::string& dir) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setenv("BLOCKRANK_KV_CHILD_ROLE", role.c_str(), 1);
    ::setenv("BLOCKRANK_KV_CHILD_DIR", dir.c_str(), 1);
    ::execl("/proc/self/exe", "kv_cache_test", "--gtest_filter=KvCacheTest.ChildProcessRole",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int wstatus = 0;
  ::waitpid(pid, &wstatus, 0);
  return WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128;
}

// The child side of the cross-process tests; skipped when run directly.
TEST_F(KvCacheTest, ChildProcessRole) {
  const char* role = std::getenv("BLOCKRANK_KV_CHILD_ROLE");
  const char* dir = std::getenv("BLOCKRANK_KV_CHILD_DIR");
  if (role == nullptr || dir == nullptr) {
    GTEST_SKIP() << "run by SurvivesAcrossProcesses and LockHeldByAnotherProcessDegradesToMemory";
  }
  KvCacheOptions o = options(/*with_disk=*/true);
  o.disk_path = dir;
  const auto prompt = concat(instruction_, make_tokens(13, 5));
  auto cache = open_cache(o);
  if (std::string(role) == "write") {
    ASSERT_OK(cache->disk_status());
    put(cache.get(), prompt);
    EXPECT_EQ(cache->stats().disk_entries, 1u);
  } else if (std::string(role) == "locked") {
    EXPECT_EQ(cache->disk_status().code(), StatusCode::kUnavailable);
    EXPECT_FALSE(cache->stats().disk_enabled);
    EXPECT_TRUE(log_.contains("memory tier only"));
    put(cache.get(), prompt);
    EXPECT_EQ(lookup(cache.get(), prompt).tier, KvTier::kMemory);
  } else {
    FAIL() << "unknown role " << role;
  }
}

TEST_F(KvCacheTest, SurvivesAcrossProcesses) {
  const auto prompt = concat(instruction_, make_tokens(13, 5));
  ASSERT_EQ(run_child("write", dir_.file("kv")), 0);
  auto cache = open_cache(options(/*with_disk=*/true));
  const KvLookupResult r = lookup(cache.get(), prompt);
  EXPECT_EQ(r.num_tokens, 53);
  EXPECT_EQ(r.tier, KvTier::kDisk);
}

// ---------------------------------------------------------------------------------------------
// RocksDB failures degrade to the memory tier

TEST_F(KvCacheTest, LockHeldByAnotherProcessDegradesToMemory) {
  auto owner = open_cache(options(/*with_disk=*/true));
  ASSERT_OK(owner->disk_status());
  EXPECT_EQ(run_child("locked", dir_.file("kv")), 0);
  EXPECT_TRUE(owner->stats().disk_enabled);
}

TEST_F(KvCacheTest, LockHeldByRawRocksDbDegradesToMemory) {
  {
    auto cache = open_cache(options(/*with_disk=*/true));  // creates the store
  }
  rocksdb::Options raw_options;
  std::vector<std::string> cf_names;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(raw_options, dir_.file("kv"), &cf_names).ok());
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (const std::string& name : cf_names) {
    cfs.emplace_back(name, rocksdb::ColumnFamilyOptions());
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(raw_options, dir_.file("kv"), cfs, &handles, &raw).ok());

  auto cache = open_cache(options(/*with_disk=*/true));
  EXPECT_FALSE(cache->disk_status().is_ok());
  EXPECT_FALSE(cache->stats().disk_enabled);
  EXPECT_TRUE(log_.contains("memory tier only"));
  const auto prompt = concat(instruction_, make_tokens(13, 5));
  put(cache.get(), prompt);
  EXPECT_EQ(lookup(cache.get(), prompt).tier, KvTier::kMemory);

  for (auto* h : handles) {
    EXPECT_TRUE(raw->DestroyColumnFamilyHandle(h).ok());
  }
  delete raw;
}

TEST_F(KvCacheTest, UnusablePathDegradesToMemory) {
  testing::write_text(dir_.file("a_file"), "not a directory");
  KvCacheOptions o = options(/*with_disk=*/true);
  o.disk_path = dir_.file("a_file") + "/kv";
  auto cache = open_cache(o);
  ASSERT_NE(cache, nullptr);
  EXPECT_FALSE(cache->disk_status().is_ok());
  EXPECT_TRUE(log_.contains("cannot open disk store"));
  const auto prompt = make_tokens(20, 1);
  put(cache.get(), prompt);
  EXPECT_TRUE(lookup(cache.get(), prompt).hit());
  // Not creating a missing store is reported, not an error from open().
  KvCacheOptions missing = options(true);
  missing.disk_path = dir_.file("absent");
  missing.create_if_missing = false;
  auto cache2 = open_cache(missing);
  EXPECT_EQ(cache2->disk_status().code(), StatusCode::kNotFound);
}

// ---------------------------------------------------------------------------------------------
// Corruption: edit the stored bytes through a raw RocksDB handle, then reopen the cache.

class RawStore {
 public:
  explicit RawStore(const std::string& path) {
    rocksdb::Options o;
    std::vector<std::string> names;
    EXPECT_TRUE(rocksdb::DB::ListColumnFamilies(o, path, &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const std::string& name : names) {
      cfs.emplace_back(name, rocksdb::ColumnFamilyOptions());
    }
    rocksdb::DB* raw = nullptr;
    EXPECT_TRUE(rocksdb::DB::Open(o, path, cfs, &handles_, &raw).ok());
    db_.reset(raw);
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == internal::kKvValuesColumnFamily) {
        values_ = handles_[i];
      }
      if (names[i] == internal::kKvMetaColumnFamily) {
        meta_ = handles_[i];
      }
    }
  }
  ~RawStore() {
    for (auto* h : handles_) {
      db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    }
  }
  std::vector<std::string> keys(rocksdb::ColumnFamilyHandle* cf) {
    std::vector<std::string> out;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      out.push_back(it->key().ToString());
    }
    return out;
  }
  std::string get(rocksdb::ColumnFamilyHandle* cf, const std::string& key) {
    std::string v;
    EXPECT_TRUE(db_->Get(rocksdb::ReadOptions(), cf, key, &v).ok());
    return v;
  }
  void put(rocksdb::ColumnFamilyHandle* cf, const std::string& key, const std::string& value) {
    EXPECT_TRUE(db_->Put(rocksdb::WriteOptions(), cf, key, value).ok());
  }
  rocksdb::ColumnFamilyHandle* values() { return values_; }
  rocksdb::ColumnFamilyHandle* meta() { return meta_; }

 private:
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  rocksdb::ColumnFamilyHandle* values_ = nullptr;
  rocksdb::ColumnFamilyHandle* meta_ = nullptr;
};

class KvCacheCorruptionTest : public KvCacheTest {
 protected:
  // Stores the prompt (53 tokens) and, when `with_prefix`, its 32-token aligned prefix too; then
  // lets `damage` edit the stored value of the 53-token entry and reopens the cache.
  std::unique_ptr<KvCache> store_and_damage(
      bool with_prefix,
      const std::function<void(RawStore*, const std::string& key, std::string* value)>& damage) {
    const internal::KvDigest key =
        internal::kv_entry_key(internal::kv_chain_seed(fp_, kBlock), prompt_, kBlock);
    key_ = std::string(reinterpret_cast<const char*>(key.data()), key.size());
    {
      auto cache = open_cache(options(/*with_disk=*/true));
      put(cache.get(), prompt_);
      if (with_prefix) {
        put(cache.get(), prompt_, 32);
      }
    }
    {
      RawStore raw(dir_.file("kv"));
      std::string value = raw.get(raw.values(), key_);
      damage(&raw, key_, &value);
      raw.put(raw.values(), key_, value);
    }
    return open_cache(options(/*with_disk=*/true));
  }
  void expect_dropped(KvCache* cache, int expected_hit) {
    const KvLookupResult r = lookup(cache, prompt_);
    EXPECT_EQ(r.num_tokens, expected_hit);
    const KvCacheStats st = cache->stats();
    EXPECT_EQ(st.corruptions, 1u);
    EXPECT_TRUE(log_.contains("dropping corrupt entry"));
    // Dropped from the index and from RocksDB: asking again is a plain miss, no new corruption.
    EXPECT_EQ(lookup(cache, prompt_).num_tokens, expected_hit);
    EXPECT_EQ(cache->stats().corruptions, 1u);
    EXPECT_EQ(st.disk_entries, expected_hit > 0 ? 1u : 0u);
  }
  std::vector<int32_t> prompt_ = concat(make_tokens(40, 1000), make_tokens(13, 5));
  std::string key_;
};

TEST_F(KvCacheCorruptionTest, FlippedPayloadByteIsAMiss) {
  auto cache = store_and_damage(
      false, [](RawStore*, const std::string&, std::string* v) { (*v)[v->size() / 2] ^= 0x01; });
  expect_dropped(cache.get(), 0);
}

TEST_F(KvCacheCorruptionTest, FlippedHeaderByteIsAMiss) {
  auto cache = store_and_damage(
      false, [](RawStore*, const std::string&, std::string* v) { (*v)[10] ^= 0x40; });
  expect_dropped(cache.get(), 0);
}

TEST_F(KvCacheCorruptionTest, TruncatedValueIsAMiss) {
  auto cache = store_and_damage(
      false, [](RawStore*, const std::string&, std::string* v) { v->resize(v->size() - 100); });
  expect_dropped(cache.get(), 0);
}

TEST_F(KvCacheCorruptionTest, ValueShorterThanHeaderIsAMiss) {
  auto cache =
      store_and_damage(false, [](RawStore*, const std::string&, std::string* v) { v->resize(7); });
  expect_dropped(cache.get(), 0);
}

TEST_F(KvCacheCorruptionTest, WrongFormatVersionIsAMissEvenWithValidChecksums) {
  auto cache = store_and_damage(false, [](RawStore*, const std::string&, std::string* v) {
    const uint16_t future = internal::kKvValueFormatVersion + 1;
    std::memcpy(&(*v)[4], &future, 2);
    // Re-seal the header so only the version check can reject it.
    const uint64_t header_hash = internal::kv_xxh64(v->data(), 72, 0x6b7663616368ULL);
    std::memcpy(&(*v)[72], &header_hash, 8);
  });
  expect_dropped(cache.get(), 0);
  EXPECT_TRUE(log_.contains("format version 2"));
}

TEST_F(KvCacheCorruptionTest, ValueOfAnotherEntryIsAMiss) {
  // Put the 32-token entry's (valid, checksummed) value under the 53-token key.
  auto cache = store_and_damage(true, [&](RawStore* raw, const std::string& key, std::string* v) {
    for (const std::string& other : raw->keys(raw->values())) {
      if (other != key) {
        *v = raw->get(raw->values(), other);
      }
    }
  });
  // The corrupt 53-token entry is dropped and the lookup falls back to the intact 32-token one.
  expect_dropped(cache.get(), 32);
  EXPECT_TRUE(log_.contains("another key"));
}

TEST_F(KvCacheCorruptionTest, CorruptMetadataRowIsDroppedAtOpen) {
  {
    auto cache = open_cache(options(/*with_disk=*/true));
    put(cache.get(), prompt_);
  }
  {
    RawStore raw(dir_.file("kv"));
    const std::vector<std::string> keys = raw.keys(raw.meta());
    ASSERT_EQ(keys.size(), 1u);
    std::string row = raw.get(raw.meta(), keys[0]);
    row[12] ^= 0x7f;
    raw.put(raw.meta(), keys[0], row);
  }
  auto cache = open_cache(options(/*with_disk=*/true));
  EXPECT_EQ(cache->stats().corruptions, 1u);
  EXPECT_EQ(cache->stats().disk_entries, 0u);
  EXPECT_FALSE(lookup(cache.get(), prompt_).hit());
  EXPECT_TRUE(log_.contains("bad metadata row"));
  cache.reset();
  RawStore raw(dir_.file("kv"));
  EXPECT_TRUE(raw.keys(raw.values()).empty());
}

// ---------------------------------------------------------------------------------------------
// Clear, allocator hook

TEST_F(KvCacheTest, ClearEmptiesBothTiersDurably) {
  {
    auto cache = open_cache(options(/*with_disk=*/true));
    for (int i = 0; i < 5; ++i) {
      put(cache.get(), make_tokens(40, i * 1000));
    }
    ASSERT_OK(cache->clear());
    const KvCacheStats st = cache->stats();
    EXPECT_EQ(st.memory_entries, 0u);
    EXPECT_EQ(st.disk_entries, 0u);
    EXPECT_EQ(st.disk_bytes, 0u);
    EXPECT_FALSE(lookup(cache.get(), make_tokens(40, 0)).hit());
  }
  auto cache = open_cache(options(/*with_disk=*/true));
  EXPECT_EQ(cache->stats().disk_entries, 0u);
  EXPECT_FALSE(lookup(cache.get(), make_tokens(40, 0)).hit());
}

TEST_F(KvCacheTest, MemoryAllocatorMakesPromotedPayloads) {
  const auto prompt = make_tokens(40, 1);
  {
    auto cache = open_cache(options(/*with_disk=*/true));
    put(cache.get(), prompt);
  }
  std::atomic<int> calls{0};
  KvCacheOptions o = options(/*with_disk=*/true);
  o.memory_allocator = [&](const uint8_t* bytes, size_t size,
                           std::shared_ptr<const KvPayload>* out) {
    ++calls;
    if (calls == 1) {
      return Status::resource_exhausted("device full");  // first try fails: miss, entry kept
    }
    *out = KvPayload::copy_from_host(bytes, size);
    return Status::ok();
  };
  auto cache = open_cache(o);
  EXPECT_FALSE(lookup(cache.get(), prompt).hit());
  EXPECT_TRUE(log_.contains("device full"));
  EXPECT_EQ(lookup(cache.get(), prompt).tier, KvTier::kDisk);
  EXPECT_EQ(lookup(cache.get(), prompt).tier, KvTier::kMemory);
  EXPECT_EQ(calls.load(), 2);
  EXPECT_EQ(cache->stats().corruptions, 0u);
}

// ---------------------------------------------------------------------------------------------
// Concurrency: 8 threads x 2000 mixed operations over a pool of prompts that share prefixes, with
// budgets small enough that both tiers evict all the time. Every hit must carry exactly the bytes
// stored for that prefix.

TEST_F(KvCacheTest, ConcurrentReadersAndWriters) {
  KvCacheOptions o = options(/*with_disk=*/true);
  const uint64_t value_bytes = fp_.bytes_per_token() * 48;
  o.memory_budget_bytes = value_bytes * 12;
  o.disk_budget_bytes = value_bytes * 40;
  auto cache = open_cache(o);

  std::vector<std::vector<int32_t>> prompts;
  for (int instr = 0; instr < 4; ++instr) {
    const auto instruction = make_tokens(32, 10000 * (instr + 1));
    for (int q = 0; q < 24; ++q) {
      prompts.push_back(concat(instruction, make_tokens(1 + q % 23, 50 * q + instr)));
    }
  }
  constexpr int kThreads = 8;
  constexpr int kOps = 2000;
  std::atomic<int> mismatches{0}, hits{0}, errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t]() {
      uint64_t rng = 0x12345 + t;
      for (int op = 0; op < kOps; ++op) {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        const auto& prompt = prompts[(rng >> 33) % prompts.size()];
        const int kind = static_cast<int>((rng >> 20) % 10);
        if (kind < 3) {
          // Store the whole prompt, or (sometimes) its aligned instruction.
          const size_t n = kind == 0 ? 32 : prompt.size();
          const std::vector<int32_t> prefix(prompt.begin(), prompt.begin() + n);
          if (!cache->put(fp_, prefix, KvPayload::from_host(expected_bytes(fp_, prompt, n)))
                   .is_ok()) {
            ++errors;
          }
        } else {
          KvLookupResult r;
          if (!cache->lookup(fp_, prompt, &r).is_ok()) {
            ++errors;
          }
          if (r.hit()) {
            ++hits;
            if (payload_string(r) != expected_bytes(fp_, prompt, r.num_tokens)) {
              ++mismatches;
            }
          }
        }
        if (op % 500 == 0) {
          (void)cache->stats();
        }
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  const KvCacheStats st = cache->stats();
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_EQ(errors.load(), 0);
  EXPECT_GT(hits.load(), 1000);
  EXPECT_EQ(st.corruptions, 0u);
  EXPECT_EQ(st.lookups, st.memory_hits + st.disk_hits + st.misses);
  EXPECT_GT(st.memory_evictions, 0u);
  EXPECT_GT(st.disk_evictions, 0u);
  EXPECT_LE(st.memory_bytes, o.memory_budget_bytes);
  EXPECT_LE(st.disk_bytes, o.disk_budget_bytes);
  EXPECT_TRUE(st.disk_enabled);
  // The disk index still agrees with the store after the churn.
  const uint64_t entries = st.disk_entries;
  cache.reset();
  auto reopened = open_cache(o);
  EXPECT_EQ(reopened->stats().disk_entries, entries);
}

}  // namespace
}  // namespace blockrank
