// SPDX-License-Identifier: Apache-2.0
// Shared test helpers: ASSERT_OK/EXPECT_OK for Status values, scratch directories, and the location
// of ../shared/data (tests that need it skip with a clear message when it is absent).
#ifndef BLOCKRANK_TESTS_SUPPORT_TEST_UTIL_H_
#define BLOCKRANK_TESTS_SUPPORT_TEST_UTIL_H_

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "blockrank/status.h"
#include "plugin/base/logging.h"

#define ASSERT_OK(expr)                                            \
  do {                                                             \
    const ::blockrank::Status blockrank_s_ = (expr);               \
    ASSERT_TRUE(blockrank_s_.is_ok()) << blockrank_s_.to_string(); \
  } while (false)
#define EXPECT_OK(expr)                                            \
  do {                                                             \
    const ::blockrank::Status blockrank_s_ = (expr);               \
    EXPECT_TRUE(blockrank_s_.is_ok()) << blockrank_s_.to_string(); \
  } while (false)

namespace blockrank::testing {

/// The repository root (BLOCKRANK_SOURCE_DIR, set by CTest; else the current directory).
std::string source_dir();
/// ../shared/data beside the checkout, or BLOCKRANK_SHARED_DATA; empty if absent.
std::string shared_data_dir();
/// A fresh empty directory under the system temp dir, removed by the returned guard's destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};
/// Writes `content` to `path` (for building malformed inputs in tests).
void write_text(const std::string& path, const std::string& content);

/// A logger that keeps warnings so tests can check that failures were reported. Thread-safe.
class CapturedLog {
 public:
  /// A Logger (warnings and above) that records into this object, which must outlive it.
  std::shared_ptr<Logger> logger();
  /// True when a recorded message contains `needle`.
  bool contains(const std::string& needle);

 private:
  std::mutex mu_;
  std::vector<std::string> warnings_;
};

/// What a shell command printed and how it exited.
struct CommandResult {
  int exit_code = -1;  ///< -1 when it could not be started or did not exit normally
  std::string out;     ///< its standard output (append " 2>&1" to the command to include stderr)
};
/// Runs `command` through /bin/sh and collects its standard output.
CommandResult run_command(const std::string& command);
/// `s` in single quotes for the shell (test paths hold no single quotes).
std::string shell_quote(const std::string& s);

}  // namespace blockrank::testing

/// Skips the current test unless ../shared/data holds `rel` (a file or folder).
#define BLOCKRANK_REQUIRE_SHARED_DATA(rel)                                                  \
  do {                                                                                      \
    if (::blockrank::testing::shared_data_dir().empty()) {                                  \
      GTEST_SKIP() << "needs ../shared/data (not present here); set BLOCKRANK_SHARED_DATA"; \
    }                                                                                       \
  } while (false)

#endif  // BLOCKRANK_TESTS_SUPPORT_TEST_UTIL_H_
