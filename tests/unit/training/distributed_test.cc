// SPDX-License-Identifier: Apache-2.0
// Data-parallel plumbing (issue #11): the launcher environment, the no-op reducer of a single
// process, and a real two-process Gloo group on loopback (the test binary re-runs itself as the
// two ranks).
#include "training/distributed/distributed.h"

#include <unistd.h>

#include <cstdlib>
#include <string>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <sys/wait.h>

namespace blockrank::training {
namespace {

class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) {
      old_ = old;
      had_ = true;
    }
    ::setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (had_) {
      ::setenv(name_, old_.c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

TEST(DistributedTest, ReadsTheLauncherEnvironment) {
  {
    ScopedEnv w("WORLD_SIZE", "4"), r("RANK", "3"), a("MASTER_ADDR", "10.0.0.7"),
        p("MASTER_PORT", "29555");
    auto env = DistributedEnv::from_environment();
    ASSERT_TRUE(env.is_ok()) << env.status().to_string();
    EXPECT_EQ(env->world_size, 4);
    EXPECT_EQ(env->rank, 3);
    EXPECT_EQ(env->local_rank, 3);
    EXPECT_EQ(env->master_addr, "10.0.0.7");
    EXPECT_EQ(env->master_port, 29555);
    EXPECT_FALSE(env->is_primary());
  }
  {
    ScopedEnv w("WORLD_SIZE", "2"), r("RANK", "2");
    auto env = DistributedEnv::from_environment();
    ASSERT_FALSE(env.is_ok());
    EXPECT_NE(env.status().message().find("RANK"), std::string::npos);
  }
  {
    ScopedEnv w("WORLD_SIZE", "two");
    EXPECT_FALSE(DistributedEnv::from_environment().is_ok());
  }
}

TEST(DistributedTest, SingleProcessIsANoOp) {
  std::unique_ptr<Reducer> reducer;
  ASSERT_TRUE(open_reducer(DistributedEnv(), c10::Device(c10::kCPU), 5, &reducer).is_ok());
  EXPECT_STREQ(reducer->backend_name(), "none");
  std::vector<at::Tensor> t{at::full({3}, 2.0)};
  ASSERT_TRUE(reducer->all_reduce_mean(&t).is_ok());
  EXPECT_EQ(t[0][0].item<double>(), 2.0);
}

// The rank side of TwoProcessesAverageGradients; skipped when run directly.
TEST(DistributedTest, RankRole) {
  if (std::getenv("BLOCKRANK_DIST_CHILD") == nullptr) {
    GTEST_SKIP() << "run by TwoProcessesAverageGradients as its two ranks";
  }
  auto env = DistributedEnv::from_environment();
  ASSERT_TRUE(env.is_ok()) << env.status().to_string();
  std::unique_ptr<Reducer> reducer;
  const Status st = open_reducer(*env, c10::Device(c10::kCPU), 60, &reducer);
  if (st.code() == StatusCode::kUnimplemented) {
    std::exit(77);  // no Gloo in this build
  }
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_STREQ(reducer->backend_name(), "gloo");
  const double r = env->rank;
  // Two dtypes, an undefined entry and odd shapes: one packed collective per dtype.
  std::vector<at::Tensor> grads{at::full({2, 3}, r + 1, at::kFloat), at::Tensor(),
                                at::arange(5, at::kDouble) * (r + 1), at::full({1}, 10 * r)};
  ASSERT_TRUE(reducer->all_reduce_mean(&grads).is_ok());
  EXPECT_TRUE(at::allclose(grads[0], at::full({2, 3}, 1.5, at::kFloat)));
  EXPECT_FALSE(grads[1].defined());
  EXPECT_TRUE(at::allclose(grads[2], at::arange(5, at::kDouble) * 1.5));
  EXPECT_TRUE(at::allclose(grads[3], at::full({1}, 5.0)));
  std::vector<at::Tensor> weights{at::full({4}, r + 7)};
  ASSERT_TRUE(reducer->broadcast_from_primary(&weights).is_ok());
  EXPECT_TRUE(at::allclose(weights[0], at::full({4}, 7.0)));
  ASSERT_TRUE(reducer->barrier().is_ok());
}

TEST(DistributedTest, TwoProcessesAverageGradients) {
  const std::string port = std::to_string(20000 + ::getpid() % 20000);
  pid_t pids[2];
  for (int rank = 0; rank < 2; ++rank) {
    pids[rank] = ::fork();
    ASSERT_GE(pids[rank], 0);
    if (pids[rank] == 0) {
      ::setenv("BLOCKRANK_DIST_CHILD", "1", 1);
      ::setenv("RANK", std::to_string(rank).c_str(), 1);
      ::setenv("WORLD_SIZE", "2", 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", port.c_str(), 1);
      ::execl("/proc/self/exe", "distributed_test", "--gtest_filter=DistributedTest.RankRole",
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  int codes[2];
  for (int rank = 0; rank < 2; ++rank) {
    int wstatus = 0;
    ::waitpid(pids[rank], &wstatus, 0);
    codes[rank] = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128;
  }
  if (codes[0] == 77 && codes[1] == 77) {
    GTEST_SKIP() << "this LibTorch build has no Gloo (Debian: apt-get install libgloo-dev)";
  }
  EXPECT_EQ(codes[0], 0);
  EXPECT_EQ(codes[1], 0);
}

}  // namespace
}  // namespace blockrank::training
