// SPDX-License-Identifier: Apache-2.0
#include "progress.h"

#include <unistd.h>

#include <cmath>

namespace blockrank {

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (bytes >= 1000.0 && u < 4) {
    bytes /= 1000.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
  return buf;
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) {
    return "?";
  }
  const long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof(buf), "%ldh%02ldm", s / 3600, (s % 3600) / 60);
  } else if (s >= 60) {
    std::snprintf(buf, sizeof(buf), "%ldm%02lds", s / 60, s % 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%lds", s);
  }
  return buf;
}

ProgressReporter::ProgressReporter(std::string unit, uint64_t total_bytes, FILE* out)
    : unit_(std::move(unit)),
      total_bytes_(total_bytes),
      out_(out),
      tty_(out != nullptr && ::isatty(::fileno(out)) != 0),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

ProgressReporter::~ProgressReporter() {
  if (tty_ && !finished_ && out_ != nullptr) {
    std::fputc('\n', out_);
  }
}

double ProgressReporter::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void ProgressReporter::update(uint64_t count, uint64_t bytes_done) {
  if (out_ == nullptr) {
    return;
  }
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_draw_).count();
  if (since < (tty_ ? 0.1 : static_cast<double>(plain_interval_s))) {
    return;
  }
  last_draw_ = now;
  draw(count, bytes_done, /*final=*/false);
}

void ProgressReporter::finish(uint64_t count, uint64_t bytes_done) {
  if (out_ == nullptr || finished_) {
    return;
  }
  draw(count, bytes_done, /*final=*/true);
  finished_ = true;
}

void ProgressReporter::draw(uint64_t count, uint64_t bytes_done, bool final) {
  const double t = std::max(elapsed_seconds(), 1e-9);
  const double rate = static_cast<double>(count) / t;
  const double mbps = static_cast<double>(bytes_done) / t / 1e6;
  double frac = -1;
  if (total_bytes_ > 0) {
    frac = std::min(1.0, static_cast<double>(bytes_done) / static_cast<double>(total_bytes_));
  }
  const double eta = (frac > 0 && !final) ? t * (1.0 - frac) / frac : 0.0;
  if (tty_) {
    std::string bar;
    if (frac >= 0) {
      const int width = 28;
      const int filled = static_cast<int>(frac * width + 0.5);
      bar = "[" + std::string(static_cast<size_t>(filled), '#') +
            std::string(static_cast<size_t>(width - filled), '.') + "] ";
      char pct[16];
      std::snprintf(pct, sizeof(pct), "%3.0f%% ", frac * 100.0);
      bar += pct;
    }
    std::fprintf(out_, "\r%s%llu %s  %.0f %s/s  %.1f MB/s  %s %s\x1b[K", bar.c_str(),
                 static_cast<unsigned long long>(count), unit_.c_str(), rate, unit_.c_str(), mbps,
                 final ? "in" : "ETA", format_duration(final ? t : eta).c_str());
    if (final) {
      std::fputc('\n', out_);
    }
  } else {
    std::fprintf(out_, "progress: %llu %s, %.0f %s/s, %.1f MB/s, %s elapsed%s%s\n",
                 static_cast<unsigned long long>(count), unit_.c_str(), rate, unit_.c_str(), mbps,
                 format_duration(t).c_str(), (frac >= 0 && !final) ? ", ETA " : "",
                 (frac >= 0 && !final) ? format_duration(eta).c_str() : "");
  }
  std::fflush(out_);
}

}  // namespace blockrank
