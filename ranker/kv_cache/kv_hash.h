// SPDX-License-Identifier: Apache-2.0
// The two hashes the KV cache needs, with no crypto library (OpenSSL's headers are absent on the
// GPU machine, see docs/GPU.md):
//  - SHA-256 (plugin/base/sha256.h), incremental: the prefix-key chain. A cryptographic hash
//  because keys are
//    computed from user-controlled text (queries); with a 256-bit digest an accidental or crafted
//    collision, which would hand one prefix another prefix's K/V, is out of reach (vLLM switched
//    its prefix-cache keys to SHA-256 for the same reason, docs/ANCHORS.md section 3).
//  - XXH64 (Yann Collet's spec, seed-able): the value checksum. Not cryptographic on purpose: it
//  only
//    has to catch torn writes, truncation and bit flips, and it runs at memory speed on 13 MB
//    values.
//
// Thread-safety: KvSha256 objects are not shared; the free functions are pure.
#ifndef BLOCKRANK_RANKER_KV_CACHE_KV_HASH_H_
#define BLOCKRANK_RANKER_KV_CACHE_KV_HASH_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "plugin/base/sha256.h"

namespace blockrank::internal {

// SHA-256 lives in plugin/base/sha256.h (shared with the tokenizer's digest); these names keep the
// cache code readable.
using KvDigest = Sha256Digest;
using KvSha256 = Sha256;
inline KvDigest kv_sha256(const void* data, size_t size) {
  return sha256(data, size);
}
inline std::string kv_digest_hex(const KvDigest& digest) {
  return digest_hex(digest);
}

/// XXH64 of one buffer (identical to the reference XXH64(data, size, seed)).
uint64_t kv_xxh64(const void* data, size_t size, uint64_t seed);

}  // namespace blockrank::internal

#endif  // BLOCKRANK_RANKER_KV_CACHE_KV_HASH_H_
