// SPDX-License-Identifier: Apache-2.0
#include "plugin/base/file_util.h"

#include <ftw.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <sys/stat.h>

namespace blockrank {

namespace {

// nftw's callback has no user pointer: the first failure is kept per thread.
thread_local int tls_errno = 0;
thread_local std::string* tls_failed = nullptr;

int remove_entry(const char* path, const struct stat*, int, struct FTW*) {
  if (std::remove(path) != 0 && errno != ENOENT) {
    tls_errno = errno;
    if (tls_failed != nullptr && tls_failed->empty()) {
      *tls_failed = path;
    }
    return 1;  // stop the walk
  }
  return 0;
}

}  // namespace

Status remove_tree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return Status::ok();
    }
    return Status::io_error(path + ": cannot stat: " + std::strerror(errno));
  }
  std::string failed;
  tls_errno = 0;
  tls_failed = &failed;
  // FTW_DEPTH: children before their directory; FTW_PHYS: do not follow symbolic links.
  const int rc = ::nftw(path.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  tls_failed = nullptr;
  if (rc != 0) {
    const int err = tls_errno != 0 ? tls_errno : errno;
    return Status::io_error((failed.empty() ? path : failed) +
                            ": cannot remove: " + std::strerror(err));
  }
  return Status::ok();
}

}  // namespace blockrank
