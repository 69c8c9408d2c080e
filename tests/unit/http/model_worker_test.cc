// SPDX-License-Identifier: Apache-2.0
// ModelWorker with several replicas (one per GPU in `serve --gpus`): every replica takes batches
// from the shared queue concurrently, each backend only from its own thread, and every request is
// answered exactly once.
#include "http/model_worker.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

namespace blockrank {
namespace {

// Holds every call until released; records how many calls are inside rerank() at once.
class GateBackend : public RerankBackend {
 public:
  GateBackend(std::mutex* mu, std::condition_variable* cv, bool* open, std::atomic<int>* inside)
      : mu_(mu), cv_(cv), open_(open), inside_(inside) {}
  Status rerank(const std::vector<RerankRequest>& requests,
                std::vector<RerankResult>* results) override {
    const std::thread::id me = std::this_thread::get_id();
    if (thread_ == std::thread::id()) {
      thread_ = me;
    }
    if (thread_ != me) {
      wrong_thread = true;
    }
    inside_->fetch_add(1);
    {
      std::unique_lock<std::mutex> lock(*mu_);
      cv_->wait(lock, [&]() { return *open_; });
    }
    inside_->fetch_sub(1);
    calls.fetch_add(1);
    results->assign(requests.size(), RerankResult{{1.0f}, 1});
    return Status::ok();
  }
  std::string model_name() const override { return "gate"; }
  std::atomic<int> calls{0};
  bool wrong_thread = false;

 private:
  std::mutex* mu_;
  std::condition_variable* cv_;
  bool* open_;
  std::atomic<int>* inside_;
  std::thread::id thread_;
};

TEST(ModelWorkerTest, ReplicasServeTheQueueConcurrently) {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  std::atomic<int> inside{0};
  GateBackend a(&mu, &cv, &open, &inside), b(&mu, &cv, &open, &inside);
  Metrics metrics;
  std::atomic<int> answered{0};
  {
    ModelWorker worker({&a, &b}, /*capacity=*/16, /*max_batch=*/1, &metrics);
    EXPECT_EQ(worker.num_replicas(), 2u);
    const auto deadline = ModelWorker::Clock::now() + std::chrono::seconds(30);
    for (int i = 0; i < 6; ++i) {
      RerankRequest r;
      r.query = "q";
      r.documents.push_back({"d", "", "text"});
      ASSERT_TRUE(worker
                      .submit(std::move(r), deadline,
                              [&](const Status& st, RerankResult&& res) {
                                EXPECT_TRUE(st.is_ok()) << st.to_string();
                                EXPECT_EQ(res.scores.size(), 1u);
                                answered.fetch_add(1);
                              })
                      .is_ok());
    }
    // Both replicas must be inside rerank() at the same time while the gate is closed.
    for (int i = 0; i < 500 && inside.load() < 2; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(inside.load(), 2);
    {
      std::lock_guard<std::mutex> lock(mu);
      open = true;
    }
    cv.notify_all();
    worker.stop();
  }
  EXPECT_EQ(answered.load(), 6);
  EXPECT_EQ(a.calls.load() + b.calls.load(), 6);
  EXPECT_GE(a.calls.load(), 1);
  EXPECT_GE(b.calls.load(), 1);
  EXPECT_FALSE(a.wrong_thread);
  EXPECT_FALSE(b.wrong_thread);
  EXPECT_EQ(metrics.counter("blockrank_rerank_batches_total", "replica=\"0\"") +
                metrics.counter("blockrank_rerank_batches_total", "replica=\"1\""),
            6);
}

}  // namespace
}  // namespace blockrank
