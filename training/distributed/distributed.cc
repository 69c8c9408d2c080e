// SPDX-License-Identifier: Apache-2.0
#include "training/distributed/distributed.h"

#include <chrono>
#include <cstdlib>
#include <map>
#include <string>
#include <utility>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#if defined(BLOCKRANK_HAVE_GLOO) || defined(BLOCKRANK_HAVE_NCCL)
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
#ifdef BLOCKRANK_HAVE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef BLOCKRANK_HAVE_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace blockrank::training {

namespace {

Status read_int_env(const char* name, int low, int high, int* value) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') {
    return Status::ok();
  }
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  if (*end != '\0' || n < low || n > high) {
    return Status::invalid_argument(std::string("environment variable ") + name + "='" + v +
                                    "': expected an integer in [" + std::to_string(low) + ", " +
                                    std::to_string(high) + "]");
  }
  *value = static_cast<int>(n);
  return Status::ok();
}

class LocalReducer : public Reducer {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  Status all_reduce_mean(std::vector<at::Tensor>*) override { return Status::ok(); }
  Status broadcast_from_primary(std::vector<at::Tensor>*) override { return Status::ok(); }
  Status barrier() override { return Status::ok(); }
  const char* backend_name() const override { return "none"; }
};

#if defined(BLOCKRANK_HAVE_GLOO) || defined(BLOCKRANK_HAVE_NCCL)
// One process group, whichever backend; the collectives pack tensors per dtype.
template <typename Group>
class GroupReducer : public Reducer {
 public:
  GroupReducer(c10::intrusive_ptr<Group> group, int rank, int world, const char* name)
      : group_(std::move(group)), rank_(rank), world_(world), name_(name) {}
  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  const char* backend_name() const override { return name_; }

  Status all_reduce_mean(std::vector<at::Tensor>* tensors) override {
    return pack_and_run(tensors, [&](at::Tensor& flat) {
      std::vector<at::Tensor> io{flat};
      group_->allreduce(io)->wait();
      flat.div_(static_cast<double>(world_));
    });
  }

  Status broadcast_from_primary(std::vector<at::Tensor>* tensors) override {
    return pack_and_run(tensors, [&](at::Tensor& flat) {
      std::vector<at::Tensor> io{flat};
      group_->broadcast(io)->wait();
    });
  }

  Status barrier() override {
    // A one-element all-reduce: works the same on Gloo and NCCL (NCCL's barrier wants device ids).
    std::vector<at::Tensor> one{at::zeros({1}, at::TensorOptions().device(device_))};
    try {
      group_->allreduce(one)->wait();
    } catch (const c10::Error& e) {
      return Status::unavailable(std::string("barrier: ") + e.what_without_backtrace());
    }
    return Status::ok();
  }

  void set_device(c10::Device device) { device_ = device; }

 private:
  template <typename Fn>
  Status pack_and_run(std::vector<at::Tensor>* tensors, Fn&& collective) {
    try {
      std::map<int, std::vector<size_t>> by_dtype;
      for (size_t i = 0; i < tensors->size(); ++i) {
        if ((*tensors)[i].defined()) {
          by_dtype[static_cast<int>((*tensors)[i].scalar_type())].push_back(i);
        }
      }
      for (auto& [dtype, idx] : by_dtype) {
        std::vector<at::Tensor> parts;
        parts.reserve(idx.size());
        for (size_t i : idx) {
          parts.push_back((*tensors)[i].reshape({-1}));
        }
        at::Tensor flat = at::cat(parts);
        collective(flat);
        int64_t offset = 0;
        for (size_t i : idx) {
          at::Tensor& t = (*tensors)[i];
          t.copy_(flat.narrow(0, offset, t.numel()).view_as(t));
          offset += t.numel();
        }
      }
    } catch (const c10::Error& e) {
      return Status::unavailable(std::string(name_) +
                                 " collective failed: " + e.what_without_backtrace());
    }
    return Status::ok();
  }

  c10::intrusive_ptr<Group> group_;
  int rank_;
  int world_;
  const char* name_;
  c10::Device device_ = c10::Device(c10::kCPU);
};

c10::intrusive_ptr<c10d::TCPStore> connect_store(const DistributedEnv& env, int timeout_seconds) {
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(env.master_port);
  so.isServer = env.rank == 0;
  so.numWorkers = static_cast<size_t>(env.world_size);
  so.waitWorkers = true;
  so.timeout = std::chrono::milliseconds(int64_t{timeout_seconds} * 1000);
  return c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
}
#endif

}  // namespace

StatusOr<DistributedEnv> DistributedEnv::from_environment() {
  DistributedEnv env;
  BLOCKRANK_RETURN_IF_ERROR(read_int_env("WORLD_SIZE", 1, 1 << 20, &env.world_size));
  BLOCKRANK_RETURN_IF_ERROR(read_int_env("RANK", 0, env.world_size - 1, &env.rank));
  env.local_rank = env.rank;
  BLOCKRANK_RETURN_IF_ERROR(read_int_env("LOCAL_RANK", 0, 1 << 20, &env.local_rank));
  BLOCKRANK_RETURN_IF_ERROR(read_int_env("MASTER_PORT", 1, 65535, &env.master_port));
  if (const char* addr = std::getenv("MASTER_ADDR"); addr != nullptr && *addr != '\0') {
    env.master_addr = addr;
  }
  return env;
}

Status open_reducer(const DistributedEnv& env,
                    c10::Device device,
                    int timeout_seconds,
                    std::unique_ptr<Reducer>* out) {
  if (env.world_size <= 1) {
    *out = std::make_unique<LocalReducer>();
    return Status::ok();
  }
  const std::string where = env.master_addr + ":" + std::to_string(env.master_port) + " (rank " +
                            std::to_string(env.rank) + " of " + std::to_string(env.world_size) +
                            ")";
  if (device.is_cuda()) {
#ifdef BLOCKRANK_HAVE_NCCL
    ::setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0);
    try {
      auto store = connect_store(env, timeout_seconds);
      auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, env.rank, env.world_size);
      auto r = std::make_unique<GroupReducer<c10d::ProcessGroupNCCL>>(group, env.rank,
                                                                      env.world_size, "nccl");
      r->set_device(device);
      *out = std::move(r);
    } catch (const std::exception& e) {
      return Status::unavailable("NCCL rendezvous at " + where + " failed: " + e.what());
    }
    return Status::ok();
#else
    return Status::unimplemented(
        "data-parallel training on CUDA needs NCCL, which this LibTorch build does not have");
#endif
  }
#ifdef BLOCKRANK_HAVE_GLOO
  try {
    auto store = connect_store(env, timeout_seconds);
    auto options = c10d::ProcessGroupGloo::Options::create();
    options->timeout = std::chrono::milliseconds(int64_t{timeout_seconds} * 1000);
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(
        env.master_addr == "localhost" ? "127.0.0.1" : env.master_addr));
    auto group =
        c10::make_intrusive<c10d::ProcessGroupGloo>(store, env.rank, env.world_size, options);
    *out = std::make_unique<GroupReducer<c10d::ProcessGroupGloo>>(group, env.rank, env.world_size,
                                                                  "gloo");
  } catch (const std::exception& e) {
    return Status::unavailable("Gloo rendezvous at " + where + " failed: " + e.what());
  }
  return Status::ok();
#else
  return Status::unimplemented(
      "data-parallel training on CPU needs Gloo (Debian: libgloo-dev), which this build lacks");
#endif
}

}  // namespace blockrank::training
