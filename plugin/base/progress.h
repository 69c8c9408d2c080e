// SPDX-License-Identifier: Apache-2.0
// Progress reporting for long jobs: an in-place bar with rate and ETA on a terminal, and a plain
// line every few seconds when the output is a file or a pipe (CI logs stay readable).
//
// Thread-safety: one reporter per job; update() from one thread.
#ifndef BLOCKRANK_BASE_PROGRESS_H_
#define BLOCKRANK_BASE_PROGRESS_H_

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace blockrank {

class ProgressReporter {
 public:
  /// `unit` names what is counted ("docs"); `total_bytes` (0 if unknown) drives the ETA.
  /// `out` is the stream to draw on (stderr in the binaries; nullptr disables output).
  ProgressReporter(std::string unit, uint64_t total_bytes, FILE* out);
  ~ProgressReporter();
  ProgressReporter(const ProgressReporter&) = delete;
  ProgressReporter& operator=(const ProgressReporter&) = delete;

  /// Reports `count` items done and `bytes_done` input bytes consumed; draws at most ~10×/s on a
  /// terminal and every `plain_interval_s` seconds otherwise.
  void update(uint64_t count, uint64_t bytes_done);
  /// Draws the final state and ends the line.
  void finish(uint64_t count, uint64_t bytes_done);
  double elapsed_seconds() const;

  int plain_interval_s = 5;

 private:
  void draw(uint64_t count, uint64_t bytes_done, bool final);

  std::string unit_;
  uint64_t total_bytes_;
  FILE* out_;
  bool tty_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

/// "1.2 MB", "34 KB": human-readable byte counts.
std::string format_bytes(double bytes);
/// "1h02m", "3m05s", "12s".
std::string format_duration(double seconds);

}  // namespace blockrank

#endif  // BLOCKRANK_BASE_PROGRESS_H_
