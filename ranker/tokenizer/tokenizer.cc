// SPDX-License-Identifier: Apache-2.0
// Tokenizer::load: resolves the path (file or model directory), reads tokenizer.json and the
// optional tokenizer_config.json beside it, and hands both to the tokenizer.json builder.
#include "ranker/tokenizer/tokenizer.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "ranker/tokenizer/hf_tokenizer.h"

#include <sys/stat.h>

namespace blockrank {
namespace {

bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_regular_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

Status read_file(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status::io_error(path + ": cannot open: " + std::strerror(errno));
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) {
    return Status::io_error(path + ": read failed");
  }
  *out = buffer.str();
  return Status::ok();
}

}  // namespace

Status Tokenizer::load(const std::string& path, std::unique_ptr<Tokenizer>* out) {
  std::string file = path;
  if (is_directory(path)) {
    file = path + (path.empty() || path.back() == '/' ? "" : "/") + "tokenizer.json";
  }
  if (!is_regular_file(file)) {
    return Status::not_found(file + ": no such tokenizer file" +
                             (file == path ? "" : " (looked inside the directory " + path + ")"));
  }
  std::string content;
  BLOCKRANK_RETURN_IF_ERROR(read_file(file, &content));
  std::string config;
  const size_t slash = file.rfind('/');
  const std::string config_path =
      (slash == std::string::npos ? std::string() : file.substr(0, slash + 1)) +
      "tokenizer_config.json";
  if (is_regular_file(config_path)) {
    BLOCKRANK_RETURN_IF_ERROR(read_file(config_path, &config));
  }
  try {
    return internal::build_hf_tokenizer(content, config, file, out);
  } catch (const std::exception& e) {
    return Status::internal(file + ": unexpected error while loading: " + e.what());
  }
}

}  // namespace blockrank
