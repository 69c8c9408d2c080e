// SPDX-License-Identifier: Apache-2.0
// The model-owning workers: HTTP handlers enqueue rerank work into one bounded queue and get a
// callback; each replica (one RerankBackend, e.g. one per GPU) has its own thread, which takes up
// to `max_batch` waiting requests at a time and hands them to its backend together, so batches
// spread over the replicas as they come free. A full queue is refused at once (kUnavailable → 503 +
// Retry-After) rather than letting latency grow without bound; work whose deadline passed while
// queued is answered kDeadlineExceeded without running the model.
//
// Thread-safety: submit() from any thread; callbacks run on the replica threads. Each backend is
// called from its own thread only.
#ifndef BLOCKRANK_HTTP_MODEL_WORKER_H_
#define BLOCKRANK_HTTP_MODEL_WORKER_H_

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "http/metrics.h"
#include "plugin/base/rerank_backend.h"

namespace blockrank {

class ModelWorker {
 public:
  using Clock = std::chrono::steady_clock;
  using Done = std::function<void(const Status&, RerankResult&&)>;

  /// One replica.
  ModelWorker(RerankBackend* backend, size_t capacity, size_t max_batch, Metrics* metrics);
  /// One thread per backend in `replicas` (at least one, none null), all serving the same queue.
  /// Batches handled per replica are counted in blockrank_rerank_batches_total{replica="i"}.
  ModelWorker(std::vector<RerankBackend*> replicas,
              size_t capacity,
              size_t max_batch,
              Metrics* metrics);
  ~ModelWorker();
  ModelWorker(const ModelWorker&) = delete;
  ModelWorker& operator=(const ModelWorker&) = delete;

  /// Queues `request`; `done` is called exactly once (also when the worker stops). Returns
  /// kUnavailable without queuing when the queue is full or the worker is stopping.
  Status submit(RerankRequest request, Clock::time_point deadline, Done done);
  size_t depth() const;
  size_t num_replicas() const { return replicas_.size(); }
  /// Stops taking work, finishes what is queued, joins the threads.
  void stop();

 private:
  struct Task {
    RerankRequest request;
    Clock::time_point deadline;
    Clock::time_point enqueued;
    Done done;
  };
  void run(size_t replica);

  std::vector<RerankBackend*> replicas_;
  size_t capacity_;
  size_t max_batch_;
  Metrics* metrics_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace blockrank

#endif  // BLOCKRANK_HTTP_MODEL_WORKER_H_
