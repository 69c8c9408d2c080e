// SPDX-License-Identifier: Apache-2.0
// XXH64 after the xxHash specification
// (github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md). It reads input through memcpy so
// unaligned buffers (payloads sliced out of RocksDB values) are fine.
#include "ranker/kv_cache/kv_hash.h"

#include <algorithm>
#include <cstring>

namespace blockrank::internal {
namespace {

constexpr uint64_t kPrime64_1 = 0x9E3779B185EBCA87ULL;
constexpr uint64_t kPrime64_2 = 0xC2B2AE3D27D4EB4FULL;
constexpr uint64_t kPrime64_3 = 0x165667B19E3779F9ULL;
constexpr uint64_t kPrime64_4 = 0x85EBCA77C2B2AE63ULL;
constexpr uint64_t kPrime64_5 = 0x27D4EB2F165667C5ULL;

uint64_t rotl64(uint64_t x, int n) {
  return (x << n) | (x >> (64 - n));
}
// Little-endian loads: the spec reads lanes little-endian; x86-64 and aarch64 Linux are LE.
uint64_t load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
uint32_t load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t xxh64_round(uint64_t acc, uint64_t lane) {
  acc += lane * kPrime64_2;
  acc = rotl64(acc, 31);
  return acc * kPrime64_1;
}
uint64_t xxh64_merge(uint64_t acc, uint64_t val) {
  acc ^= xxh64_round(0, val);
  return acc * kPrime64_1 + kPrime64_4;
}

}  // namespace

uint64_t kv_xxh64(const void* data, size_t size, uint64_t seed) {
  const auto* p = static_cast<const uint8_t*>(data);
  const uint8_t* const end = p + size;
  uint64_t acc;
  if (size >= 32) {
    uint64_t v1 = seed + kPrime64_1 + kPrime64_2;
    uint64_t v2 = seed + kPrime64_2;
    uint64_t v3 = seed;
    uint64_t v4 = seed - kPrime64_1;
    const uint8_t* const limit = end - 32;
    do {
      v1 = xxh64_round(v1, load64(p));
      v2 = xxh64_round(v2, load64(p + 8));
      v3 = xxh64_round(v3, load64(p + 16));
      v4 = xxh64_round(v4, load64(p + 24));
      p += 32;
    } while (p <= limit);
    acc = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
    acc = xxh64_merge(acc, v1);
    acc = xxh64_merge(acc, v2);
    acc = xxh64_merge(acc, v3);
    acc = xxh64_merge(acc, v4);
  } else {
    acc = seed + kPrime64_5;
  }
  acc += static_cast<uint64_t>(size);
  for (; p + 8 <= end; p += 8) {
    acc ^= xxh64_round(0, load64(p));
    acc = rotl64(acc, 27) * kPrime64_1 + kPrime64_4;
  }
  if (p + 4 <= end) {
    acc ^= static_cast<uint64_t>(load32(p)) * kPrime64_1;
    acc = rotl64(acc, 23) * kPrime64_2 + kPrime64_3;
    p += 4;
  }
  for (; p < end; ++p) {
    acc ^= static_cast<uint64_t>(*p) * kPrime64_5;
    acc = rotl64(acc, 11) * kPrime64_1;
  }
  acc ^= acc >> 33;
  acc *= kPrime64_2;
  acc ^= acc >> 29;
  acc *= kPrime64_3;
  acc ^= acc >> 32;
  return acc;
}

}  // namespace blockrank::internal
