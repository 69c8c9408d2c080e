// SPDX-License-Identifier: Apache-2.0
// A small Prometheus registry: labelled counters, gauges and fixed-bucket histograms rendered in
// the text exposition format (version 0.0.4).
//
// Thread-safety: every method may be called concurrently.
#ifndef BLOCKRANK_HTTP_METRICS_H_
#define BLOCKRANK_HTTP_METRICS_H_

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace blockrank {

class Metrics {
 public:
  /// Adds `value` to counter `name{labels}`; labels are pre-rendered, e.g. `route="/v1/search"`.
  void inc(const std::string& name, const std::string& labels = "", double value = 1);
  /// Records an observation in histogram `name{labels}` with the given bucket bounds.
  void observe(const std::string& name,
               const std::string& labels,
               double value,
               const std::vector<double>& buckets);
  /// Registers a gauge read at render time.
  void gauge(const std::string& name, const std::string& help, std::function<double()> read);
  /// Registers a source of extra exposition text appended at render time (families whose values
  /// live elsewhere, e.g. the reranker's KV-cache counters).
  void collector(std::function<std::string()> render);
  /// Sets help text for a metric family.
  void describe(const std::string& name, const std::string& type, const std::string& help);
  /// The whole registry in Prometheus text format.
  std::string render() const;
  /// Current value of a counter (0 if absent), for tests.
  double counter(const std::string& name, const std::string& labels = "") const;

 private:
  struct Histogram {
    std::vector<double> bounds;
    std::vector<uint64_t> counts;  // cumulative at render time
    double sum = 0;
    uint64_t count = 0;
  };
  mutable std::mutex mu_;
  std::map<std::string, std::pair<std::string, std::string>> families_;  // name -> (type, help)
  std::map<std::string, std::map<std::string, double>> counters_;
  std::map<std::string, std::map<std::string, Histogram>> histograms_;
  std::map<std::string, std::pair<std::string, std::function<double()>>> gauges_;
  std::vector<std::function<std::string()>> collectors_;
};

/// Latency buckets in seconds: 1 ms … 60 s.
const std::vector<double>& latency_buckets();
/// Small count buckets (batch sizes): 1 … 64.
const std::vector<double>& count_buckets();

}  // namespace blockrank

#endif  // BLOCKRANK_HTTP_METRICS_H_
