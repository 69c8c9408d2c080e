// SPDX-License-Identifier: Apache-2.0
// Data parallelism is the same computation as one big batch (issue #11): two processes on CPU,
// joined by Gloo through the launcher environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT),
// each with batch_size B, end with the same weights as one process with batch_size 2B (same seed,
// synthetic task, gradient accumulation on). Rank r takes examples r, r+W, ... of each global
// batch, the mean all-reduce joins the gradients, and the loss is normalised over the whole step,
// so the only difference left is the order of the fp32 sums. The test binary re-runs itself as the
// two ranks, as distributed_test does.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include "test_util.h"
#include "training/distributed/distributed.h"
#include "training/trainer.h"

#include <sys/wait.h>

namespace blockrank::training {
namespace {

const char* kTinyConfig = R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
  "vocab_size": 64, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
  "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
  "tie_word_embeddings": false})";

constexpr int64_t kBatchPerRank = 4;

// The run every process makes; only batch_size and output_dir differ between DP and the baseline.
TrainConfig dp_config(const std::string& dir, int64_t batch_size, const std::string& out) {
  TrainConfig c;
  c.model_config = dir + "/config.json";
  c.output_dir = dir + "/" + out;
  c.synthetic_train_examples = 256;
  c.num_documents = 4;
  c.max_block_length = 16;
  c.aux_layer = 1;
  c.batch_size = batch_size;
  c.grad_accum = 2;
  c.max_steps = 6;
  c.lr = 3e-3;
  c.warmup_steps = 2;
  c.aux_weight = 1.0;
  c.temperature = 0.05;
  c.log_interval = 1;
  c.eval_interval = 0;
  c.save_interval = 0;
  c.save_final = false;
  c.seed = 11;
  return c;
}

// The synthetic task with a varying number of LM labels per example (every third example does not
// train its final EOS), so the ranks of a global batch hold different label counts: the LM term
// must then be normalised by the global count for W x B to equal one W*B batch.
class VaryingLabels : public ExampleSource {
 public:
  explicit VaryingLabels(std::unique_ptr<ExampleSource> inner) : inner_(std::move(inner)) {}
  int64_t size() const override { return inner_->size(); }
  Status get(int64_t index, TrainingExample* out) const override {
    BLOCKRANK_RETURN_IF_ERROR(inner_->get(index, out));
    if (index % 3 == 1) {
      out->labels.back() = kIgnoreLabel;
    }
    return Status::ok();
  }

 private:
  std::unique_ptr<ExampleSource> inner_;
};

// Trains with `reducer` (nullptr: one process) and returns the weights, flattened in fp32.
Status train_and_flatten(const TrainConfig& c, Reducer* reducer, std::vector<float>* weights) {
  std::unique_ptr<TrainableModel> model;
  BLOCKRANK_RETURN_IF_ERROR(create_model(c, &model));
  VaryingLabels data(synthetic_source(c, static_cast<int32_t>(model->config().vocab_size),
                                      c.synthetic_train_examples, c.seed));
  TrainHooks hooks;
  hooks.reducer = reducer;
  TrainResult result;
  BLOCKRANK_RETURN_IF_ERROR(train(c, *model, data, nullptr, "", hooks, &result));
  weights->clear();
  for (const NamedParameter& p : model->parameters()) {
    const at::Tensor t = p.tensor.detach().to(at::kFloat).contiguous().reshape({-1});
    weights->insert(weights->end(), t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
  }
  return Status::ok();
}

// The rank side of TwoRanksEqualOneDoubledBatch; skipped when run directly. Writes its final
// weights to $BLOCKRANK_DP_DIR/rank<r>.f32.
TEST(DataParallelTest, RankRole) {
  const char* dir = std::getenv("BLOCKRANK_DP_DIR");
  if (dir == nullptr) {
    GTEST_SKIP() << "run by TwoRanksEqualOneDoubledBatch as its two ranks";
  }
  at::set_num_threads(1);
  auto env = DistributedEnv::from_environment();
  ASSERT_TRUE(env.is_ok()) << env.status().to_string();
  std::unique_ptr<Reducer> reducer;
  const Status st = open_reducer(*env, c10::Device(c10::kCPU), 60, &reducer);
  if (st.code() == StatusCode::kUnimplemented) {
    std::exit(77);  // no Gloo in this build
  }
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  std::vector<float> weights;
  ASSERT_OK(train_and_flatten(dp_config(dir, kBatchPerRank, "dp"), reducer.get(), &weights));
  std::ofstream f(std::string(dir) + "/rank" + std::to_string(env->rank) + ".f32",
                  std::ios::binary);
  f.write(reinterpret_cast<const char*>(weights.data()),
          static_cast<std::streamsize>(weights.size() * sizeof(float)));
  ASSERT_TRUE(f.good());
}

std::vector<float> read_floats(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  std::vector<float> out(static_cast<size_t>(f.tellg()) / sizeof(float));
  f.seekg(0);
  f.read(reinterpret_cast<char*>(out.data()),
         static_cast<std::streamsize>(out.size() * sizeof(float)));
  return out;
}

TEST(DataParallelTest, TwoRanksEqualOneDoubledBatch) {
  blockrank::testing::TempDir tmp;
  blockrank::testing::write_text(tmp.file("config.json"), kTinyConfig);
  const std::string port = std::to_string(20000 + (::getpid() * 7 + 3) % 20000);
  pid_t pids[2];
  for (int rank = 0; rank < 2; ++rank) {
    pids[rank] = ::fork();
    ASSERT_GE(pids[rank], 0);
    if (pids[rank] == 0) {
      ::setenv("BLOCKRANK_DP_DIR", tmp.path().c_str(), 1);
      ::setenv("RANK", std::to_string(rank).c_str(), 1);
      ::setenv("WORLD_SIZE", "2", 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", port.c_str(), 1);
      ::execl("/proc/self/exe", "data_parallel_test", "--gtest_filter=DataParallelTest.RankRole",
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  // The baseline meanwhile: one process, the doubled batch.
  at::set_num_threads(1);
  std::vector<float> single;
  const Status baseline =
      train_and_flatten(dp_config(tmp.path(), 2 * kBatchPerRank, "single"), nullptr, &single);
  int codes[2];
  for (int rank = 0; rank < 2; ++rank) {
    int wstatus = 0;
    ::waitpid(pids[rank], &wstatus, 0);
    codes[rank] = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128;
  }
  ASSERT_OK(baseline);
  if (codes[0] == 77 && codes[1] == 77) {
    GTEST_SKIP() << "this LibTorch build has no Gloo (Debian: apt-get install libgloo-dev)";
  }
  ASSERT_EQ(codes[0], 0);
  ASSERT_EQ(codes[1], 0);
  const std::vector<float> rank0 = read_floats(tmp.file("rank0.f32"));
  const std::vector<float> rank1 = read_floats(tmp.file("rank1.f32"));
  ASSERT_EQ(rank0.size(), single.size());
  ASSERT_EQ(rank1.size(), single.size());
  // The ranks apply the same all-reduced update to the same broadcast weights: equal bit for bit.
  EXPECT_TRUE(std::equal(rank0.begin(), rank0.end(), rank1.begin()));
  double max_abs = 0;
  double max_weight = 0;
  double moved = 0;  // how far training moved the weights, for scale
  for (size_t i = 0; i < single.size(); ++i) {
    max_abs = std::max(max_abs, static_cast<double>(std::abs(rank0[i] - single[i])));
    max_weight = std::max(max_weight, static_cast<double>(std::abs(single[i])));
  }
  std::vector<float> initial;
  {
    TrainConfig c = dp_config(tmp.path(), 2 * kBatchPerRank, "untrained");
    std::unique_ptr<TrainableModel> model;
    ASSERT_OK(create_model(c, &model));
    for (const NamedParameter& p : model->parameters()) {
      const at::Tensor t = p.tensor.detach().to(at::kFloat).contiguous().reshape({-1});
      initial.insert(initial.end(), t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
    }
  }
  ASSERT_EQ(initial.size(), single.size());
  for (size_t i = 0; i < single.size(); ++i) {
    moved = std::max(moved, static_cast<double>(std::abs(single[i] - initial[i])));
  }
  std::printf(
      "DP 2 ranks x batch %lld vs 1 process x batch %lld, 6 steps, grad_accum 2: max |dw| %.3g, "
      "max |w| %.3g, relative %.3g; training moved the weights by up to %.3g\n",
      static_cast<long long>(kBatchPerRank), static_cast<long long>(2 * kBatchPerRank), max_abs,
      max_weight, max_abs / max_weight, moved);
  // fp32 sums in another order (the gradients of 4-example micro-batches added by the all-reduce
  // instead of inside one 8-example batch), carried through a few AdamW steps.
  EXPECT_LE(max_abs, 1e-6 * std::max(1.0, max_weight));
  EXPECT_GT(moved, 1e3 * max_abs) << "training must move the weights far beyond the difference";
  // Rank 0 logs the global step's loss: the same curve as the one process with the doubled batch.
  const auto losses = [](const std::string& log) {
    std::vector<double> out;
    std::ifstream f(log);
    for (std::string line; std::getline(f, line);) {
      const size_t at = line.find("\"loss\":");  // "lm_loss" and "aux_loss" do not match
      if (at != std::string::npos) {
        out.push_back(std::stod(line.substr(at + 7)));
      }
    }
    return out;
  };
  const std::vector<double> dp_loss = losses(tmp.file("dp/log.jsonl"));
  const std::vector<double> single_loss = losses(tmp.file("single/log.jsonl"));
  ASSERT_EQ(dp_loss.size(), 6u);
  ASSERT_EQ(single_loss.size(), dp_loss.size());
  for (size_t i = 0; i < dp_loss.size(); ++i) {
    EXPECT_NEAR(dp_loss[i], single_loss[i], 1e-5 * std::abs(single_loss[i])) << "step " << i + 1;
  }
  EXPECT_NE(dp_loss.front(), dp_loss.back()) << "the loss must move over the steps";
}

}  // namespace
}  // namespace blockrank::training
