// SPDX-License-Identifier: Apache-2.0
// The KV cache's hashes against published vectors, and the key chain and value header rules that
// the cache relies on (distinct keys for distinct inputs, every header field checked).
#include "ranker/kv_cache/kv_format.h"

#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ranker/kv_cache/kv_hash.h"
#include "test_util.h"

namespace blockrank {
namespace {

using internal::KvDigest;

std::string pattern_771() {
  std::string s;
  for (int rep = 0; rep < 3; ++rep) {
    for (int i = 0; i < 256; ++i) {
      s.push_back(static_cast<char>(i));
    }
  }
  return s + "xyz12";
}

TEST(KvHashTest, Sha256MatchesFipsAndPythonHashlib) {
  EXPECT_EQ(internal::kv_digest_hex(internal::kv_sha256("abc", 3)),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(internal::kv_digest_hex(internal::kv_sha256("", 0)),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const std::string s = pattern_771();
  // hashlib.sha256(bytes(range(256))*3 + b"xyz12").hexdigest()
  const std::string expected = "ff9270995849ab22003e2586f6329a8c9b739b395f2be716d439710392253343";
  EXPECT_EQ(internal::kv_digest_hex(internal::kv_sha256(s.data(), s.size())), expected);
  // Incremental updates in uneven pieces give the same digest.
  for (size_t piece : {1, 7, 63, 64, 65, 200}) {
    internal::KvSha256 sha;
    for (size_t pos = 0; pos < s.size(); pos += piece) {
      sha.update(s.data() + pos, std::min(piece, s.size() - pos));
    }
    EXPECT_EQ(internal::kv_digest_hex(sha.finish()), expected) << "piece " << piece;
  }
}

TEST(KvHashTest, Xxh64MatchesReferenceLibrary) {
  // Values from Debian's libxxhash.so.0 (XXH64) through ctypes.
  EXPECT_EQ(internal::kv_xxh64("", 0, 0), 0xef46db3751d8e999ULL);
  EXPECT_EQ(internal::kv_xxh64("abc", 3, 0), 0x44bc2cf5ad770999ULL);
  EXPECT_EQ(internal::kv_xxh64("abc", 3, 42), 0x13c1d910702770e6ULL);
  const std::string s = pattern_771();
  EXPECT_EQ(internal::kv_xxh64(s.data(), s.size(), 7), 0x732a5c9eb39a3331ULL);
  // Unaligned input gives the same result.
  std::string shifted = "-" + s;
  EXPECT_EQ(internal::kv_xxh64(shifted.data() + 1, s.size(), 7), 0x732a5c9eb39a3331ULL);
}

KvModelFingerprint small_fingerprint() {
  KvModelFingerprint fp;
  fp.architecture = "Qwen2ForCausalLM";
  fp.weights_digest = "w0";
  fp.tokenizer_digest = "t0";
  fp.position_scheme = "rope";
  fp.dtype = KvDtype::kBFloat16;
  fp.num_layers = 2;
  fp.num_kv_heads = 2;
  fp.head_dim = 4;
  return fp;
}

std::vector<int32_t> iota_tokens(int n, int start = 100) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) {
    t[i] = start + i;
  }
  return t;
}

TEST(KvFormatTest, CandidatesAreLongestFirstAndMatchEntryKeys) {
  const KvDigest seed = internal::kv_chain_seed(small_fingerprint(), 4);
  const std::vector<int32_t> tokens = iota_tokens(10);
  const auto candidates = internal::kv_candidate_keys(seed, tokens, 4);
  ASSERT_EQ(candidates.size(), 3u);  // exact 10, blocks 8 and 4
  EXPECT_EQ(candidates[0].first, 10);
  EXPECT_EQ(candidates[1].first, 8);
  EXPECT_EQ(candidates[2].first, 4);
  EXPECT_EQ(candidates[0].second, internal::kv_entry_key(seed, tokens, 4));
  EXPECT_EQ(
      candidates[1].second,
      internal::kv_entry_key(seed, std::vector<int32_t>(tokens.begin(), tokens.begin() + 8), 4));
  // An aligned sequence has no extra exact key: its full length is a block key.
  EXPECT_EQ(internal::kv_candidate_keys(seed, iota_tokens(8), 4).size(), 2u);
  // The domain tags keep an exact (tail) key apart from a block key over the same tokens.
  const std::vector<int32_t> four = iota_tokens(4);
  EXPECT_NE(internal::kv_block_key(seed, four.data(), 4),
            internal::kv_exact_key(seed, four.data(), 4));
}

TEST(KvFormatTest, EveryFingerprintFieldChangesTheSeed) {
  const KvModelFingerprint base = small_fingerprint();
  const KvDigest seed = internal::kv_chain_seed(base, 16);
  std::vector<KvModelFingerprint> variants(10, base);
  variants[0].architecture = "MistralForCausalLM";
  variants[1].weights_digest = "w1";
  variants[2].tokenizer_digest = "t1";
  variants[3].position_scheme = "rope2";
  variants[4].dtype = KvDtype::kFloat16;
  variants[5].num_layers = 3;
  variants[6].num_kv_heads = 1;
  variants[7].head_dim = 8;
  variants[8].salt = "tenant-a";
  // Field boundaries matter: ("w0", "t0") vs ("w0t", "0") must differ.
  variants[9].weights_digest = "w0t";
  variants[9].tokenizer_digest = "0";
  for (size_t i = 0; i < variants.size(); ++i) {
    EXPECT_NE(internal::kv_chain_seed(variants[i], 16), seed) << "variant " << i;
  }
  EXPECT_NE(internal::kv_chain_seed(base, 8), seed);
}

TEST(KvFormatTest, HeaderChecksCatchEveryField) {
  const KvModelFingerprint fp = small_fingerprint();
  const KvTensorHeader header = internal::kv_expected_header(fp, 5);
  const KvDigest key = internal::kv_sha256("k", 1);
  std::string value(internal::kKvValueHeaderSize + header.payload_bytes(), '\0');
  for (size_t i = internal::kKvValueHeaderSize; i < value.size(); ++i) {
    value[i] = static_cast<char>(i * 31);
  }
  internal::kv_write_header(header, key, &value);
  ASSERT_OK(internal::kv_check_value(value.data(), value.size(), key, header));

  // Any single flipped byte anywhere is caught.
  for (size_t pos = 0; pos < value.size(); pos += 7) {
    std::string bad = value;
    bad[pos] ^= 0x10;
    EXPECT_EQ(internal::kv_check_value(bad.data(), bad.size(), key, header).code(),
              StatusCode::kCorruption)
        << "byte " << pos;
  }
  // Truncated, read under another key, or a different shape.
  EXPECT_FALSE(internal::kv_check_value(value.data(), value.size() - 1, key, header).is_ok());
  EXPECT_FALSE(internal::kv_check_value(value.data(), 10, key, header).is_ok());
  EXPECT_FALSE(
      internal::kv_check_value(value.data(), value.size(), internal::kv_sha256("j", 1), header)
          .is_ok());
  KvTensorHeader other = header;
  other.num_layers = 1;
  EXPECT_FALSE(internal::kv_check_value(value.data(), value.size(), key, other).is_ok());
}

TEST(KvFormatTest, MetaRoundTripAndCorruption) {
  internal::KvMeta meta;
  meta.num_tokens = 150;
  meta.value_bytes = 1234567;
  meta.last_access = 42;
  std::string row = internal::kv_encode_meta(meta);
  internal::KvMeta back;
  ASSERT_OK(internal::kv_decode_meta(row.data(), row.size(), &back));
  EXPECT_EQ(back.num_tokens, 150u);
  EXPECT_EQ(back.value_bytes, 1234567u);
  EXPECT_EQ(back.last_access, 42u);
  row[9] ^= 1;
  EXPECT_FALSE(internal::kv_decode_meta(row.data(), row.size(), &back).is_ok());
  EXPECT_FALSE(internal::kv_decode_meta(row.data(), 5, &back).is_ok());
}

}  // namespace
}  // namespace blockrank
