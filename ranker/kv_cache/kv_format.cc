// SPDX-License-Identifier: Apache-2.0
// Key chain, value header and metadata row encodings of the KV cache (layout in kv_format.h).
#include "ranker/kv_cache/kv_format.h"

#include <cstring>

namespace blockrank::internal {
namespace {

constexpr uint8_t kBlockTag = 0x01;
constexpr uint8_t kExactTag = 0x02;
constexpr char kSeedDomain[] = "blockrank.kv_cache.chain.v1";

void put_u16(char* p, uint16_t v) {
  std::memcpy(p, &v, 2);
}
void put_u32(char* p, uint32_t v) {
  std::memcpy(p, &v, 4);
}
void put_u64(char* p, uint64_t v) {
  std::memcpy(p, &v, 8);
}
uint16_t get_u16(const char* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
uint32_t get_u32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t get_u64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

void hash_field(KvSha256* sha, const std::string& field) {
  const uint64_t size = field.size();
  sha->update(&size, sizeof(size));
  sha->update(field.data(), field.size());
}
void hash_int(KvSha256* sha, int64_t value) {
  sha->update(&value, sizeof(value));
}

// Token ids are hashed as int32 little-endian (the host order on every supported target).
KvDigest chain_step(uint8_t tag, const KvDigest& parent, const int32_t* tokens, size_t count) {
  KvSha256 sha;
  sha.update(&tag, 1);
  sha.update(parent.data(), parent.size());
  if (tag == kExactTag) {
    const uint32_t n = static_cast<uint32_t>(count);
    sha.update(&n, sizeof(n));
  }
  sha.update(tokens, count * sizeof(int32_t));
  return sha.finish();
}

// Header field offsets.
constexpr size_t kOffMagic = 0;
constexpr size_t kOffVersion = 4;
constexpr size_t kOffDtype = 6;
constexpr size_t kOffLayers = 8;
constexpr size_t kOffHeads = 12;
constexpr size_t kOffHeadDim = 16;
constexpr size_t kOffTokens = 20;
constexpr size_t kOffPayloadSize = 24;
constexpr size_t kOffKey = 32;
constexpr size_t kOffPayloadHash = 64;
constexpr size_t kOffHeaderHash = 72;
constexpr uint64_t kChecksumSeed = 0x6b7663616368ULL;  // "kvcach": any fixed seed works

}  // namespace

KvDigest kv_chain_seed(const KvModelFingerprint& fp, int32_t block_size) {
  KvSha256 sha;
  sha.update(kSeedDomain, sizeof(kSeedDomain) - 1);
  hash_int(&sha, block_size);
  hash_field(&sha, fp.architecture);
  hash_field(&sha, fp.weights_digest);
  hash_field(&sha, fp.tokenizer_digest);
  hash_field(&sha, fp.position_scheme);
  hash_int(&sha, static_cast<int64_t>(fp.dtype));
  hash_int(&sha, fp.num_layers);
  hash_int(&sha, fp.num_kv_heads);
  hash_int(&sha, fp.head_dim);
  hash_field(&sha, fp.salt);
  return sha.finish();
}

KvDigest kv_block_key(const KvDigest& parent, const int32_t* tokens, size_t count) {
  return chain_step(kBlockTag, parent, tokens, count);
}

KvDigest kv_exact_key(const KvDigest& parent, const int32_t* tokens, size_t count) {
  return chain_step(kExactTag, parent, tokens, count);
}

KvDigest kv_entry_key(const KvDigest& seed,
                      const std::vector<int32_t>& tokens,
                      int32_t block_size) {
  const size_t block = static_cast<size_t>(block_size);
  const size_t full_blocks = tokens.size() / block;
  KvDigest h = seed;
  for (size_t i = 0; i < full_blocks; ++i) {
    h = kv_block_key(h, tokens.data() + i * block, block);
  }
  const size_t tail = tokens.size() - full_blocks * block;
  return tail == 0 ? h : kv_exact_key(h, tokens.data() + full_blocks * block, tail);
}

std::vector<std::pair<int32_t, KvDigest>> kv_candidate_keys(const KvDigest& seed,
                                                            const std::vector<int32_t>& tokens,
                                                            int32_t block_size) {
  const size_t block = static_cast<size_t>(block_size);
  const size_t full_blocks = tokens.size() / block;
  std::vector<std::pair<int32_t, KvDigest>> keys;
  keys.reserve(full_blocks + 1);
  KvDigest h = seed;
  for (size_t i = 0; i < full_blocks; ++i) {
    h = kv_block_key(h, tokens.data() + i * block, block);
    keys.emplace_back(static_cast<int32_t>((i + 1) * block), h);
  }
  const size_t tail = tokens.size() - full_blocks * block;
  if (tail > 0) {
    keys.emplace_back(static_cast<int32_t>(tokens.size()),
                      kv_exact_key(h, tokens.data() + full_blocks * block, tail));
  }
  return {keys.rbegin(), keys.rend()};
}

KvTensorHeader kv_expected_header(const KvModelFingerprint& fp, int32_t num_tokens) {
  KvTensorHeader header;
  header.dtype = fp.dtype;
  header.num_layers = fp.num_layers;
  header.num_kv_heads = fp.num_kv_heads;
  header.head_dim = fp.head_dim;
  header.num_tokens = num_tokens;
  return header;
}

std::string kv_encode_header(const KvTensorHeader& header,
                             const KvDigest& key,
                             const uint8_t* payload,
                             size_t payload_size) {
  std::string out(kKvValueHeaderSize, '\0');
  char* p = out.data();
  put_u32(p + kOffMagic, kKvValueMagic);
  put_u16(p + kOffVersion, kKvValueFormatVersion);
  p[kOffDtype] = static_cast<char>(header.dtype);
  put_u32(p + kOffLayers, static_cast<uint32_t>(header.num_layers));
  put_u32(p + kOffHeads, static_cast<uint32_t>(header.num_kv_heads));
  put_u32(p + kOffHeadDim, static_cast<uint32_t>(header.head_dim));
  put_u32(p + kOffTokens, static_cast<uint32_t>(header.num_tokens));
  put_u64(p + kOffPayloadSize, payload_size);
  std::memcpy(p + kOffKey, key.data(), key.size());
  put_u64(p + kOffPayloadHash, kv_xxh64(payload, payload_size, kChecksumSeed));
  put_u64(p + kOffHeaderHash, kv_xxh64(p, kOffHeaderHash, kChecksumSeed));
  return out;
}

void kv_write_header(const KvTensorHeader& header, const KvDigest& key, std::string* value) {
  const std::string encoded = kv_encode_header(
      header, key, reinterpret_cast<const uint8_t*>(value->data()) + kKvValueHeaderSize,
      value->size() - kKvValueHeaderSize);
  std::memcpy(value->data(), encoded.data(), kKvValueHeaderSize);
}

Status kv_check_value(const char* data,
                      size_t size,
                      const KvDigest& key,
                      const KvTensorHeader& expected) {
  if (size < kKvValueHeaderSize) {
    return Status::corruption("value of " + std::to_string(size) + " bytes is shorter than its " +
                              std::to_string(kKvValueHeaderSize) + "-byte header");
  }
  if (get_u32(data + kOffMagic) != kKvValueMagic) {
    return Status::corruption("bad magic");
  }
  const uint16_t version = get_u16(data + kOffVersion);
  if (version != kKvValueFormatVersion) {
    return Status::corruption("format version " + std::to_string(version) + ", expected " +
                              std::to_string(kKvValueFormatVersion));
  }
  if (get_u64(data + kOffHeaderHash) != kv_xxh64(data, kOffHeaderHash, kChecksumSeed)) {
    return Status::corruption("header checksum mismatch");
  }
  if (std::memcmp(data + kOffKey, key.data(), key.size()) != 0) {
    return Status::corruption("value belongs to another key");
  }
  if (static_cast<uint8_t>(data[kOffDtype]) != static_cast<uint8_t>(expected.dtype) ||
      get_u32(data + kOffLayers) != static_cast<uint32_t>(expected.num_layers) ||
      get_u32(data + kOffHeads) != static_cast<uint32_t>(expected.num_kv_heads) ||
      get_u32(data + kOffHeadDim) != static_cast<uint32_t>(expected.head_dim) ||
      get_u32(data + kOffTokens) != static_cast<uint32_t>(expected.num_tokens)) {
    return Status::corruption("shape or dtype differs from the fingerprint's");
  }
  const uint64_t payload_size = get_u64(data + kOffPayloadSize);
  if (payload_size != expected.payload_bytes() || payload_size != size - kKvValueHeaderSize) {
    return Status::corruption("payload is " + std::to_string(size - kKvValueHeaderSize) +
                              " bytes, header says " + std::to_string(payload_size) +
                              ", shape needs " + std::to_string(expected.payload_bytes()));
  }
  if (get_u64(data + kOffPayloadHash) !=
      kv_xxh64(data + kKvValueHeaderSize, payload_size, kChecksumSeed)) {
    return Status::corruption("payload checksum mismatch");
  }
  return Status::ok();
}

std::string kv_encode_meta(const KvMeta& meta) {
  std::string row(kKvMetaSize, '\0');
  put_u32(row.data(), 1);  // row version
  put_u32(row.data() + 4, meta.num_tokens);
  put_u64(row.data() + 8, meta.value_bytes);
  put_u64(row.data() + 16, meta.last_access);
  put_u64(row.data() + 24, kv_xxh64(row.data(), 24, kChecksumSeed));
  return row;
}

Status kv_decode_meta(const char* data, size_t size, KvMeta* meta) {
  if (size != kKvMetaSize) {
    return Status::corruption("metadata row of " + std::to_string(size) + " bytes");
  }
  if (get_u32(data) != 1 || get_u64(data + 24) != kv_xxh64(data, 24, kChecksumSeed)) {
    return Status::corruption("metadata row checksum or version mismatch");
  }
  meta->num_tokens = get_u32(data + 4);
  meta->value_bytes = get_u64(data + 8);
  meta->last_access = get_u64(data + 16);
  return Status::ok();
}

}  // namespace blockrank::internal
