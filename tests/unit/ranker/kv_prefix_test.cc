// SPDX-License-Identifier: Apache-2.0
// Instruction-prefix KV cache through the model (issue 6): scores with the cache equal the scores
// without it bit for bit on the CPU in fp32, for a miss (cold), a memory hit, a disk hit after
// reopening, a partial hit (same instruction, new query: only the instruction part is reused) and
// a corrupt disk entry (dropped, counted once, recomputed). Plus the model-level row groups: a past
// of 0, `split` or L0 tokens gives the same scores, and the grouping agrees with the single-pass
// forward to fp32 rounding. A random Mistral-shaped model large enough for OpenBLAS's blocked
// kernels (hidden 128, 4 layers) is written to a temporary directory.
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include "ranker/core/model.h"
#include "ranker/core/ranker.h"
#include "ranker/core/safetensors.h"
#include "ranker/kv_cache/kv_format.h"
#include "test_util.h"

namespace blockrank {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kVocab = 1000, kHidden = 128, kFfn = 256, kLayers = 4;

// Writes a random Mistral-shaped checkpoint (scoring layer 3: layers 0..2 are cached).
void write_model(const std::string& dir) {
  fs::create_directories(dir);
  testing::write_text(dir + "/config.json",
                      R"({"model_type": "mistral", "vocab_size": 1000, "hidden_size": 128,
    "intermediate_size": 256, "num_hidden_layers": 4, "num_attention_heads": 8,
    "num_key_value_heads": 2, "head_dim": 16, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
    "tie_word_embeddings": false, "sliding_window": null})");
  testing::write_text(dir + "/blockrank.json", R"({"scoring_layer": 3, "signal_rows": 2})");
  at::manual_seed(11);
  std::vector<std::pair<std::string, at::Tensor>> w;
  auto mat = [](int64_t r, int64_t c) { return at::randn({r, c}) / std::sqrt(double(c)); };
  w.emplace_back("model.embed_tokens.weight", at::randn({kVocab, kHidden}));
  w.emplace_back("lm_head.weight", mat(kVocab, kHidden));
  w.emplace_back("model.norm.weight", at::ones({kHidden}));
  for (int l = 0; l < kLayers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    w.emplace_back(p + "input_layernorm.weight", at::ones({kHidden}));
    w.emplace_back(p + "post_attention_layernorm.weight", at::ones({kHidden}));
    w.emplace_back(p + "self_attn.q_proj.weight", mat(128, kHidden));
    w.emplace_back(p + "self_attn.k_proj.weight", mat(32, kHidden));
    w.emplace_back(p + "self_attn.v_proj.weight", mat(32, kHidden));
    w.emplace_back(p + "self_attn.o_proj.weight", mat(kHidden, 128));
    w.emplace_back(p + "mlp.gate_proj.weight", mat(kFfn, kHidden));
    w.emplace_back(p + "mlp.up_proj.weight", mat(kFfn, kHidden));
    w.emplace_back(p + "mlp.down_proj.weight", mat(kHidden, kFfn));
  }
  ASSERT_OK(write_safetensors(dir + "/model.safetensors", w));
}

// A prompt: an instruction of `instruction` fixed tokens, then `query_tokens` tokens drawn from
// `query_seed` (block 0), `docs` documents of varied lengths, and a query block of 12 tokens.
RankerInput make_input(int32_t instruction, int32_t query_tokens, int query_seed, int docs = 6) {
  RankerInput in;
  for (int32_t i = 0; i < instruction; ++i) {
    in.input_ids.push_back((i * 31 + 7) % kVocab);
  }
  for (int32_t i = 0; i < query_tokens; ++i) {
    in.input_ids.push_back((i * 17 + query_seed * 101 + 3) % kVocab);
  }
  in.block_lengths.push_back(instruction + query_tokens);
  for (int d = 0; d < docs; ++d) {
    const int32_t len = 20 + (d * 13) % 37;
    for (int32_t i = 0; i < len; ++i) {
      in.input_ids.push_back((d * 211 + i * 29 + 5) % kVocab);
    }
    in.block_lengths.push_back(len);
  }
  for (int32_t i = 0; i < 12; ++i) {
    in.input_ids.push_back((i * 43 + query_seed * 7 + 1) % kVocab);
  }
  in.block_lengths.push_back(12);
  in.instruction_length = instruction;
  return in;
}

using testing::CapturedLog;

void expect_bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0)
      << "first scores " << a[0] << " vs " << b[0];
}

class KvPrefixTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_dir_ = dir_.file("model");
    write_model(model_dir_);
    RankerOptions plain;
    ASSERT_OK(Ranker::open(model_dir_, plain, &uncached_));
  }

  std::unique_ptr<Ranker> open_cached(const std::string& kv_dir) {
    RankerOptions o;
    o.kv_cache = true;
    o.kv_cache_dir = kv_dir;
    o.logger = log_.logger();
    std::unique_ptr<Ranker> r;
    EXPECT_OK(Ranker::open(model_dir_, o, &r));
    return r;
  }

  std::vector<float> score(const Ranker& r, const RankerInput& in) {
    std::vector<float> s;
    EXPECT_OK(r.score(in, &s));
    r.flush_cache();
    return s;
  }

  testing::TempDir dir_;
  CapturedLog log_;
  std::string model_dir_;
  std::unique_ptr<Ranker> uncached_;
};

TEST_F(KvPrefixTest, ColdWarmPartialAndDiskScoresEqualUncachedBitwise) {
  const std::string kv = dir_.file("kv");
  const RankerInput a = make_input(/*instruction=*/45, /*query_tokens=*/9, /*query_seed=*/1);
  const RankerInput b = make_input(45, 14, 2);  // same instruction, another query
  const std::vector<float> want_a = score(*uncached_, a);
  const std::vector<float> want_b = score(*uncached_, b);
  {
    auto cached = open_cached(kv);
    ASSERT_NE(cached, nullptr);
    expect_bitwise_equal(score(*cached, a), want_a);  // cold: miss, then two puts
    RankerCacheStats st = cached->cache_stats();
    EXPECT_TRUE(st.enabled);
    EXPECT_EQ(st.store.misses, 1u);
    EXPECT_EQ(st.store.puts, 2u);  // the 32-token instruction part and the 54-token block 0
    EXPECT_EQ(st.store.disk_entries, 2u);
    expect_bitwise_equal(score(*cached, a), want_a);  // warm: memory hit of all of block 0
    st = cached->cache_stats();
    EXPECT_EQ(st.store.memory_hits, 1u);
    EXPECT_EQ(st.reused_tokens, 54u);
    expect_bitwise_equal(score(*cached, b), want_b);  // partial: the instruction part
    st = cached->cache_stats();
    EXPECT_EQ(st.store.memory_hits, 2u);
    EXPECT_EQ(st.reused_tokens, 54u + 32u);
    EXPECT_EQ(st.puts_dropped, 0u);
    EXPECT_EQ(st.disk_status, "ok");
  }
  // A new process: the memory tier is empty, the disk tier serves both prompts.
  auto reopened = open_cached(kv);
  expect_bitwise_equal(score(*reopened, b), want_b);
  expect_bitwise_equal(score(*reopened, a), want_a);
  const RankerCacheStats st = reopened->cache_stats();
  EXPECT_EQ(st.store.disk_hits, 2u);
  EXPECT_EQ(st.store.misses, 0u);
  EXPECT_EQ(st.store.corruptions, 0u);
}

TEST_F(KvPrefixTest, CorruptDiskEntryIsDroppedAndNeverChangesAScore) {
  const std::string kv = dir_.file("kv");
  RankerInput in = make_input(40, 10, 3);
  in.instruction_length = 0;  // only the whole block 0 is stored: one entry to break
  const std::vector<float> want = score(*uncached_, in);
  {
    auto cached = open_cached(kv);
    expect_bitwise_equal(score(*cached, in), want);
    EXPECT_EQ(cached->cache_stats().store.disk_entries, 1u);
  }
  {
    // Flip one payload byte of the stored value behind the cache's back.
    rocksdb::Options o;
    std::vector<std::string> names;
    ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(o, kv, &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const std::string& name : names) {
      cfs.emplace_back(name, rocksdb::ColumnFamilyOptions());
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, kv, cfs, &handles, &raw).ok());
    rocksdb::ColumnFamilyHandle* values = nullptr;
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == internal::kKvValuesColumnFamily) {
        values = handles[i];
      }
    }
    ASSERT_NE(values, nullptr);
    int flipped = 0;
    std::unique_ptr<rocksdb::Iterator> it(raw->NewIterator(rocksdb::ReadOptions(), values));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::string v = it->value().ToString();
      v[v.size() - 5] = static_cast<char>(v[v.size() - 5] ^ 0x40);
      ASSERT_TRUE(raw->Put(rocksdb::WriteOptions(), values, it->key(), v).ok());
      ++flipped;
    }
    it.reset();
    EXPECT_EQ(flipped, 1);
    for (auto* h : handles) {
      ASSERT_TRUE(raw->DestroyColumnFamilyHandle(h).ok());
    }
    delete raw;
  }
  auto reopened = open_cached(kv);
  expect_bitwise_equal(score(*reopened, in), want);  // dropped, recomputed, stored again
  RankerCacheStats st = reopened->cache_stats();
  EXPECT_EQ(st.store.corruptions, 1u);
  EXPECT_EQ(st.store.misses, 1u);
  EXPECT_TRUE(log_.contains("corrupt"));
  expect_bitwise_equal(score(*reopened, in), want);  // the recomputed entry hits
  EXPECT_EQ(reopened->cache_stats().store.memory_hits, 1u);
}

TEST_F(KvPrefixTest, MemoryOnlyCacheAndDecodingBypass) {
  auto cached = open_cached("");  // no disk tier
  const RankerInput in = make_input(32, 5, 4);
  const std::vector<float> want = score(*uncached_, in);
  expect_bitwise_equal(score(*cached, in), want);
  expect_bitwise_equal(score(*cached, in), want);
  RankerCacheStats st = cached->cache_stats();
  EXPECT_EQ(st.store.memory_hits, 1u);
  EXPECT_FALSE(st.store.disk_enabled);
  EXPECT_NE(st.disk_status, "ok");
  // generate() does not use the cache (it needs every layer's K/V).
  RankerGenerateOptions go;
  go.max_new_tokens = 2;
  RankerGeneration gen;
  ASSERT_OK(cached->generate(in, go, &gen));
  EXPECT_EQ(cached->cache_stats().store.lookups, st.store.lookups);
  // Without a cache the stats say so.
  EXPECT_FALSE(uncached_->cache_stats().enabled);
}

TEST(PrefixKvModelTest, PastOfAnyGroupBoundaryGivesTheSameScores) {
  ModelConfig c;
  c.arch = Architecture::kQwen2;
  c.vocab_size = 500;
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.num_layers = 3;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.qkv_bias = true;
  c.rope_theta = 1e6;
  BlockRankSettings settings;
  settings.scoring_layer = 2;
  std::unique_ptr<Model> m;
  ASSERT_OK(Model::create_random(c, settings, LoadOptions{}, 5, &m));
  BlockLayout layout;
  layout.block_lengths = {37, 20, 31, 9, 14};
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < layout.num_tokens(); ++i) {
    ids.push_back((i * 37 + 11) % 500);
  }
  auto single = m->score_documents(ids, layout, 2, 2);  // one group: the plain forward
  ASSERT_OK(single.status());
  PrefixKv cold;
  cold.split = 16;
  at::Tensor present;
  cold.present = &present;
  auto grouped = m->score_documents(ids, layout, 2, 2, &cold);
  ASSERT_OK(grouped.status());
  ASSERT_TRUE(present.defined());
  EXPECT_EQ(present.sizes().vec(), (std::vector<int64_t>{2, 2, 2, 37, 16}));
  for (size_t d = 0; d < single->size(); ++d) {
    EXPECT_NEAR((*single)[d], (*grouped)[d], 1e-5) << d;  // other GEMM row counts: fp32 rounding
  }
  for (int64_t cached : {int64_t{16}, int64_t{37}}) {
    PrefixKv warm;
    warm.split = 16;
    warm.past = present.narrow(3, 0, cached);
    auto s = m->score_documents(ids, layout, 2, 2, &warm);
    ASSERT_OK(s.status());
    expect_bitwise_equal(*s, *grouped);
  }
  PrefixKv bad;
  bad.past = at::zeros({1, 2, 2, 37, 16});  // wrong layer count
  EXPECT_EQ(m->score_documents(ids, layout, 2, 2, &bad).status().code(),
            StatusCode::kInvalidArgument);
  bad.past = at::zeros({2, 2, 2, 38, 16});  // longer than block 0
  EXPECT_EQ(m->score_documents(ids, layout, 2, 2, &bad).status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace blockrank
