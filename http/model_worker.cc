// SPDX-License-Identifier: Apache-2.0
#include "http/model_worker.h"

#include <algorithm>
#include <string>
#include <utility>

namespace blockrank {

ModelWorker::ModelWorker(RerankBackend* backend,
                         size_t capacity,
                         size_t max_batch,
                         Metrics* metrics)
    : ModelWorker(std::vector<RerankBackend*>{backend}, capacity, max_batch, metrics) {}

ModelWorker::ModelWorker(std::vector<RerankBackend*> replicas,
                         size_t capacity,
                         size_t max_batch,
                         Metrics* metrics)
    : replicas_(std::move(replicas)),
      capacity_(capacity),
      max_batch_(std::max<size_t>(1, max_batch)),
      metrics_(metrics) {
  threads_.reserve(replicas_.size());
  for (size_t i = 0; i < replicas_.size(); ++i) {
    threads_.emplace_back([this, i]() { run(i); });
  }
}

ModelWorker::~ModelWorker() {
  stop();
}

Status ModelWorker::submit(RerankRequest request, Clock::time_point deadline, Done done) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      return Status::unavailable("the server is shutting down");
    }
    if (queue_.size() >= capacity_) {
      return Status::unavailable("the rerank queue is full (" + std::to_string(capacity_) +
                                 " waiting); retry shortly");
    }
    queue_.push_back(Task{std::move(request), deadline, Clock::now(), std::move(done)});
  }
  cv_.notify_one();
  return Status::ok();
}

size_t ModelWorker::depth() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size();
}

void ModelWorker::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) {
    if (t.joinable()) {
      t.join();
    }
  }
}

void ModelWorker::run(size_t replica) {
  RerankBackend* backend = replicas_[replica];
  const std::string replica_label = "replica=\"" + std::to_string(replica) + "\"";
  while (true) {
    std::vector<Task> batch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&]() { return stopping_ || !queue_.empty(); });
      if (queue_.empty() && stopping_) {
        return;
      }
      while (!queue_.empty() && batch.size() < max_batch_) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    const auto now = Clock::now();
    std::vector<Task> live;
    for (Task& t : batch) {
      if (metrics_ != nullptr) {
        metrics_->observe("blockrank_rerank_queue_wait_seconds", "",
                          std::chrono::duration<double>(now - t.enqueued).count(),
                          latency_buckets());
      }
      if (now > t.deadline) {
        t.done(Status::deadline_exceeded("the request waited past its deadline in the queue"),
               RerankResult());
      } else {
        live.push_back(std::move(t));
      }
    }
    if (live.empty()) {
      continue;
    }
    std::vector<RerankRequest> requests;
    requests.reserve(live.size());
    for (Task& t : live) {
      requests.push_back(std::move(t.request));
    }
    if (metrics_ != nullptr) {
      metrics_->observe("blockrank_rerank_batch_size", "", static_cast<double>(requests.size()),
                        count_buckets());
      metrics_->inc("blockrank_rerank_batches_total", replica_label);
    }
    std::vector<RerankResult> results;
    Status st;
    try {
      st = backend->rerank(requests, &results);
    } catch (const std::exception& e) {
      st = Status::internal(std::string("reranker failed: ") + e.what());
    }
    if (st.is_ok() && results.size() != live.size()) {
      st = Status::internal("reranker returned the wrong number of results");
    }
    for (size_t i = 0; i < live.size(); ++i) {
      live[i].done(st, st.is_ok() ? std::move(results[i]) : RerankResult());
    }
  }
}

}  // namespace blockrank
