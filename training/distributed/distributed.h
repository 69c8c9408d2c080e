// SPDX-License-Identifier: Apache-2.0
// Data-parallel training across processes (issue #11) on LibTorch's own collectives (c10d): Gloo
// between CPU processes, NCCL between GPUs when the LibTorch build has it. One process per device;
// the launcher's usual environment picks the role:
//   RANK, WORLD_SIZE            this process's rank and the number of processes (default 0 / 1);
//   LOCAL_RANK                  the device index on this host (default: RANK);
//   MASTER_ADDR, MASTER_PORT    rank 0's TCP store (default 127.0.0.1:29500).
// torchrun and most cluster launchers set exactly these. NVLink multicast stays off:
// NCCL_NVLS_ENABLE is set to 0 before NCCL starts unless the user set it (the GPU machines require
// it).
//
// The trainer calls all_reduce_mean() on its gradients after each accumulated step, so every rank
// applies the same update; rank 0 logs and writes checkpoints. With world size 1 every call is a
// no-op and no socket is opened.
//
// Thread-safety: a Reducer is used from the training thread only.
#ifndef BLOCKRANK_TRAINING_DISTRIBUTED_DISTRIBUTED_H_
#define BLOCKRANK_TRAINING_DISTRIBUTED_DISTRIBUTED_H_

#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "blockrank/status.h"

namespace blockrank::training {

struct DistributedEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;

  /// Reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT. kInvalidArgument naming the
  /// variable when one is not a number or out of range (rank >= world size, port outside 1..65535).
  static StatusOr<DistributedEnv> from_environment();
  bool is_primary() const { return rank == 0; }
};

class Reducer {
 public:
  virtual ~Reducer() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  /// Replaces each tensor by the mean of that tensor over all ranks (same shapes and dtypes on
  /// every rank). The tensors are packed into one buffer per dtype, so this is one collective per
  /// dtype whatever the number of tensors. Undefined tensors are skipped (they must be undefined
  /// on every rank).
  virtual Status all_reduce_mean(std::vector<at::Tensor>* tensors) = 0;
  /// Replaces each tensor by rank 0's value (initial weights, so every rank starts equal).
  virtual Status broadcast_from_primary(std::vector<at::Tensor>* tensors) = 0;
  /// Waits for every rank.
  virtual Status barrier() = 0;
  /// "none", "gloo" or "nccl".
  virtual const char* backend_name() const = 0;
};

/// A reducer for `env` on `device`: the no-op one for world size 1, else Gloo (CPU tensors) or
/// NCCL (CUDA tensors). Connects to the store at MASTER_ADDR:MASTER_PORT (rank 0 serves it) and
/// waits up to `timeout_seconds` for every rank. kUnimplemented when the collective library for
/// the device is not in this LibTorch build; kUnavailable when the rendezvous fails.
Status open_reducer(const DistributedEnv& env,
                    c10::Device device,
                    int timeout_seconds,
                    std::unique_ptr<Reducer>* out);

}  // namespace blockrank::training

#endif  // BLOCKRANK_TRAINING_DISTRIBUTED_DISTRIBUTED_H_
