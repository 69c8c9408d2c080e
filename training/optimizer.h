// SPDX-License-Identifier: Apache-2.0
// The optimisation pieces of the training step, in ATen so their state is plain tensors the
// checkpoint writes as safetensors:
//  - AdamW (Loshchilov & Hutter; the update of torch.optim.AdamW: decoupled weight decay, bias
//    corrections), on the fp32 master parameters;
//  - the learning-rate schedule: linear warmup then cosine decay (HF's
//    get_cosine_schedule_with_warmup, with an optional floor);
//  - clipping by the global gradient norm (torch.nn.utils.clip_grad_norm_).
// Gradients are combined across data-parallel workers before clipping, in one place of the loop
// (trainer.cc, through training/distributed's Reducer).
//
// Thread-safety: none; the trainer drives these from one thread.
#ifndef BLOCKRANK_TRAINING_OPTIMIZER_H_
#define BLOCKRANK_TRAINING_OPTIMIZER_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "blockrank/status.h"
#include "training/trainable_model.h"

namespace blockrank::training {

struct AdamWOptions {
  double beta1 = 0.9;    ///< Default: 0.9.
  double beta2 = 0.999;  ///< Default: 0.999.
  double eps = 1e-8;     ///< Default: 1e-8.
  /// Decoupled weight decay, applied to matrices only (not to norms, biases). Default: 0 (§7).
  double weight_decay = 0.0;
  /// Decay towards the reference weights taken by AdamW::set_reference() (the starting point:
  /// p <- p - lr · weight_decay · (p - p_ref), "L2-SP") instead of towards zero, so training
  /// refines an initialisation rather than shrinking it. Default: false.
  bool decay_to_reference = false;
};

class AdamW {
 public:
  /// Keeps handles to `params` (the model's fp32 leaves) and zero moments beside each.
  AdamW(const std::vector<NamedParameter>& params, const AdamWOptions& options);

  /// One update with learning rate `lr` from each parameter's .grad() (parameters without a
  /// gradient are left alone), then clears the gradients.
  void step(double lr);
  /// Drops every parameter's gradient.
  void zero_grad();

  /// Takes a copy of the current matrices as the decay reference (decay_to_reference). Call once
  /// the parameters hold the starting point; without a reference, decay goes towards zero.
  void set_reference();

  int64_t steps() const { return steps_; }
  /// The moments as ("exp_avg.<name>", t) and ("exp_avg_sq.<name>", t) CPU tensors.
  std::vector<std::pair<std::string, at::Tensor>> state() const;
  /// Restores state() output and the step count. kNotFound/kInvalidArgument when a tensor is
  /// missing or has the wrong shape.
  Status load_state(const std::vector<std::pair<std::string, at::Tensor>>& tensors, int64_t steps);

 private:
  std::vector<NamedParameter> params_;
  std::vector<at::Tensor> exp_avg_, exp_avg_sq_;
  std::vector<at::Tensor> reference_;  ///< per parameter; undefined for non-matrices
  AdamWOptions options_;
  int64_t steps_ = 0;
};

struct ScheduleOptions {
  double peak_lr = 1e-4;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  /// The cosine decays to peak_lr · min_lr_ratio. Default: 0.
  double min_lr_ratio = 0.0;
};

/// The learning rate of 0-based optimizer step `step`: peak · (step + 1) / warmup during warmup
/// (so the first step already moves; HF starts at 0), then a half cosine from peak down to
/// peak · min_lr_ratio at total_steps.
double learning_rate(int64_t step, const ScheduleOptions& options);

/// Scales every gradient so that their global L2 norm is at most `max_norm` (no-op when
/// max_norm <= 0); returns the norm before clipping.
double clip_grad_norm(const std::vector<NamedParameter>& params, double max_norm);

}  // namespace blockrank::training

#endif  // BLOCKRANK_TRAINING_OPTIMIZER_H_
