// SPDX-License-Identifier: Apache-2.0
#include "test_util.h"

#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "plugin/base/file_util.h"

#include <sys/stat.h>
#include <sys/wait.h>

namespace blockrank::testing {

std::string source_dir() {
  const char* env = std::getenv("BLOCKRANK_SOURCE_DIR");
  if (env != nullptr && *env != '\0') {
    return env;
  }
  return std::filesystem::current_path().string();
}

std::string shared_data_dir() {
  const char* env = std::getenv("BLOCKRANK_SHARED_DATA");
  std::string dir = (env != nullptr && *env != '\0') ? env : source_dir() + "/../shared/data";
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return std::string();
  }
  return std::filesystem::weakly_canonical(dir).string();
}

TempDir::TempDir() {
  std::string tmpl = std::filesystem::temp_directory_path().string() + "/blockrank-test-XXXXXX";
  char* made = ::mkdtemp(tmpl.data());
  path_ = made != nullptr ? std::string(made) : std::string();
}

TempDir::~TempDir() {
  if (!path_.empty()) {
    (void)remove_tree(path_);
  }
}

void write_text(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
}

std::shared_ptr<Logger> CapturedLog::logger() {
  return std::make_shared<Logger>(LogLevel::kWarning, [this](LogLevel, const std::string& m) {
    std::lock_guard<std::mutex> lock(mu_);
    warnings_.push_back(m);
  });
}

bool CapturedLog::contains(const std::string& needle) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const std::string& w : warnings_) {
    if (w.find(needle) != std::string::npos) {
      return true;
    }
  }
  return false;
}

CommandResult run_command(const std::string& command) {
  CommandResult r;
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) {
    return r;
  }
  std::array<char, 4096> buf;
  size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) {
    r.out.append(buf.data(), n);
  }
  const int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string shell_quote(const std::string& s) {
  return "'" + s + "'";
}

}  // namespace blockrank::testing
