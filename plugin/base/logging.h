// SPDX-License-Identifier: Apache-2.0
// Level-filtered logging routed to a sink the caller injects. Library code never writes to
// stdout/stderr itself: it logs through the Logger in its Options; binaries install a stderr sink.
//
// Thread-safety: log() may be called from any thread; the sink must be thread-safe (the stderr sink
// is).
#ifndef BLOCKRANK_BASE_LOGGING_H_
#define BLOCKRANK_BASE_LOGGING_H_

#include <functional>
#include <memory>
#include <string>

namespace blockrank {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

class Logger {
 public:
  using Sink = std::function<void(LogLevel, const std::string&)>;

  Logger() = default;
  Logger(LogLevel min_level, Sink sink) : min_level_(min_level), sink_(std::move(sink)) {}

  /// A logger that drops everything (the default in Options).
  static std::shared_ptr<Logger> null_logger();
  /// A logger that writes "blockrank: warning: ..." lines to stderr, serialised by a mutex.
  static std::shared_ptr<Logger> stderr_logger(LogLevel min_level = LogLevel::kInfo);

  bool enabled(LogLevel level) const { return sink_ && level >= min_level_; }
  void log(LogLevel level, const std::string& message) const {
    if (enabled(level)) {
      sink_(level, message);
    }
  }
  /// printf-style formatting, checked by the compiler.
  void logf(LogLevel level, const char* fmt, ...) const __attribute__((format(printf, 3, 4)));

 private:
  LogLevel min_level_ = LogLevel::kInfo;
  Sink sink_;
};

/// printf-style formatting into a std::string.
std::string string_printf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace blockrank

#define BLOCKRANK_LOG_DEBUG(logger, ...) (logger)->logf(::blockrank::LogLevel::kDebug, __VA_ARGS__)
#define BLOCKRANK_LOG_INFO(logger, ...) (logger)->logf(::blockrank::LogLevel::kInfo, __VA_ARGS__)
#define BLOCKRANK_LOG_WARNING(logger, ...) \
  (logger)->logf(::blockrank::LogLevel::kWarning, __VA_ARGS__)
#define BLOCKRANK_LOG_ERROR(logger, ...) (logger)->logf(::blockrank::LogLevel::kError, __VA_ARGS__)

#endif  // BLOCKRANK_BASE_LOGGING_H_
