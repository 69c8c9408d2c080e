// SPDX-License-Identifier: Apache-2.0
// SHA-256 (FIPS 180-4), incremental, dependency-free (OpenSSL's headers are absent on the GPU
// machine). Used for the tokenizer's content digest and the KV cache's prefix-key chain: keys are
// computed from user text, so a cryptographic hash keeps accidental or crafted collisions out of
// reach.
//
// Thread-safety: Sha256 objects are not shared; the free functions are pure.
#ifndef BLOCKRANK_BASE_SHA256_H_
#define BLOCKRANK_BASE_SHA256_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace blockrank {

using Sha256Digest = std::array<uint8_t, 32>;

/// Incremental SHA-256: update() any number of times, then finish() once.
class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  Sha256Digest finish();

 private:
  uint32_t state_[8];
  uint8_t buffer_[64];
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

/// SHA-256 of one buffer.
Sha256Digest sha256(const void* data, size_t size);
/// Lower-case hex of a digest.
std::string digest_hex(const Sha256Digest& digest);
/// Lower-case hex SHA-256 of a byte string.
std::string sha256_hex(std::string_view data);

}  // namespace blockrank

#endif  // BLOCKRANK_BASE_SHA256_H_
