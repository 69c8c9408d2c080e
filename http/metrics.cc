// SPDX-License-Identifier: Apache-2.0
#include "http/metrics.h"

#include <cstdio>

namespace blockrank {

namespace {
std::string fmt(double v, int digits = 17) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*g", digits, v);
  return buf;
}
std::string series(const std::string& name, const std::string& labels) {
  return labels.empty() ? name : name + "{" + labels + "}";
}
}  // namespace

const std::vector<double>& latency_buckets() {
  static const std::vector<double> b = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                        0.5,   1,      2.5,   5,    10,    30,   60};
  return b;
}

const std::vector<double>& count_buckets() {
  static const std::vector<double> b = {1, 2, 4, 8, 16, 32, 64};
  return b;
}

void Metrics::inc(const std::string& name, const std::string& labels, double value) {
  std::lock_guard<std::mutex> lock(mu_);
  counters_[name][labels] += value;
}

void Metrics::observe(const std::string& name,
                      const std::string& labels,
                      double value,
                      const std::vector<double>& buckets) {
  std::lock_guard<std::mutex> lock(mu_);
  Histogram& h = histograms_[name][labels];
  if (h.bounds.empty()) {
    h.bounds = buckets;
    h.counts.assign(buckets.size(), 0);
  }
  for (size_t i = 0; i < h.bounds.size(); ++i) {
    if (value <= h.bounds[i]) {
      ++h.counts[i];
      break;
    }
  }
  h.sum += value;
  ++h.count;
}

void Metrics::gauge(const std::string& name,
                    const std::string& help,
                    std::function<double()> read) {
  std::lock_guard<std::mutex> lock(mu_);
  gauges_[name] = {help, std::move(read)};
}

void Metrics::collector(std::function<std::string()> render) {
  std::lock_guard<std::mutex> lock(mu_);
  collectors_.push_back(std::move(render));
}

void Metrics::describe(const std::string& name, const std::string& type, const std::string& help) {
  std::lock_guard<std::mutex> lock(mu_);
  families_[name] = {type, help};
}

double Metrics::counter(const std::string& name, const std::string& labels) const {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = counters_.find(name);
  if (it == counters_.end()) {
    return 0;
  }
  const auto jt = it->second.find(labels);
  return jt == it->second.end() ? 0 : jt->second;
}

std::string Metrics::render() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  auto header = [&](const std::string& name, const std::string& type) {
    const auto it = families_.find(name);
    out += "# HELP " + name + " " + (it != families_.end() ? it->second.second : name) + "\n";
    out += "# TYPE " + name + " " + type + "\n";
  };
  for (const auto& [name, by_label] : counters_) {
    header(name, "counter");
    for (const auto& [labels, v] : by_label) {
      out += series(name, labels) + " " + fmt(v) + "\n";
    }
  }
  for (const auto& [name, by_label] : histograms_) {
    header(name, "histogram");
    for (const auto& [labels, h] : by_label) {
      uint64_t cum = 0;
      const std::string sep = labels.empty() ? "" : labels + ",";
      for (size_t i = 0; i < h.bounds.size(); ++i) {
        cum += h.counts[i];
        out += name + "_bucket{" + sep + "le=\"" + fmt(h.bounds[i], 10) + "\"} " +
               std::to_string(cum) + "\n";
      }
      out += name + "_bucket{" + sep + "le=\"+Inf\"} " + std::to_string(h.count) + "\n";
      out += series(name + "_sum", labels) + " " + fmt(h.sum) + "\n";
      out += series(name + "_count", labels) + " " + std::to_string(h.count) + "\n";
    }
  }
  for (const auto& [name, g] : gauges_) {
    out += "# HELP " + name + " " + g.first + "\n# TYPE " + name + " gauge\n";
    out += name + " " + fmt(g.second()) + "\n";
  }
  for (const auto& render : collectors_) {
    out += render();
  }
  return out;
}

}  // namespace blockrank
