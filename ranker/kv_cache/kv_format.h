// SPDX-License-Identifier: Apache-2.0
// The KV cache's on-disk formats, kept apart from the cache logic so tests can build and break
// stored bytes on purpose:
//  - keys: the SHA-256 chain over token blocks (see kv_cache.h), 32 raw bytes;
//  - values: an 80-byte header (magic, format version, dtype, shape, the entry's own key, XXH64 of
//    the payload, XXH64 of the header) followed by the payload;
//  - metadata rows: the size, token count and last-access tick of each entry, so the disk index and
//    its LRU order are rebuilt at open without reading the (large) values.
// Integers are little-endian.
//
// Thread-safety: pure functions.
#ifndef BLOCKRANK_RANKER_KV_CACHE_KV_FORMAT_H_
#define BLOCKRANK_RANKER_KV_CACHE_KV_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "blockrank/status.h"
#include "ranker/kv_cache/kv_cache.h"
#include "ranker/kv_cache/kv_hash.h"

namespace blockrank::internal {

/// Column families of the store. "default" holds only the store-format marker.
inline constexpr const char* kKvValuesColumnFamily = "kv_values";
inline constexpr const char* kKvMetaColumnFamily = "kv_meta";
/// Marker row in "default": refuses a store written by an incompatible future version.
inline constexpr const char* kKvStoreFormatKey = "blockrank.kv_cache.store_format";
inline constexpr const char* kKvStoreFormatValue = "1";

inline constexpr uint32_t kKvValueMagic = 0x564b5242;  // "BRKV" read little-endian
inline constexpr uint16_t kKvValueFormatVersion = 1;
inline constexpr size_t kKvValueHeaderSize = 80;  // a multiple of 16: the payload stays aligned
inline constexpr size_t kKvMetaSize = 32;

/// h_0: SHA-256 over a domain tag, the block size and every fingerprint field, each field
/// length-prefixed so no two different fingerprints serialise to the same bytes.
KvDigest kv_chain_seed(const KvModelFingerprint& fingerprint, int32_t block_size);
/// h_i = SHA-256(0x01 || h_{i-1} || block tokens as int32 LE).
KvDigest kv_block_key(const KvDigest& parent, const int32_t* tokens, size_t count);
/// Key of a prefix whose length is not a multiple of the block size:
/// SHA-256(0x02 || h_{n/B} || tail length || tail tokens). The tag keeps it apart from block keys.
KvDigest kv_exact_key(const KvDigest& parent, const int32_t* tokens, size_t count);

/// The key under which an entry for exactly `tokens` is stored.
KvDigest kv_entry_key(const KvDigest& seed, const std::vector<int32_t>& tokens, int32_t block_size);
/// The keys lookup() probes, longest prefix first: (prefix length, key).
std::vector<std::pair<int32_t, KvDigest>> kv_candidate_keys(const KvDigest& seed,
                                                            const std::vector<int32_t>& tokens,
                                                            int32_t block_size);

/// The header a value of `num_tokens` tokens must have under `fingerprint`.
KvTensorHeader kv_expected_header(const KvModelFingerprint& fingerprint, int32_t num_tokens);

/// The 80-byte header of a value whose payload is `payload_size` bytes at `payload`.
std::string kv_encode_header(const KvTensorHeader& header,
                             const KvDigest& key,
                             const uint8_t* payload,
                             size_t payload_size);
/// Writes the header for `payload` (already at value[kKvValueHeaderSize..]) into value[0..80).
void kv_write_header(const KvTensorHeader& header, const KvDigest& key, std::string* value);
/// Checks a stored value against the key it was read under and the header it must have; returns
/// kCorruption naming the first failed check (size, magic, version, header checksum, key, shape,
/// payload size, payload checksum).
Status kv_check_value(const char* data,
                      size_t size,
                      const KvDigest& key,
                      const KvTensorHeader& expected);

/// One metadata row.
struct KvMeta {
  uint32_t num_tokens = 0;
  uint64_t value_bytes = 0;
  uint64_t last_access = 0;  ///< Logical tick: larger is more recent.
};
std::string kv_encode_meta(const KvMeta& meta);
/// kCorruption when the row has the wrong size or checksum.
Status kv_decode_meta(const char* data, size_t size, KvMeta* meta);

}  // namespace blockrank::internal

#endif  // BLOCKRANK_RANKER_KV_CACHE_KV_FORMAT_H_
