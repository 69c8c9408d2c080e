// SPDX-License-Identifier: Apache-2.0
// The single model-owning worker: HTTP handlers enqueue rerank work into a bounded queue and get a
// callback; one thread takes up to `max_batch` waiting requests at a time and hands them to the
// RerankBackend together. A full queue is refused at once (kUnavailable → 503 + Retry-After) rather
// than letting latency grow without bound; work whose deadline passed while queued is answered
// kDeadlineExceeded without running the model.
//
// Thread-safety: submit() from any thread; callbacks run on the worker thread.
#ifndef BLOCKRANK_HTTP_MODEL_WORKER_H_
#define BLOCKRANK_HTTP_MODEL_WORKER_H_

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "http/metrics.h"
#include "plugin/base/rerank_backend.h"

namespace blockrank {

class ModelWorker {
 public:
  using Clock = std::chrono::steady_clock;
  using Done = std::function<void(const Status&, RerankResult&&)>;

  ModelWorker(RerankBackend* backend, size_t capacity, size_t max_batch, Metrics* metrics);
  ~ModelWorker();
  ModelWorker(const ModelWorker&) = delete;
  ModelWorker& operator=(const ModelWorker&) = delete;

  /// Queues `request`; `done` is called exactly once (also when the worker stops). Returns
  /// kUnavailable without queuing when the queue is full or the worker is stopping.
  Status submit(RerankRequest request, Clock::time_point deadline, Done done);
  size_t depth() const;
  /// Stops taking work, finishes what is queued, joins the thread.
  void stop();

 private:
  struct Task {
    RerankRequest request;
    Clock::time_point deadline;
    Clock::time_point enqueued;
    Done done;
  };
  void run();

  RerankBackend* backend_;
  size_t capacity_;
  size_t max_batch_;
  Metrics* metrics_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace blockrank

#endif  // BLOCKRANK_HTTP_MODEL_WORKER_H_
