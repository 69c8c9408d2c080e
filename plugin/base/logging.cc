// SPDX-License-Identifier: Apache-2.0
#include "logging.h"

#include <cstdarg>
#include <cstdio>
#include <mutex>

namespace blockrank {

namespace {
std::string vformat(const char* fmt, va_list args) {
  va_list copy;
  va_copy(copy, args);
  const int n = std::vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  if (n <= 0) {
    return std::string();
  }
  std::string out(static_cast<size_t>(n), '\0');
  std::vsnprintf(out.data(), out.size() + 1, fmt, args);
  return out;
}

const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "?";
}
}  // namespace

std::string string_printf(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  std::string out = vformat(fmt, args);
  va_end(args);
  return out;
}

void Logger::logf(LogLevel level, const char* fmt, ...) const {
  if (!enabled(level)) {
    return;
  }
  va_list args;
  va_start(args, fmt);
  std::string msg = vformat(fmt, args);
  va_end(args);
  sink_(level, msg);
}

std::shared_ptr<Logger> Logger::null_logger() {
  static const std::shared_ptr<Logger> logger = std::make_shared<Logger>();
  return logger;
}

std::shared_ptr<Logger> Logger::stderr_logger(LogLevel min_level) {
  auto mutex = std::make_shared<std::mutex>();
  return std::make_shared<Logger>(min_level, [mutex](LogLevel level, const std::string& msg) {
    std::lock_guard<std::mutex> lock(*mutex);
    if (level == LogLevel::kInfo) {
      std::fprintf(stderr, "blockrank: %s\n", msg.c_str());
    } else {
      std::fprintf(stderr, "blockrank: %s: %s\n", level_name(level), msg.c_str());
    }
  });
}

}  // namespace blockrank
