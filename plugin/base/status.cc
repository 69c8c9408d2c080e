// SPDX-License-Identifier: Apache-2.0
// Status formatting and the assertion handler.
#include "blockrank/status.h"

#include <cstdio>

namespace blockrank {

const char* status_code_name(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "ok";
    case StatusCode::kInvalidArgument:
      return "invalid_argument";
    case StatusCode::kNotFound:
      return "not_found";
    case StatusCode::kIOError:
      return "io_error";
    case StatusCode::kCorruption:
      return "corruption";
    case StatusCode::kUnavailable:
      return "unavailable";
    case StatusCode::kResourceExhausted:
      return "resource_exhausted";
    case StatusCode::kDeadlineExceeded:
      return "deadline_exceeded";
    case StatusCode::kUnimplemented:
      return "unimplemented";
    case StatusCode::kCancelled:
      return "cancelled";
    case StatusCode::kInternal:
      return "internal";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (is_ok()) {
    return "ok";
  }
  return std::string(status_code_name(code_)) + ": " + message_;
}

Status Status::with_context(const std::string& context) const {
  if (is_ok()) {
    return *this;
  }
  return Status(code_, context + ": " + message_);
}

namespace internal {
void assert_fail(const char* cond, const char* msg, const char* file, int line) {
  std::fprintf(stderr, "blockrank: internal assertion failed at %s:%d: %s (%s)\n", file, line, msg,
               cond);
  std::abort();
}
}  // namespace internal

}  // namespace blockrank
