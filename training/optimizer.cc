// SPDX-License-Identifier: Apache-2.0
// AdamW, the warmup + cosine schedule and global-norm clipping. See optimizer.h.
#include "training/optimizer.h"

#include <algorithm>
#include <cmath>
#include <map>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

namespace blockrank::training {

AdamW::AdamW(const std::vector<NamedParameter>& params, const AdamWOptions& options)
    : params_(params), options_(options) {
  c10::NoGradGuard no_grad;
  for (const NamedParameter& p : params_) {
    exp_avg_.push_back(at::zeros_like(p.tensor));
    exp_avg_sq_.push_back(at::zeros_like(p.tensor));
  }
}

void AdamW::step(double lr) {
  c10::NoGradGuard no_grad;
  ++steps_;
  const double bias1 = 1.0 - std::pow(options_.beta1, static_cast<double>(steps_));
  const double bias2 = 1.0 - std::pow(options_.beta2, static_cast<double>(steps_));
  const double step_size = lr / bias1;
  const double bias2_sqrt = std::sqrt(bias2);
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor p = params_[i].tensor;
    const at::Tensor& g = p.grad();
    if (!g.defined()) {
      continue;
    }
    // torch.optim.AdamW (single-tensor path): decay, moments, bias-corrected update.
    if (options_.weight_decay != 0.0 && p.dim() >= 2) {
      if (options_.decay_to_reference && i < reference_.size() && reference_[i].defined()) {
        p.sub_(p - reference_[i], lr * options_.weight_decay);
      } else {
        p.mul_(1.0 - lr * options_.weight_decay);
      }
    }
    exp_avg_[i].lerp_(g, 1.0 - options_.beta1);
    exp_avg_sq_[i].mul_(options_.beta2).addcmul_(g, g, 1.0 - options_.beta2);
    at::Tensor denom = (exp_avg_sq_[i].sqrt() / bias2_sqrt).add_(options_.eps);
    p.addcdiv_(exp_avg_[i], denom, -step_size);
  }
  zero_grad();
}

void AdamW::set_reference() {
  c10::NoGradGuard no_grad;
  reference_.assign(params_.size(), at::Tensor());
  for (size_t i = 0; i < params_.size(); ++i) {
    if (params_[i].tensor.dim() >= 2) {
      reference_[i] = params_[i].tensor.detach().clone();
    }
  }
}

void AdamW::zero_grad() {
  for (const NamedParameter& p : params_) {
    p.tensor.mutable_grad() = at::Tensor();
  }
}

std::vector<std::pair<std::string, at::Tensor>> AdamW::state() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back("exp_avg." + params_[i].name, exp_avg_[i].to(at::kCPU).contiguous());
    out.emplace_back("exp_avg_sq." + params_[i].name, exp_avg_sq_[i].to(at::kCPU).contiguous());
  }
  return out;
}

Status AdamW::load_state(const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                         int64_t steps) {
  std::map<std::string, at::Tensor> by_name(tensors.begin(), tensors.end());
  c10::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    for (auto& [prefix, dst] : {std::make_pair(std::string("exp_avg."), &exp_avg_[i]),
                                std::make_pair(std::string("exp_avg_sq."), &exp_avg_sq_[i])}) {
      auto it = by_name.find(prefix + params_[i].name);
      if (it == by_name.end()) {
        return Status::not_found("optimizer state: missing '" + prefix + params_[i].name + "'");
      }
      if (it->second.sizes() != dst->sizes()) {
        return Status::invalid_argument("optimizer state: '" + prefix + params_[i].name +
                                        "' has the wrong shape");
      }
      dst->copy_(it->second);
    }
  }
  steps_ = steps;
  return Status::ok();
}

double learning_rate(int64_t step, const ScheduleOptions& o) {
  if (step < o.warmup_steps) {
    return o.peak_lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup_steps);
  }
  const double span = static_cast<double>(std::max<int64_t>(1, o.total_steps - o.warmup_steps));
  const double progress = std::min(1.0, static_cast<double>(step - o.warmup_steps) / span);
  const double cosine = 0.5 * (1.0 + std::cos(M_PI * progress));
  return o.peak_lr * (o.min_lr_ratio + (1.0 - o.min_lr_ratio) * cosine);
}

double clip_grad_norm(const std::vector<NamedParameter>& params, double max_norm) {
  c10::NoGradGuard no_grad;
  std::vector<at::Tensor> norms;
  for (const NamedParameter& p : params) {
    if (p.tensor.grad().defined()) {
      norms.push_back(p.tensor.grad().norm().to(at::kDouble));
    }
  }
  if (norms.empty()) {
    return 0.0;
  }
  const double total = at::stack(norms).norm().item<double>();  // one device sync per step
  if (max_norm > 0 && total > max_norm) {
    const double scale = max_norm / (total + 1e-6);
    for (const NamedParameter& p : params) {
      if (p.tensor.grad().defined()) {
        p.tensor.mutable_grad().mul_(scale);
      }
    }
  }
  return total;
}

}  // namespace blockrank::training
