// SPDX-License-Identifier: Apache-2.0
// The two hashes the KV cache needs, written here so the component depends on no crypto library
// (OpenSSL's headers are absent on the GPU machine, see docs/GPU.md):
//  - SHA-256 (FIPS 180-4), incremental: the prefix-key chain. A cryptographic hash because keys are
//    computed from user-controlled text (queries); with a 256-bit digest an accidental or crafted
//    collision, which would hand one prefix another prefix's K/V, is out of reach (vLLM switched
//    its prefix-cache keys to SHA-256 for the same reason, docs/ANCHORS.md section 3).
//  - XXH64 (Yann Collet's spec, seed-able): the value checksum. Not cryptographic on purpose: it
//  only
//    has to catch torn writes, truncation and bit flips, and it runs at memory speed on 13 MB
//    values.
// The names carry a kv_ prefix so they cannot clash with the tokenizer's sha256_hex in one binary.
//
// Thread-safety: KvSha256 objects are not shared; the free functions are pure.
#ifndef BLOCKRANK_RANKER_KV_CACHE_KV_HASH_H_
#define BLOCKRANK_RANKER_KV_CACHE_KV_HASH_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace blockrank::internal {

using KvDigest = std::array<uint8_t, 32>;

/// Incremental SHA-256: update() any number of times, then finish() once.
class KvSha256 {
 public:
  KvSha256();
  void update(const void* data, size_t size);
  KvDigest finish();

 private:
  uint32_t state_[8];
  uint8_t buffer_[64];
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

/// SHA-256 of one buffer.
KvDigest kv_sha256(const void* data, size_t size);

/// XXH64 of one buffer (identical to the reference XXH64(data, size, seed)).
uint64_t kv_xxh64(const void* data, size_t size, uint64_t seed);

/// Lower-case hex of a digest (for logs and the CLI).
std::string kv_digest_hex(const KvDigest& digest);

}  // namespace blockrank::internal

#endif  // BLOCKRANK_RANKER_KV_CACHE_KV_HASH_H_
