// SPDX-License-Identifier: Apache-2.0
// Status and StatusOr: how every blockrank boundary reports failure. No exception crosses the
// public API; library exceptions (Xapian::Error, c10::Error, std::bad_alloc, JSON errors) are
// caught at the adapter that calls the library and turned into a Status there.
//
// Thread-safety: Status values are immutable once built and safe to share across threads.
#ifndef BLOCKRANK_STATUS_H_
#define BLOCKRANK_STATUS_H_

#include <cstdlib>
#include <optional>
#include <string>
#include <utility>

namespace blockrank {

/// What went wrong. Codes are coarse on purpose: callers branch on them, people read the message.
enum class StatusCode {
  kOk = 0,
  kInvalidArgument,    ///< The caller's input is wrong (bad flag, malformed line, bad JSON).
  kNotFound,           ///< A file, document or tensor that must exist does not.
  kIOError,            ///< The operating system or a storage library failed.
  kCorruption,         ///< Stored data fails its checks (checksum, truncated file, bad header).
  kUnavailable,        ///< A resource is busy or missing right now; retrying may help.
  kResourceExhausted,  ///< A limit was hit (queue full, budget spent, too many documents).
  kDeadlineExceeded,   ///< The request ran past its deadline.
  kUnimplemented,      ///< The input asks for something this build does not support.
  kCancelled,          ///< The operation was interrupted (signal, shutdown).
  kInternal,           ///< A bug or an invariant broken inside blockrank.
};

/// Returns the stable lower-case name of a code ("invalid_argument", ...).
const char* status_code_name(StatusCode code);

/// The result of an operation: kOk, or a code and a message meant for a person.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return Status(); }
  static Status invalid_argument(std::string msg) {
    return Status(StatusCode::kInvalidArgument, std::move(msg));
  }
  static Status not_found(std::string msg) { return Status(StatusCode::kNotFound, std::move(msg)); }
  static Status io_error(std::string msg) { return Status(StatusCode::kIOError, std::move(msg)); }
  static Status corruption(std::string msg) {
    return Status(StatusCode::kCorruption, std::move(msg));
  }
  static Status unavailable(std::string msg) {
    return Status(StatusCode::kUnavailable, std::move(msg));
  }
  static Status resource_exhausted(std::string msg) {
    return Status(StatusCode::kResourceExhausted, std::move(msg));
  }
  static Status deadline_exceeded(std::string msg) {
    return Status(StatusCode::kDeadlineExceeded, std::move(msg));
  }
  static Status unimplemented(std::string msg) {
    return Status(StatusCode::kUnimplemented, std::move(msg));
  }
  static Status cancelled(std::string msg) {
    return Status(StatusCode::kCancelled, std::move(msg));
  }
  static Status internal(std::string msg) { return Status(StatusCode::kInternal, std::move(msg)); }

  bool is_ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  /// "invalid_argument: corpus.jsonl:12: ..." or "ok".
  std::string to_string() const;
  /// Returns a copy whose message is prefixed with `context + ": "`; ok stays ok.
  Status with_context(const std::string& context) const;
  /// Marks a status as deliberately ignored.
  void ignore_error() const {}

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

/// A value or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(T value) : value_(std::move(value)) {}         // NOLINT(google-explicit-constructor)
  StatusOr(Status status) : status_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    if (status_.is_ok()) {
      status_ = Status::internal("StatusOr built from an ok Status without a value");
    }
  }
  bool is_ok() const { return status_.is_ok(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() { return *value_; }
  const T& operator*() const { return *value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace blockrank

#define BLOCKRANK_STATUS_CONCAT_INNER_(a, b) a##b
#define BLOCKRANK_STATUS_CONCAT_(a, b) BLOCKRANK_STATUS_CONCAT_INNER_(a, b)

/// Returns the Status of `expr` from the enclosing function when it is not ok.
#define BLOCKRANK_RETURN_IF_ERROR(expr)             \
  do {                                              \
    ::blockrank::Status blockrank_status_ = (expr); \
    if (!blockrank_status_.is_ok()) {               \
      return blockrank_status_;                     \
    }                                               \
  } while (false)

/// `BLOCKRANK_ASSIGN_OR_RETURN(auto x, make_x());` — unwraps a StatusOr or returns its Status.
#define BLOCKRANK_ASSIGN_OR_RETURN(lhs, expr) \
  BLOCKRANK_ASSIGN_OR_RETURN_IMPL_(BLOCKRANK_STATUS_CONCAT_(blockrank_or_, __LINE__), lhs, expr)
#define BLOCKRANK_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                     \
  if (!tmp.is_ok()) {                                    \
    return tmp.status();                                 \
  }                                                      \
  lhs = std::move(tmp).value()

/// For programmer errors only: never reachable from user input. Prints and aborts.
#define BLOCKRANK_ASSERT(cond, msg)                                       \
  do {                                                                    \
    if (!(cond)) {                                                        \
      ::blockrank::internal::assert_fail(#cond, msg, __FILE__, __LINE__); \
    }                                                                     \
  } while (false)

namespace blockrank::internal {
[[noreturn]] void assert_fail(const char* cond, const char* msg, const char* file, int line);
}  // namespace blockrank::internal

#endif  // BLOCKRANK_STATUS_H_
