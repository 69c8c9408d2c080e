// SPDX-License-Identifier: Apache-2.0
// KvCache: an LRU memory tier in front of a RocksDB disk tier (contract in kv_cache.h).
//
// Why one entry per cached prefix and not one per block (vLLM's choice): vLLM keeps K/V in paged
// GPU blocks, so a block is its unit of storage anyway. Here an entry is handed to the forward pass
// as one contiguous [layer][k/v][head][token][dim] buffer; per-block storage would need a gather
// over all blocks (ceil(150/16) = 10 reads and a strided copy per layer and head) on every hit, and
// evicting a middle block would orphan the rest of its chain. Per-prefix entries cost one read per
// hit and evict independently. They duplicate the shared instruction K/V inside each stored
// query-bearing prefix; at ~1-13 MB per prefix that is cheap next to the budgets, and the caller
// chooses what to store (the block-aligned instruction once, whole prefixes for repeated queries).
//
// Locking: the memory tier and the disk index each have one mutex, held only for index updates,
// never across RocksDB I/O or hashing, so lookups never wait for a disk write. Every change to the
// disk store (put, eviction, drop, clear) also holds disk_write_mu_ across its RocksDB write and
// its index update, which keeps "key in the index <=> key in the store" true at every step; RocksDB
// serialises writes internally anyway, so this costs little. Reads take no write lock: a reader
// that finds an indexed key gone (evicted meanwhile) simply has a miss.
//
// Disk layout: column family kv_values (key -> header + payload, in blob files since values are
// MBs), kv_meta (key -> size, token count, last-access tick) and a format marker in default.
// A put writes value and meta in one WriteBatch and the DB uses atomic_flush, so after a crash
// both are there or neither is. Last-access ticks of hits are kept in memory and written back at
// close; after a crash the order falls back to the last put/close, which only affects eviction.
#include "ranker/kv_cache/kv_cache.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>
#include <filesystem>
#include <list>
#include <mutex>
#include <unordered_map>
#include <utility>

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/slice.h>
#include <rocksdb/write_batch.h>

#include "ranker/kv_cache/kv_format.h"
#include "ranker/kv_cache/kv_hash.h"

namespace blockrank {

using internal::KvDigest;

size_t kv_dtype_size(KvDtype dtype) {
  switch (dtype) {
    case KvDtype::kFloat32:
      return 4;
    case KvDtype::kFloat16:
    case KvDtype::kBFloat16:
      return 2;
  }
  return 0;
}

const char* kv_dtype_name(KvDtype dtype) {
  switch (dtype) {
    case KvDtype::kFloat32:
      return "float32";
    case KvDtype::kFloat16:
      return "float16";
    case KvDtype::kBFloat16:
      return "bfloat16";
  }
  return "unknown";
}

Status KvModelFingerprint::validate() const {
  if (architecture.empty() || weights_digest.empty()) {
    return Status::invalid_argument(
        "KV cache fingerprint needs an architecture and a weights digest");
  }
  if (num_layers <= 0 || num_kv_heads <= 0 || head_dim <= 0) {
    return Status::invalid_argument("KV cache fingerprint needs positive num_layers (" +
                                    std::to_string(num_layers) + "), num_kv_heads (" +
                                    std::to_string(num_kv_heads) + ") and head_dim (" +
                                    std::to_string(head_dim) + ")");
  }
  if (kv_dtype_size(dtype) == 0) {
    return Status::invalid_argument("KV cache fingerprint has an unknown dtype");
  }
  return Status::ok();
}

uint64_t KvModelFingerprint::bytes_per_token() const {
  return static_cast<uint64_t>(num_layers) * 2 * static_cast<uint64_t>(num_kv_heads) *
         static_cast<uint64_t>(head_dim) * kv_dtype_size(dtype);
}

uint64_t KvTensorHeader::payload_bytes() const {
  return static_cast<uint64_t>(num_layers) * 2 * static_cast<uint64_t>(num_kv_heads) *
         static_cast<uint64_t>(num_tokens) * static_cast<uint64_t>(head_dim) * kv_dtype_size(dtype);
}

Status KvPayload::copy_to_host(uint8_t* dst) const {
  const uint8_t* src = host_data();
  if (src == nullptr) {
    return Status::unimplemented("payload has no host bytes and does not override copy_to_host");
  }
  std::memcpy(dst, src, size());
  return Status::ok();
}

namespace {

class HostPayload final : public KvPayload {
 public:
  explicit HostPayload(std::string bytes) : bytes_(std::move(bytes)) {}
  size_t size() const override { return bytes_.size(); }
  const uint8_t* host_data() const override {
    return reinterpret_cast<const uint8_t*>(bytes_.data());
  }

 private:
  std::string bytes_;
};

// The value as RocksDB returned it (header + payload): a disk hit is promoted without a copy.
class PinnedPayload final : public KvPayload {
 public:
  rocksdb::PinnableSlice* slice() { return &slice_; }
  size_t size() const override { return slice_.size() - internal::kKvValueHeaderSize; }
  const uint8_t* host_data() const override {
    return reinterpret_cast<const uint8_t*>(slice_.data()) + internal::kKvValueHeaderSize;
  }

 private:
  rocksdb::PinnableSlice slice_;
};

}  // namespace

std::shared_ptr<const KvPayload> KvPayload::from_host(std::string bytes) {
  return std::make_shared<HostPayload>(std::move(bytes));
}

std::shared_ptr<const KvPayload> KvPayload::copy_from_host(const void* data, size_t size) {
  return std::make_shared<HostPayload>(std::string(static_cast<const char*>(data), size));
}

Status KvCacheOptions::validate() const {
  if (block_size < 1 || block_size > 4096) {
    return Status::invalid_argument("KV cache block size must be in [1, 4096], got " +
                                    std::to_string(block_size));
  }
  if (!disk_path.empty() && disk_budget_bytes == 0) {
    return Status::invalid_argument("KV cache disk budget is 0 but a disk path is set");
  }
  return Status::ok();
}

namespace {

struct DigestHash {
  size_t operator()(const KvDigest& d) const {
    size_t v;
    std::memcpy(&v, d.data(), sizeof(v));
    return v;
  }
};

// A map with a recency list: most recently used at the front, eviction from the back.
template <typename Entry>
class LruIndex {
 public:
  Entry* find(const KvDigest& key) {
    auto it = map_.find(key);
    return it == map_.end() ? nullptr : &it->second->second;
  }
  Entry* touch(const KvDigest& key) {
    auto it = map_.find(key);
    if (it == map_.end()) {
      return nullptr;
    }
    order_.splice(order_.begin(), order_, it->second);
    return &it->second->second;
  }
  // Inserts as most recent; returns true and moves the replaced entry into *old if there was one.
  bool insert_front(const KvDigest& key, Entry entry, Entry* old) {
    auto it = map_.find(key);
    bool replaced = false;
    if (it != map_.end()) {
      *old = std::move(it->second->second);
      order_.erase(it->second);
      map_.erase(it);
      replaced = true;
    }
    order_.emplace_front(key, std::move(entry));
    map_.emplace(key, order_.begin());
    return replaced;
  }
  bool erase(const KvDigest& key, Entry* out) {
    auto it = map_.find(key);
    if (it == map_.end()) {
      return false;
    }
    *out = std::move(it->second->second);
    order_.erase(it->second);
    map_.erase(it);
    return true;
  }
  bool pop_back(KvDigest* key, Entry* out) {
    if (order_.empty()) {
      return false;
    }
    *key = order_.back().first;
    *out = std::move(order_.back().second);
    map_.erase(*key);
    order_.pop_back();
    return true;
  }
  template <typename Fn>
  void for_each(Fn fn) {
    for (auto& node : order_) {
      fn(node.first, node.second);
    }
  }
  void clear() {
    map_.clear();
    order_.clear();
  }
  size_t size() const { return map_.size(); }

 private:
  using Node = std::pair<KvDigest, Entry>;
  std::list<Node> order_;
  std::unordered_map<KvDigest, typename std::list<Node>::iterator, DigestHash> map_;
};

struct MemoryEntry {
  KvValue value;
};

struct DiskEntry {
  internal::KvMeta meta;
  bool dirty = false;  // last_access changed since the meta row was written
};

rocksdb::Slice as_slice(const KvDigest& key) {
  return rocksdb::Slice(reinterpret_cast<const char*>(key.data()), key.size());
}

std::string short_hex(const KvDigest& key) {
  return internal::kv_digest_hex(key).substr(0, 16);
}

}  // namespace

class KvCache::Impl {
 public:
  explicit Impl(const KvCacheOptions& options) : options_(options) {
    if (!options_.logger) {
      options_.logger = Logger::null_logger();
    }
  }

  ~Impl() { close_disk(); }

  void open_disk();
  Status lookup(const KvModelFingerprint& fp,
                const std::vector<int32_t>& tokens,
                KvLookupResult* result);
  Status put(const KvModelFingerprint& fp,
             const std::vector<int32_t>& tokens,
             std::shared_ptr<const KvPayload> payload);
  Status clear();
  KvCacheStats stats() const;
  Status disk_status() const {
    std::lock_guard<std::mutex> lock(disk_status_mu_);
    return disk_status_;
  }
  int32_t block_size() const { return options_.block_size; }
  void warn_exception(const char* where, const std::exception& e) const {
    BLOCKRANK_LOG_WARNING(options_.logger, "KV cache: %s: %s", where, e.what());
  }

 private:
  // Memory tier.
  std::shared_ptr<const KvPayload> memory_get(const KvDigest& key, KvTensorHeader* header);
  void memory_put(const KvDigest& key, KvValue value);
  // Disk tier. kDropped: the entry was corrupt and has been deleted.
  enum class DiskRead { kMiss, kHit, kDropped };
  DiskRead disk_get(const KvDigest& key, const KvTensorHeader& expected, KvValue* value);
  void disk_put(const KvDigest& key,
                const KvTensorHeader& header,
                const KvPayload& payload,
                int32_t num_tokens);
  void disk_touch(const KvDigest& key);
  void disk_drop(const KvDigest& key);
  // Both need disk_write_mu_ held by the caller.
  void disk_delete_rows(const std::vector<KvDigest>& keys);
  void disk_evict_over_budget();
  // Turns the disk tier off for the rest of the process (the DB stays open until close: other
  // threads may still be inside a call).
  void disk_failed(const std::string& what, const rocksdb::Status& s);
  void close_disk();
  uint64_t next_tick() { return tick_.fetch_add(1, std::memory_order_relaxed) + 1; }
  bool disk_on() const { return disk_enabled_.load(std::memory_order_acquire); }

  KvCacheOptions options_;

  mutable std::mutex memory_mu_;
  LruIndex<MemoryEntry> memory_index_;
  uint64_t memory_bytes_ = 0;

  mutable std::mutex disk_mu_;
  LruIndex<DiskEntry> disk_index_;
  uint64_t disk_bytes_ = 0;
  std::atomic<uint64_t> tick_{0};
  std::mutex disk_write_mu_;  // see "Locking" above; taken before disk_mu_, never after

  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::ColumnFamilyHandle* values_cf_ = nullptr;
  rocksdb::ColumnFamilyHandle* meta_cf_ = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::atomic<bool> disk_enabled_{false};
  mutable std::mutex disk_status_mu_;
  Status disk_status_ = Status::unavailable("no disk path configured (memory tier only)");

  std::atomic<uint64_t> lookups_{0}, memory_hits_{0}, disk_hits_{0}, misses_{0};
  std::atomic<uint64_t> lookup_tokens_{0}, hit_tokens_{0}, puts_{0};
  std::atomic<uint64_t> bytes_stored_{0}, bytes_read_{0};
  std::atomic<uint64_t> memory_evictions_{0}, disk_evictions_{0};
  std::atomic<uint64_t> corruptions_{0}, disk_errors_{0};
};

void KvCache::Impl::open_disk() {
  if (options_.disk_path.empty()) {
    return;
  }
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = options_.create_if_missing;
  db_options.create_missing_column_families = true;
  // Value and meta rows of one put must reach disk together even with the WAL off.
  db_options.atomic_flush = true;
  db_options.max_background_jobs = 2;
  db_options.keep_log_file_num = 3;
  db_options.max_log_file_size = 1 << 20;

  rocksdb::ColumnFamilyOptions values_options;
  // Values are 1-20 MB: blob files keep them out of the LSM so compactions move only small index
  // entries. bf16 K/V is close to incompressible, so no compression (saves CPU on every read).
  values_options.enable_blob_files = true;
  values_options.min_blob_size = 0;
  values_options.blob_file_size = 64 << 20;
  values_options.blob_compression_type = rocksdb::kNoCompression;
  values_options.enable_blob_garbage_collection = true;
  values_options.blob_garbage_collection_age_cutoff = 0.5;
  values_options.write_buffer_size = 64 << 20;
  // Flushing a memtable means writing its blobs (with RocksDB's CRC32C, slow in Debian's portable
  // build); with the default of 2 memtables, puts of 13 MB values stalled behind each flush.
  values_options.max_write_buffer_number = 4;

  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors = {
      {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions()},
      {internal::kKvValuesColumnFamily, values_options},
      {internal::kKvMetaColumnFamily, rocksdb::ColumnFamilyOptions()}};
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s;
  try {
    if (options_.create_if_missing) {
      // RocksDB creates only the last path component.
      std::error_code ec;
      std::filesystem::create_directories(std::filesystem::path(options_.disk_path).parent_path(),
                                          ec);
    }
    s = rocksdb::DB::Open(db_options, options_.disk_path, descriptors, &handles_, &raw);
  } catch (const std::exception& e) {
    s = rocksdb::Status::IOError(e.what());
  }
  if (!s.ok()) {
    const std::string message = "KV cache: cannot open disk store " + options_.disk_path + ": " +
                                s.ToString() + "; continuing with the memory tier only";
    BLOCKRANK_LOG_WARNING(options_.logger, "%s", message.c_str());
    disk_errors_.fetch_add(1);
    std::lock_guard<std::mutex> lock(disk_status_mu_);
    disk_status_ = s.IsNotFound() || s.IsInvalidArgument() ? Status::not_found(message)
                                                           : Status::unavailable(message);
    return;
  }
  db_.reset(raw);
  values_cf_ = handles_[1];
  meta_cf_ = handles_[2];

  std::string marker;
  s = db_->Get(rocksdb::ReadOptions(), handles_[0], internal::kKvStoreFormatKey, &marker);
  if (s.IsNotFound()) {
    rocksdb::WriteOptions wo;
    s = db_->Put(wo, handles_[0], internal::kKvStoreFormatKey, internal::kKvStoreFormatValue);
  } else if (s.ok() && marker != internal::kKvStoreFormatValue) {
    s = rocksdb::Status::NotSupported("store format " + marker + " (this build reads " +
                                      internal::kKvStoreFormatValue + ")");
  }
  if (!s.ok()) {
    disk_failed("reading the store format", s);
    return;
  }

  // Rebuild the disk index from the metadata rows, oldest first so the newest ends up in front.
  std::vector<std::pair<KvDigest, internal::KvMeta>> rows;
  std::vector<KvDigest> bad;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), meta_cf_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    KvDigest key{};
    internal::KvMeta meta;
    const rocksdb::Slice k = it->key();
    const rocksdb::Slice v = it->value();
    Status row = k.size() == key.size()
                     ? internal::kv_decode_meta(v.data(), v.size(), &meta)
                     : Status::corruption("key of " + std::to_string(k.size()) + " bytes");
    if (k.size() == key.size()) {
      std::memcpy(key.data(), k.data(), key.size());
    }
    if (!row.is_ok()) {
      corruptions_.fetch_add(1);
      BLOCKRANK_LOG_WARNING(options_.logger, "KV cache: dropping a bad metadata row: %s",
                            row.to_string().c_str());
      if (k.size() == key.size()) {
        bad.push_back(key);
      }
      continue;
    }
    rows.emplace_back(key, meta);
  }
  if (!it->status().ok()) {
    const rocksdb::Status it_status = it->status();
    it.reset();
    disk_failed("scanning the metadata", it_status);
    return;
  }
  it.reset();
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
    return a.second.last_access < b.second.last_access;
  });
  uint64_t max_tick = 0;
  {
    std::lock_guard<std::mutex> lock(disk_mu_);
    for (const auto& [key, meta] : rows) {
      DiskEntry old;
      disk_index_.insert_front(key, DiskEntry{meta, false}, &old);
      disk_bytes_ += meta.value_bytes;
      max_tick = std::max(max_tick, meta.last_access);
    }
  }
  tick_.store(max_tick);
  {
    std::lock_guard<std::mutex> lock(disk_status_mu_);
    disk_status_ = Status::ok();
  }
  disk_enabled_.store(true, std::memory_order_release);
  std::lock_guard<std::mutex> write_lock(disk_write_mu_);
  disk_delete_rows(bad);
  disk_evict_over_budget();
}

void KvCache::Impl::close_disk() {
  if (!db_) {
    return;
  }
  if (disk_on()) {
    // Write back the access order of entries hit since their last put, then flush: with the WAL
    // off, the memtables are all there is of recent puts.
    rocksdb::WriteBatch batch;
    {
      std::lock_guard<std::mutex> lock(disk_mu_);
      disk_index_.for_each([&](const KvDigest& key, DiskEntry& entry) {
        if (entry.dirty) {
          batch.Put(meta_cf_, as_slice(key), internal::kv_encode_meta(entry.meta));
          entry.dirty = false;
        }
      });
    }
    rocksdb::WriteOptions wo;
    wo.disableWAL = !options_.use_wal;
    rocksdb::Status s = batch.Count() > 0 ? db_->Write(wo, &batch) : rocksdb::Status::OK();
    if (s.ok()) {
      s = db_->Flush(rocksdb::FlushOptions(), handles_);
    }
    if (!s.ok()) {
      BLOCKRANK_LOG_WARNING(options_.logger, "KV cache: flushing the disk store at close: %s",
                            s.ToString().c_str());
    }
  }
  for (rocksdb::ColumnFamilyHandle* handle : handles_) {
    db_->DestroyColumnFamilyHandle(handle).PermitUncheckedError();
  }
  handles_.clear();
  const rocksdb::Status s = db_->Close();
  if (!s.ok()) {
    BLOCKRANK_LOG_WARNING(options_.logger, "KV cache: closing the disk store: %s",
                          s.ToString().c_str());
  }
  db_.reset();
}

void KvCache::Impl::disk_failed(const std::string& what, const rocksdb::Status& s) {
  disk_errors_.fetch_add(1);
  disk_enabled_.store(false, std::memory_order_release);
  const std::string message = "KV cache: disk store " + options_.disk_path + ": " + what + ": " +
                              s.ToString() + "; continuing with the memory tier only";
  BLOCKRANK_LOG_WARNING(options_.logger, "%s", message.c_str());
  std::lock_guard<std::mutex> lock(disk_status_mu_);
  if (disk_status_.is_ok()) {
    disk_status_ = Status::io_error(message);
  }
}

std::shared_ptr<const KvPayload> KvCache::Impl::memory_get(const KvDigest& key,
                                                           KvTensorHeader* header) {
  std::lock_guard<std::mutex> lock(memory_mu_);
  MemoryEntry* entry = memory_index_.touch(key);
  if (entry == nullptr) {
    return nullptr;
  }
  *header = entry->value.header;
  return entry->value.payload;
}

void KvCache::Impl::memory_put(const KvDigest& key, KvValue value) {
  const uint64_t size = value.payload->size();
  if (size > options_.memory_budget_bytes) {
    return;
  }
  // Payloads leave the lock before they are released: freeing 13 MB (or a device buffer) should
  // not stall other threads' lookups.
  std::vector<MemoryEntry> released;
  {
    std::lock_guard<std::mutex> lock(memory_mu_);
    MemoryEntry old;
    if (memory_index_.insert_front(key, MemoryEntry{std::move(value)}, &old)) {
      memory_bytes_ -= old.value.payload->size();
      released.push_back(std::move(old));
    }
    memory_bytes_ += size;
    KvDigest victim_key;
    MemoryEntry victim;
    while (memory_bytes_ > options_.memory_budget_bytes &&
           memory_index_.pop_back(&victim_key, &victim)) {
      memory_bytes_ -= victim.value.payload->size();
      released.push_back(std::move(victim));
      memory_evictions_.fetch_add(1);
    }
  }
}

KvCache::Impl::DiskRead KvCache::Impl::disk_get(const KvDigest& key,
                                                const KvTensorHeader& expected,
                                                KvValue* value) {
  if (!disk_on()) {
    return DiskRead::kMiss;
  }
  {
    std::lock_guard<std::mutex> lock(disk_mu_);
    if (disk_index_.find(key) == nullptr) {
      return DiskRead::kMiss;
    }
  }
  auto pinned = std::make_shared<PinnedPayload>();
  // kv_check_value() below checks the whole value end to end (XXH64 of header and payload), so
  // RocksDB's own blob checksum would be a second pass over the same megabytes.
  rocksdb::ReadOptions read_options;
  read_options.verify_checksums = false;
  const rocksdb::Status s = db_->Get(read_options, values_cf_, as_slice(key), pinned->slice());
  if (s.IsNotFound()) {
    // Evicted by another thread between the index check and the read; the index is updated.
    return DiskRead::kMiss;
  }
  Status check;
  if (s.IsCorruption()) {
    check = Status::corruption("RocksDB: " + s.ToString());
  } else if (!s.ok()) {
    disk_failed("reading an entry", s);
    return DiskRead::kMiss;
  } else {
    check =
        internal::kv_check_value(pinned->slice()->data(), pinned->slice()->size(), key, expected);
  }
  if (!check.is_ok()) {
    corruptions_.fetch_add(1);
    BLOCKRANK_LOG_WARNING(options_.logger,
                          "KV cache: dropping corrupt entry %s (%d tokens): %s; it will be "
                          "recomputed",
                          short_hex(key).c_str(), expected.num_tokens, check.to_string().c_str());
    disk_drop(key);
    return DiskRead::kDropped;
  }
  bytes_read_.fetch_add(pinned->size());
  value->header = expected;
  if (options_.memory_allocator) {
    std::shared_ptr<const KvPayload> converted;
    Status alloc;
    try {
      alloc = options_.memory_allocator(pinned->host_data(), pinned->size(), &converted);
    } catch (const std::exception& e) {
      alloc = Status::internal(std::string("memory allocator threw: ") + e.what());
    }
    if (!alloc.is_ok() || !converted || converted->size() != pinned->size()) {
      BLOCKRANK_LOG_WARNING(options_.logger, "KV cache: memory allocator failed for %s: %s",
                            short_hex(key).c_str(),
                            alloc.is_ok() ? "wrong payload size" : alloc.to_string().c_str());
      return DiskRead::kMiss;
    }
    value->payload = std::move(converted);
  } else {
    value->payload = std::move(pinned);
  }
  disk_touch(key);
  return DiskRead::kHit;
}

void KvCache::Impl::disk_touch(const KvDigest& key) {
  if (!disk_on()) {
    return;
  }
  std::lock_guard<std::mutex> lock(disk_mu_);
  DiskEntry* entry = disk_index_.touch(key);
  if (entry != nullptr) {
    entry->meta.last_access = next_tick();
    entry->dirty = true;
  }
}

void KvCache::Impl::disk_drop(const KvDigest& key) {
  std::lock_guard<std::mutex> write_lock(disk_write_mu_);
  {
    std::lock_guard<std::mutex> lock(disk_mu_);
    DiskEntry gone;
    if (disk_index_.erase(key, &gone)) {
      disk_bytes_ -= gone.meta.value_bytes;
    }
  }
  disk_delete_rows({key});
}

void KvCache::Impl::disk_delete_rows(const std::vector<KvDigest>& keys) {
  if (keys.empty() || !disk_on()) {
    return;
  }
  rocksdb::WriteBatch batch;
  for (const KvDigest& key : keys) {
    batch.Delete(values_cf_, as_slice(key));
    batch.Delete(meta_cf_, as_slice(key));
  }
  rocksdb::WriteOptions wo;
  wo.disableWAL = !options_.use_wal;
  const rocksdb::Status s = db_->Write(wo, &batch);
  if (!s.ok()) {
    disk_failed("deleting entries", s);
  }
}

void KvCache::Impl::disk_evict_over_budget() {
  std::vector<KvDigest> victims;
  {
    std::lock_guard<std::mutex> lock(disk_mu_);
    KvDigest key;
    DiskEntry entry;
    while (disk_bytes_ > options_.disk_budget_bytes && disk_index_.pop_back(&key, &entry)) {
      disk_bytes_ -= entry.meta.value_bytes;
      victims.push_back(key);
    }
  }
  disk_evictions_.fetch_add(victims.size());
  disk_delete_rows(victims);
}

void KvCache::Impl::disk_put(const KvDigest& key,
                             const KvTensorHeader& header,
                             const KvPayload& payload,
                             int32_t num_tokens) {
  if (!disk_on()) {
    return;
  }
  const uint64_t value_bytes = internal::kKvValueHeaderSize + payload.size();
  if (value_bytes > options_.disk_budget_bytes) {
    return;
  }
  // Host payloads go into the batch straight from their buffer (one copy, made by RocksDB); others
  // (device memory) are first copied to host.
  std::string host_copy;
  const uint8_t* bytes = payload.host_data();
  if (bytes == nullptr) {
    host_copy.resize(payload.size());
    const Status copied = payload.copy_to_host(reinterpret_cast<uint8_t*>(host_copy.data()));
    if (!copied.is_ok()) {
      BLOCKRANK_LOG_WARNING(options_.logger, "KV cache: not writing %s to disk: %s",
                            short_hex(key).c_str(), copied.to_string().c_str());
      return;
    }
    bytes = reinterpret_cast<const uint8_t*>(host_copy.data());
  }
  const std::string header_bytes = internal::kv_encode_header(header, key, bytes, payload.size());
  internal::KvMeta meta;
  meta.num_tokens = static_cast<uint32_t>(num_tokens);
  meta.value_bytes = value_bytes;
  meta.last_access = next_tick();
  const std::string meta_row = internal::kv_encode_meta(meta);
  rocksdb::WriteBatch batch(/*reserved_bytes=*/value_bytes + 256);
  const rocksdb::Slice key_slice = as_slice(key);
  const rocksdb::Slice value_parts[2] = {
      rocksdb::Slice(header_bytes),
      rocksdb::Slice(reinterpret_cast<const char*>(bytes), payload.size())};
  batch.Put(values_cf_, rocksdb::SliceParts(&key_slice, 1), rocksdb::SliceParts(value_parts, 2));
  batch.Put(meta_cf_, key_slice, meta_row);
  host_copy.clear();
  host_copy.shrink_to_fit();
  std::lock_guard<std::mutex> write_lock(disk_write_mu_);
  rocksdb::WriteOptions wo;
  wo.disableWAL = !options_.use_wal;
  const rocksdb::Status s = db_->Write(wo, &batch);
  if (!s.ok()) {
    disk_failed("writing an entry", s);
    return;
  }
  bytes_stored_.fetch_add(payload.size());
  {
    std::lock_guard<std::mutex> lock(disk_mu_);
    DiskEntry old;
    if (disk_index_.insert_front(key, DiskEntry{meta, false}, &old)) {
      disk_bytes_ -= old.meta.value_bytes;
    }
    disk_bytes_ += value_bytes;
  }
  disk_evict_over_budget();
}

Status KvCache::Impl::lookup(const KvModelFingerprint& fp,
                             const std::vector<int32_t>& tokens,
                             KvLookupResult* result) {
  *result = KvLookupResult();
  BLOCKRANK_RETURN_IF_ERROR(fp.validate());
  lookups_.fetch_add(1);
  lookup_tokens_.fetch_add(tokens.size());
  if (tokens.empty()) {
    misses_.fetch_add(1);
    return Status::ok();
  }
  const KvDigest seed = internal::kv_chain_seed(fp, options_.block_size);
  for (const auto& [length, key] : internal::kv_candidate_keys(seed, tokens, options_.block_size)) {
    KvTensorHeader header;
    std::shared_ptr<const KvPayload> payload = memory_get(key, &header);
    if (payload) {
      disk_touch(key);
      memory_hits_.fetch_add(1);
      hit_tokens_.fetch_add(length);
      result->num_tokens = length;
      result->tier = KvTier::kMemory;
      result->value = KvValue{header, std::move(payload)};
      return Status::ok();
    }
    KvValue value;
    if (disk_get(key, internal::kv_expected_header(fp, length), &value) == DiskRead::kHit) {
      if (options_.memory_budget_bytes > 0) {
        memory_put(key, value);
      }
      disk_hits_.fetch_add(1);
      hit_tokens_.fetch_add(length);
      result->num_tokens = length;
      result->tier = KvTier::kDisk;
      result->value = std::move(value);
      return Status::ok();
    }
  }
  misses_.fetch_add(1);
  return Status::ok();
}

Status KvCache::Impl::put(const KvModelFingerprint& fp,
                          const std::vector<int32_t>& tokens,
                          std::shared_ptr<const KvPayload> payload) {
  BLOCKRANK_RETURN_IF_ERROR(fp.validate());
  if (tokens.empty()) {
    return Status::invalid_argument("KV cache put: no tokens");
  }
  if (tokens.size() > static_cast<size_t>(INT32_MAX)) {
    return Status::invalid_argument("KV cache put: too many tokens");
  }
  if (!payload) {
    return Status::invalid_argument("KV cache put: null payload");
  }
  const int32_t num_tokens = static_cast<int32_t>(tokens.size());
  const KvTensorHeader header = internal::kv_expected_header(fp, num_tokens);
  if (payload->size() != header.payload_bytes()) {
    return Status::invalid_argument("KV cache put: payload has " + std::to_string(payload->size()) +
                                    " bytes, " + std::to_string(num_tokens) +
                                    " tokens of this model need " +
                                    std::to_string(header.payload_bytes()));
  }
  puts_.fetch_add(1);
  const KvDigest key = internal::kv_entry_key(internal::kv_chain_seed(fp, options_.block_size),
                                              tokens, options_.block_size);
  if (options_.memory_budget_bytes > 0) {
    memory_put(key, KvValue{header, payload});
  }
  disk_put(key, header, *payload, num_tokens);
  return Status::ok();
}

Status KvCache::Impl::clear() {
  std::vector<MemoryEntry> released;
  {
    std::lock_guard<std::mutex> lock(memory_mu_);
    memory_index_.for_each(
        [&](const KvDigest&, MemoryEntry& entry) { released.push_back(std::move(entry)); });
    memory_index_.clear();
    memory_bytes_ = 0;
  }
  released.clear();
  if (!disk_on()) {
    return Status::ok();
  }
  std::lock_guard<std::mutex> write_lock(disk_write_mu_);
  {
    std::lock_guard<std::mutex> lock(disk_mu_);
    disk_index_.clear();
    disk_bytes_ = 0;
  }
  // Keys are 32 bytes, so [""; 33 x 0xff) covers all of them.
  const std::string end(internal::KvDigest().size() + 1, '\xff');
  rocksdb::WriteOptions wo;
  wo.disableWAL = !options_.use_wal;
  for (rocksdb::ColumnFamilyHandle* cf : {values_cf_, meta_cf_}) {
    rocksdb::Status s = db_->DeleteRange(wo, cf, rocksdb::Slice(), end);
    if (s.ok()) {
      // A full compaction drops the deleted rows; blob files no SST refers to are then deleted.
      rocksdb::CompactRangeOptions compact;
      compact.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
      s = db_->CompactRange(compact, cf, nullptr, nullptr);
    }
    if (!s.ok()) {
      return Status::io_error("KV cache: clearing " + options_.disk_path + ": " + s.ToString());
    }
  }
  return Status::ok();
}

KvCacheStats KvCache::Impl::stats() const {
  KvCacheStats st;
  st.lookups = lookups_.load();
  st.memory_hits = memory_hits_.load();
  st.disk_hits = disk_hits_.load();
  st.misses = misses_.load();
  st.lookup_tokens = lookup_tokens_.load();
  st.hit_tokens = hit_tokens_.load();
  st.puts = puts_.load();
  st.bytes_stored = bytes_stored_.load();
  st.bytes_read = bytes_read_.load();
  st.memory_evictions = memory_evictions_.load();
  st.disk_evictions = disk_evictions_.load();
  st.corruptions = corruptions_.load();
  st.disk_errors = disk_errors_.load();
  {
    std::lock_guard<std::mutex> lock(memory_mu_);
    st.memory_entries = memory_index_.size();
    st.memory_bytes = memory_bytes_;
  }
  {
    std::lock_guard<std::mutex> lock(disk_mu_);
    st.disk_entries = disk_index_.size();
    st.disk_bytes = disk_bytes_;
  }
  st.disk_enabled = disk_on();
  if (st.disk_enabled) {
    uint64_t blob_bytes = 0;
    uint64_t sst_bytes = 0;
    if (db_->GetIntProperty(values_cf_, "rocksdb.total-blob-file-size", &blob_bytes) &&
        db_->GetAggregatedIntProperty("rocksdb.live-sst-files-size", &sst_bytes)) {
      st.disk_file_bytes = blob_bytes + sst_bytes;
    }
  }
  return st;
}

KvCache::KvCache(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

KvCache::~KvCache() = default;

Status KvCache::open(const KvCacheOptions& options, std::unique_ptr<KvCache>* cache) {
  BLOCKRANK_RETURN_IF_ERROR(options.validate());
  try {
    auto impl = std::make_unique<Impl>(options);
    impl->open_disk();
    cache->reset(new KvCache(std::move(impl)));
  } catch (const std::exception& e) {
    return Status::internal(std::string("KV cache: open: ") + e.what());
  }
  return Status::ok();
}

Status KvCache::lookup(const KvModelFingerprint& fingerprint,
                       const std::vector<int32_t>& tokens,
                       KvLookupResult* result) {
  // A failed allocation while reading a 13 MB value must not take the ranker down: it is a miss.
  try {
    return impl_->lookup(fingerprint, tokens, result);
  } catch (const std::exception& e) {
    impl_->warn_exception("lookup treated as a miss", e);
    *result = KvLookupResult();
    return Status::ok();
  }
}

Status KvCache::put(const KvModelFingerprint& fingerprint,
                    const std::vector<int32_t>& tokens,
                    std::shared_ptr<const KvPayload> payload) {
  try {
    return impl_->put(fingerprint, tokens, std::move(payload));
  } catch (const std::exception& e) {
    return Status::resource_exhausted(std::string("KV cache put: ") + e.what());
  }
}

Status KvCache::clear() {
  try {
    return impl_->clear();
  } catch (const std::exception& e) {
    return Status::internal(std::string("KV cache clear: ") + e.what());
  }
}

KvCacheStats KvCache::stats() const {
  return impl_->stats();
}

Status KvCache::disk_status() const {
  return impl_->disk_status();
}

int32_t KvCache::block_aligned_length(int32_t num_tokens) const {
  const int32_t block = impl_->block_size();
  return num_tokens < 0 ? 0 : num_tokens / block * block;
}

}  // namespace blockrank
