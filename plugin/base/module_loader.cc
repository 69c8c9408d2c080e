// SPDX-License-Identifier: Apache-2.0
#include "plugin/base/module_loader.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>

#include "plugin/base/rerank_backend.h"

namespace blockrank {

namespace {
std::string self_dir() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) {
    return ".";
  }
  buf[n] = '\0';
  const std::string path(buf);
  return path.substr(0, path.rfind('/'));
}

std::mutex g_mu;
void* g_handle = nullptr;
std::string g_error;
}  // namespace

Status find_torch_module_symbol(const char* symbol, void** address) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_handle == nullptr && g_error.empty()) {
    const std::string dir = self_dir();
    const char* env = std::getenv("BLOCKRANK_TORCH_MODULE");
    const std::string candidates[] = {env != nullptr ? std::string(env) : std::string(),
                                      dir + "/libblockrank_torch_cli.so",
                                      dir + "/../lib/blockrank/libblockrank_torch_cli.so",
                                      dir + "/../plugin/cli/libblockrank_torch_cli.so"};
    for (const std::string& path : candidates) {
      if (path.empty() || ::access(path.c_str(), R_OK) != 0) {
        continue;
      }
      g_handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (g_handle != nullptr) {
        break;
      }
      g_error += std::string(::dlerror()) + "; ";
    }
    if (g_handle == nullptr && g_error.empty()) {
      g_error =
          "libblockrank_torch_cli.so not found beside " + dir + " (a build without LibTorch?)";
    }
  }
  if (g_handle == nullptr) {
    return Status::unimplemented("cannot load the LibTorch module: " + g_error);
  }
  *address = ::dlsym(g_handle, symbol);
  if (*address == nullptr) {
    return Status::unimplemented(std::string("the LibTorch module has no ") + symbol);
  }
  return Status::ok();
}

Status open_rerank_backend(const RerankBackendOptions& options,
                           std::unique_ptr<RerankBackend>* out) {
  void* sym = nullptr;
  BLOCKRANK_RETURN_IF_ERROR(find_torch_module_symbol("blockrank_open_rerank_backend", &sym));
  using OpenFn = Status* (*)(const RerankBackendOptions*, RerankBackend**);
  RerankBackend* backend = nullptr;
  // The module returns a heap Status (nullptr when ok) so no Status crosses by value.
  std::unique_ptr<Status> error(reinterpret_cast<OpenFn>(sym)(&options, &backend));
  if (error) {
    return *error;
  }
  out->reset(backend);
  return Status::ok();
}

}  // namespace blockrank
