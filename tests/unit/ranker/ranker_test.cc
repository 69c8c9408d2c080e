// SPDX-License-Identifier: Apache-2.0
// Ranker core unit tests: config.json / blockrank.json validation, safetensors round trip and
// corruption, checkpoint error paths (missing tensor, wrong shape, truncated file, unknown
// architecture, bad JSON), the ragged BlockRank forward against a dense forward with the explicit
// §2.1 mask, permutation invariance of the document scores (documents share positions), and §1.4
// block truncation.
#include "ranker/core/ranker.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "plugin/base/file_util.h"
#include "ranker/core/cuda_attention.h"
#include "ranker/core/model.h"
#include "ranker/core/model_config.h"
#include "ranker/core/safetensors.h"
#include "test_util.h"

namespace blockrank {
namespace {

namespace fs = std::filesystem;

std::string fixture(const std::string& name) {
  return testing::source_dir() + "/tests/data/fixtures/" + name;
}

// Copies a fixture model directory so a test can damage it.
std::string copy_fixture(const testing::TempDir& tmp, const std::string& name) {
  const std::string dst = tmp.file(name);
  fs::create_directories(dst);
  for (const auto& e : fs::directory_iterator(fixture(name))) {
    fs::copy_file(e.path(), dst + "/" + e.path().filename().string());
  }
  return dst;
}

const char* kLlamaConfig = R"({"model_type": "llama", "vocab_size": 10, "hidden_size": 8,
  "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1})";

TEST(ModelConfigTest, ParsesDefaultsAndRopeThetaLocations) {
  auto c = parse_model_config(kLlamaConfig, "config.json");
  ASSERT_OK(c.status());
  EXPECT_EQ(c->head_dim, 4);
  EXPECT_EQ(c->rope_theta, 10000.0);
  auto top = parse_model_config(R"({"model_type": "mistral", "vocab_size": 10, "hidden_size": 8,
      "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "rope_theta": 1e6})",
                                "c");
  ASSERT_OK(top.status());
  EXPECT_EQ(top->rope_theta, 1e6);
  auto nested = parse_model_config(R"({"model_type": "qwen3", "vocab_size": 10, "hidden_size": 8,
      "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "head_dim": 16,
      "rope_parameters": {"rope_type": "default", "rope_theta": 5e5}})",
                                   "c");
  ASSERT_OK(nested.status());
  EXPECT_EQ(nested->rope_theta, 5e5);
  EXPECT_EQ(nested->head_dim, 16);
  EXPECT_TRUE(nested->qk_norm);
}

TEST(ModelConfigTest, RefusesWhatItCannotCompute) {
  auto arch = parse_model_config(R"({"model_type": "gpt2", "vocab_size": 1})", "dir/config.json");
  EXPECT_EQ(arch.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(arch.status().message().find("dir/config.json"), std::string::npos);
  EXPECT_NE(arch.status().message().find("gpt2"), std::string::npos);
  std::string scaled = kLlamaConfig;
  scaled.insert(scaled.size() - 1, R"(, "rope_scaling": {"rope_type": "yarn", "factor": 4.0})");
  auto rope = parse_model_config(scaled, "config.json");
  EXPECT_EQ(rope.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(rope.status().message().find("rope_scaling"), std::string::npos);
  auto bad_json = parse_model_config("{\"model_type\": ", "config.json");
  EXPECT_EQ(bad_json.status().code(), StatusCode::kInvalidArgument);
  auto missing = parse_model_config(R"({"model_type": "llama", "vocab_size": 10})", "config.json");
  EXPECT_EQ(missing.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("hidden_size"), std::string::npos);
  auto typed = parse_model_config(R"({"model_type": "llama", "vocab_size": "10"})", "config.json");
  EXPECT_EQ(typed.status().code(), StatusCode::kInvalidArgument);
}

TEST(ModelConfigTest, BlockRankSettings) {
  auto c = parse_model_config(kLlamaConfig, "config.json");
  ASSERT_OK(c.status());
  auto d = parse_blockrank_settings("", "blockrank.json", *c);
  ASSERT_OK(d.status());
  EXPECT_EQ(d->signal_rows, 2);
  EXPECT_EQ(d->query_position_offset, 16384);
  EXPECT_EQ(d->scoring_layer, 1);
  auto bad = parse_blockrank_settings(R"({"scoring_layer": 2})", "blockrank.json", *c);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("scoring_layer"), std::string::npos);
}

TEST(SafetensorsTest, RoundTripAndCorruption) {
  testing::TempDir tmp;
  const std::string path = tmp.file("t.safetensors");
  at::Tensor a = at::arange(12, at::kFloat).view({3, 4});
  at::Tensor b = at::arange(5, at::kFloat).to(at::kBFloat16);
  ASSERT_OK(write_safetensors(path, {{"a", a}, {"b", b}}));
  std::shared_ptr<SafetensorsFile> f;
  ASSERT_OK(SafetensorsFile::open(path, &f));
  auto va = f->view("a");
  ASSERT_OK(va.status());
  EXPECT_TRUE(at::equal(*va, a));
  auto vb = f->view("b");
  ASSERT_OK(vb.status());
  EXPECT_EQ(vb->scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(*vb, b));
  EXPECT_EQ(f->view("c").status().code(), StatusCode::kNotFound);

  // Truncated: drop the last bytes of the data section.
  const auto size = fs::file_size(path);
  fs::resize_file(path, size - 4);
  std::shared_ptr<SafetensorsFile> g;
  Status s = SafetensorsFile::open(path, &g);
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_NE(s.message().find("'b'"), std::string::npos) << s.message();
  // Shorter than the 8-byte length prefix, and a header length beyond the file.
  fs::resize_file(path, 5);
  EXPECT_EQ(SafetensorsFile::open(path, &g).code(), StatusCode::kCorruption);
  testing::write_text(path, std::string("\xff\xff\xff\x00\x00\x00\x00\x00{}", 10));
  EXPECT_EQ(SafetensorsFile::open(path, &g).code(), StatusCode::kCorruption);
  testing::write_text(path, std::string("\x04\x00\x00\x00\x00\x00\x00\x00{{{{", 12));
  EXPECT_EQ(SafetensorsFile::open(path, &g).code(), StatusCode::kCorruption);
  EXPECT_EQ(SafetensorsFile::open(tmp.file("absent"), &g).code(), StatusCode::kNotFound);
}

TEST(ModelLoadTest, BadCheckpointsGiveClearErrors) {
  testing::TempDir tmp;
  std::unique_ptr<Model> m;
  {  // Missing tensor.
    const std::string dir = copy_fixture(tmp, "llama");
    std::shared_ptr<SafetensorsFile> f;
    ASSERT_OK(SafetensorsFile::open(dir + "/model.safetensors", &f));
    std::vector<std::pair<std::string, at::Tensor>> keep;
    for (const auto& [name, e] : f->entries()) {
      if (name != "model.layers.1.mlp.up_proj.weight") {
        keep.emplace_back(name, f->view(name)->clone());
      }
    }
    f.reset();
    ASSERT_OK(write_safetensors(dir + "/model.safetensors", keep));
    Status s = Model::load(dir, LoadOptions{}, &m);
    EXPECT_EQ(s.code(), StatusCode::kNotFound);
    EXPECT_NE(s.message().find("model.layers.1.mlp.up_proj.weight"), std::string::npos)
        << s.message();
    EXPECT_NE(s.message().find("model.safetensors"), std::string::npos) << s.message();
    // Wrong shape.
    keep.emplace_back("model.layers.1.mlp.up_proj.weight", at::zeros({3, 3}));
    ASSERT_OK(write_safetensors(dir + "/model.safetensors", keep));
    s = Model::load(dir, LoadOptions{}, &m);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("[3, 3]"), std::string::npos) << s.message();
    ASSERT_OK(remove_tree(dir));
  }
  {  // Truncated shard of a sharded checkpoint.
    const std::string dir = copy_fixture(tmp, "mistral");
    const std::string shard = dir + "/model-00002-of-00003.safetensors";
    fs::resize_file(shard, fs::file_size(shard) / 2);
    Status s = Model::load(dir, LoadOptions{}, &m);
    EXPECT_EQ(s.code(), StatusCode::kCorruption);
    EXPECT_NE(s.message().find("model-00002-of-00003"), std::string::npos) << s.message();
    // Bad index JSON.
    testing::write_text(dir + "/model.safetensors.index.json", "{\"weight_map\": [");
    s = Model::load(dir, LoadOptions{}, &m);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("index.json"), std::string::npos) << s.message();
  }
  {  // Unknown architecture and bad config JSON.
    const std::string dir = copy_fixture(tmp, "qwen2");
    testing::write_text(dir + "/config.json", R"({"model_type": "falcon", "vocab_size": 128})");
    Status s = Model::load(dir, LoadOptions{}, &m);
    EXPECT_EQ(s.code(), StatusCode::kUnimplemented);
    EXPECT_NE(s.message().find("falcon"), std::string::npos);
    testing::write_text(dir + "/config.json", "not json");
    s = Model::load(dir, LoadOptions{}, &m);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("config.json"), std::string::npos);
    testing::write_text(dir + "/blockrank.json", "[1,");
    EXPECT_EQ(Model::load(fixture("qwen2"), LoadOptions{}, &m).code(), StatusCode::kOk);
  }
  EXPECT_EQ(Model::load(tmp.file("nothing"), LoadOptions{}, &m).code(), StatusCode::kNotFound);
}

// A random BlockRank prompt for a fixture model.
struct Prompt {
  std::vector<int64_t> ids;
  BlockLayout layout;
};

Prompt make_prompt(const std::vector<std::vector<int64_t>>& blocks) {
  Prompt p;
  for (const auto& b : blocks) {
    p.ids.insert(p.ids.end(), b.begin(), b.end());
    p.layout.block_lengths.push_back(static_cast<int64_t>(b.size()));
  }
  return p;
}

std::vector<std::vector<int64_t>> random_blocks(const std::vector<int64_t>& lengths,
                                                int64_t vocab,
                                                uint64_t seed) {
  std::vector<std::vector<int64_t>> out;
  uint64_t x = seed;
  for (int64_t n : lengths) {
    std::vector<int64_t> b;
    for (int64_t i = 0; i < n; ++i) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      b.push_back(static_cast<int64_t>((x >> 33) % static_cast<uint64_t>(vocab)));
    }
    out.push_back(b);
  }
  return out;
}

TEST(BlockRankForwardTest, RaggedEqualsDenseWithExplicitMask) {
  for (const char* name : {"qwen3", "llama"}) {
    std::unique_ptr<Model> m;
    ASSERT_OK(Model::load(fixture(name), LoadOptions{}, &m));
    Prompt p = make_prompt(random_blocks({9, 5, 12, 3, 7, 6}, m->config().vocab_size, 7));
    ForwardRequest req;
    req.logits = req.hidden = req.attention = req.scores = true;
    auto ragged = m->forward(p.ids, &p.layout, req);
    ASSERT_OK(ragged.status());
    auto dense = m->forward_dense(p.ids, p.layout.positions(),
                                  blockrank_visibility(p.layout, at::kCPU), &p.layout, req);
    ASSERT_OK(dense.status());
    EXPECT_TRUE(at::allclose(ragged->logits, dense->logits, 1e-5, 1e-5)) << name;
    for (size_t l = 0; l < ragged->hidden.size(); ++l) {
      EXPECT_TRUE(at::allclose(ragged->hidden[l], dense->hidden[l], 1e-5, 1e-5))
          << name << " hidden " << l;
    }
    for (size_t l = 0; l < ragged->attention.size(); ++l) {
      EXPECT_TRUE(at::allclose(ragged->attention[l], dense->attention[l], 1e-5, 1e-6))
          << name << " attn " << l;
      EXPECT_TRUE(at::allclose(ragged->scores[l], dense->scores[l], 1e-5, 1e-6))
          << name << " scores " << l;
    }
  }
}

TEST(BlockRankForwardTest, ScoresArePermutationInvariant) {
  std::unique_ptr<Model> m;
  ASSERT_OK(Model::load(fixture("mistral"), LoadOptions{}, &m));
  auto blocks = random_blocks({8, 6, 9, 4, 7, 5}, m->config().vocab_size, 3);
  Prompt p = make_prompt(blocks);
  auto base = m->score_documents(p.ids, p.layout, 1, 2);
  ASSERT_OK(base.status());
  // Documents are blocks 1..4; reorder them as 3, 1, 4, 2.
  const std::vector<size_t> order = {3, 1, 4, 2};
  std::vector<std::vector<int64_t>> permuted = {blocks[0]};
  for (size_t d : order) {
    permuted.push_back(blocks[d]);
  }
  permuted.push_back(blocks.back());
  Prompt q = make_prompt(permuted);
  auto moved = m->score_documents(q.ids, q.layout, 1, 2);
  ASSERT_OK(moved.status());
  float sum = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    EXPECT_NEAR((*moved)[i], (*base)[order[i] - 1], 1e-6) << i;
    sum += (*base)[i];
  }
  EXPECT_NEAR(sum, 1.0f, 1e-5);
}

TEST(BlockRankForwardTest, RejectsBadInputs) {
  std::unique_ptr<Model> m;
  ASSERT_OK(Model::load(fixture("qwen2"), LoadOptions{}, &m));
  Prompt p = make_prompt(random_blocks({4, 3, 2}, m->config().vocab_size, 1));
  EXPECT_EQ(m->score_documents(p.ids, p.layout, 5, 2).status().code(),
            StatusCode::kInvalidArgument);
  BlockLayout two;
  two.block_lengths = {5, 4};
  EXPECT_EQ(m->score_documents(p.ids, two, 0, 2).status().code(), StatusCode::kInvalidArgument);
  BlockLayout short_query;
  short_query.block_lengths = {4, 4, 1};
  EXPECT_EQ(m->score_documents(p.ids, short_query, 0, 2).status().code(),
            StatusCode::kInvalidArgument);
  p.ids[0] = 100000;
  EXPECT_EQ(m->score_documents(p.ids, p.layout, 0, 2).status().code(),
            StatusCode::kInvalidArgument);
}

// The query block's split-K piece length follows the prompt (about 16 pieces, multiples of 1,024,
// never below 1,024): the lengths measured best on the H200 for the benchmark's prompts.
TEST(CudaPlanTest, AutoSplitKeysGrowsWithThePrompt) {
  EXPECT_EQ(internal::auto_split_keys(1), 1024);
  EXPECT_EQ(internal::auto_split_keys(2'656), 1024);   // N = 20
  EXPECT_EQ(internal::auto_split_keys(12'896), 1024);  // N = 100
  EXPECT_EQ(internal::auto_split_keys(16'385), 2048);
  EXPECT_EQ(internal::auto_split_keys(25'696), 2048);  // N = 200
  EXPECT_EQ(internal::auto_split_keys(64'096), 4096);  // N = 500
  for (int64_t t = 1; t < 300'000; t += 977) {
    const int64_t s = internal::auto_split_keys(t);
    EXPECT_EQ(s % 1024, 0);
    EXPECT_LE((t + s - 1) / s, 16) << t;
  }
}

// Beside the persistent attention kernel (up to 32,768 tokens) the piece length is the one whose
// streamed CTAs take the fewest rounds x (tiles + 2), 4-16 tiles; the automatic rule (one stream)
// above. Mistral-7B shape (32 / 8 heads, a 32-row query block) on the H200's 132 SMs.
TEST(CudaPlanTest, PiecesBesideThePersistentKernelFillWholeRounds) {
  const auto beside = [](int64_t t, int64_t q = 32, int64_t hq = 32, int64_t hkv = 8) {
    return internal::split_keys_beside_persistent(t, q, hq, hkv, 132);
  };
  // N = 50: 15 pieces x 16 packs = 240 CTAs, one round of 7 tiles (512 keys: 13 x 16 = 208, 8).
  EXPECT_EQ(beside(6'496), 448);
  // N = 100: 16 x 16 = 256 CTAs in one round of 13 tiles, against two rounds of 8 with 512 keys
  // (26 x 16 = 416 CTAs for 264 slots).
  EXPECT_EQ(beside(12'896), 832);
  EXPECT_EQ(beside(25'696), 832);  // N = 200: 31 x 16 = 496 CTAs, two rounds of 13
  EXPECT_EQ(beside(32'769), 0);
  EXPECT_EQ(beside(64'096), 0);  // N = 500
  // A 16-row query block packs 4 heads: half the CTAs, so 256-key pieces still fit one round at
  // N = 20 (42 tiles: 11 pieces x 8 = 88 CTAs).
  EXPECT_EQ(beside(2'640, 16), 256);
  // Shapes without pieces to count fall back to 512.
  EXPECT_EQ(beside(12'896, 0), 512);
  EXPECT_EQ(beside(12'896, 32, 30, 8), 512);
  for (int64_t t = 64; t <= 32'768; t += 641) {
    for (const int64_t q : {1, 16, 32, 33, 64, 200}) {
      if (q > t) {
        continue;
      }
      const int64_t s = beside(t, q);
      EXPECT_EQ(s % 64, 0) << t << " " << q;
      EXPECT_GE(s, 256) << t << " " << q;
      EXPECT_LE(s, 1024) << t << " " << q;
      EXPECT_TRUE(internal::auto_side_stream(s));
    }
  }
}

// The lane order's column map (pure arithmetic, also in the CPU build): per head of 128 a
// permutation swapping bits 1-2 and 3-4 of the column, its own inverse; the pair (2 m, 2 m + 1)
// stays adjacent, and lane t4's words of dt = 4 g .. 4 g + 3 land on 16 consecutive bytes.
TEST(CudaPlanTest, LaneOrderIndexIsAnInvolutionPerHead) {
  const at::Tensor index = internal::lane_order_index(2, at::kCPU);
  ASSERT_EQ(index.numel(), 256);
  const int64_t* p = index.data_ptr<int64_t>();
  for (int64_t j = 0; j < 256; ++j) {
    EXPECT_EQ(p[p[j]], j) << j;
    EXPECT_EQ(p[j] / 128, j / 128) << j;  // stays in its head
    EXPECT_EQ(p[j] % 2, j % 2) << j;
  }
  // Accumulator column 8 dt + 2 t4 + e goes to 32 (dt / 4) + 8 t4 + 2 (dt % 4) + e.
  for (int64_t dt = 0; dt < 16; ++dt) {
    for (int64_t t4 = 0; t4 < 4; ++t4) {
      EXPECT_EQ(p[8 * dt + 2 * t4], 32 * (dt / 4) + 8 * t4 + 2 * (dt % 4));
    }
  }
}

TEST(CudaPlanTest, AutoSideStreamUpToTwoThousandKeyPieces) {
  EXPECT_TRUE(internal::auto_side_stream(internal::auto_split_keys(6'496)));    // N = 50
  EXPECT_TRUE(internal::auto_side_stream(internal::auto_split_keys(12'896)));   // N = 100
  EXPECT_TRUE(internal::auto_side_stream(internal::auto_split_keys(25'696)));   // N = 200
  EXPECT_FALSE(internal::auto_side_stream(internal::auto_split_keys(64'096)));  // N = 500
  EXPECT_TRUE(internal::auto_side_stream(2048));
  EXPECT_FALSE(internal::auto_side_stream(3072));
}

TEST(RankerTest, FacadeScoresAndTruncates) {
  std::unique_ptr<Ranker> r;
  ASSERT_OK(Ranker::open(fixture("qwen3"), RankerOptions{}, &r));
  EXPECT_EQ(r->settings().scoring_layer, 1);  // from the fixture's blockrank.json
  RankerInput in;
  in.block_lengths = {5, 4, 6, 3};
  for (int i = 0; i < 18; ++i) {
    in.input_ids.push_back(i * 7 % 128);
  }
  std::vector<float> scores;
  ASSERT_OK(r->score(in, &scores));
  ASSERT_EQ(scores.size(), 2u);
  EXPECT_NEAR(scores[0] + scores[1], 1.0f, 1e-5);

  RankerInput t;
  t.block_lengths = {20, 3, 40, 2};
  for (int i = 0; i < 65; ++i) {
    t.input_ids.push_back(i);
  }
  ASSERT_OK(truncate_blocks(10, &t));  // H = 16 (10 rounded up to a multiple of 16)
  EXPECT_EQ(t.block_lengths, (std::vector<int32_t>{16, 3, 16, 2}));
  ASSERT_EQ(t.input_ids.size(), 37u);
  EXPECT_EQ(t.input_ids[15], 15);
  EXPECT_EQ(t.input_ids[16], 20);  // first token of the first document
  EXPECT_EQ(t.input_ids[19], 23);  // first token of the second document
  EXPECT_EQ(t.input_ids[35], 63);  // the query block is short enough to stay whole
}

// End to end through the CLI: `blockrank forward` writes what the parity test compares (skipped
// when the binary is not built, e.g. a build without the indexer).
TEST(ForwardCommandTest, WritesEveryTensorTheParityCheckNeeds) {
  // The build tree: BLOCKRANK_BINARY_DIR when CTest sets it, else three levels above this test
  // binary.
  const char* env = std::getenv("BLOCKRANK_BINARY_DIR");
  std::error_code ec;
  const std::string build_dir = env != nullptr ? std::string(env)
                                               : fs::read_symlink("/proc/self/exe", ec)
                                                     .parent_path()
                                                     .parent_path()
                                                     .parent_path()
                                                     .parent_path()
                                                     .string();
  const std::string bin = build_dir + "/plugin/cli/blockrank";
  if (!fs::exists(bin)) {
    GTEST_SKIP() << "blockrank binary not built (" << bin << ")";
  }
  testing::TempDir tmp;
  const std::string out = tmp.file("out.safetensors");
  const std::string cmd = bin + " forward --model " + fixture("qwen2") + " --input " +
                          fixture("qwen2") + "/input_blockrank.json --out " + out + " --threads 1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::shared_ptr<SafetensorsFile> got, want;
  ASSERT_OK(SafetensorsFile::open(out, &got));
  ASSERT_OK(SafetensorsFile::open(fixture("qwen2") + "/expected_blockrank.safetensors", &want));
  ASSERT_EQ(got->entries().size(), want->entries().size());
  for (const auto& [name, entry] : want->entries()) {
    auto g = got->view(name);
    ASSERT_OK(g.status());
    at::Tensor w = *want->view(name);
    EXPECT_EQ(g->sizes(), w.sizes()) << name;
    EXPECT_LE(((*g - w).norm() / w.norm()).item<float>(), 1e-4) << name;
  }
  // A bad input is reported, not crashed on.
  testing::write_text(tmp.file("bad.json"), "{\"input_ids\": [1, 2], \"mode\": \"blockrank\"}");
  const std::string bad = bin + " forward --model " + fixture("qwen2") + " --input " +
                          tmp.file("bad.json") + " --out " + out + " 2>/dev/null";
  EXPECT_NE(std::system(bad.c_str()), 0);
}

}  // namespace
}  // namespace blockrank
