// SPDX-License-Identifier: Apache-2.0
// The lexical-prior initialisation. See lexical_init.h.
#include "training/lexical_init.h"

#include <cmath>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

namespace blockrank::training {
namespace {

at::Tensor find_parameter(const TrainableModel& model, const std::string& name) {
  for (const NamedParameter& p : model.parameters()) {
    if (p.name == name) {
      return p.tensor;
    }
  }
  return at::Tensor();
}

}  // namespace

Status apply_lexical_init(const LexicalInitOptions& o, TrainableModel* model) {
  const ModelConfig& c = model->config();
  if (o.layer < 0 || o.layer >= c.num_layers) {
    return Status::invalid_argument("lexical init: layer " + std::to_string(o.layer) +
                                    " outside the model's " + std::to_string(c.num_layers) +
                                    " layers");
  }
  if (c.qk_norm) {
    return Status::invalid_argument(
        "lexical init: models with q/k norms (Qwen3) are not supported");
  }
  if (o.block_length < 1 || o.match_logit <= 0 || o.max_phase <= 0) {
    return Status::invalid_argument(
        "lexical init: block_length, match_logit and max_phase must be > 0");
  }
  const int64_t d = c.head_dim, half = d / 2, hd = c.hidden_size;
  const int64_t group = c.num_heads / c.num_kv_heads;
  // Query rows sit at offset + [0, H), documents at L0 + [0, H) with 1 <= L0 <= H: the distance
  // q - k lies in [offset - 2H, offset + H]; centre and half-width of that range.
  const double h = static_cast<double>(o.block_length);
  const double centre = static_cast<double>(o.query_position_offset) - 0.5 * h;
  const double spread = 1.5 * h;
  std::vector<int64_t> pairs;
  std::vector<double> phase;
  for (int64_t i = 0; i < half; ++i) {
    const double w = 1.0 / std::pow(c.rope_theta, 2.0 * static_cast<double>(i) / d);
    if (w * spread <= o.max_phase) {
      pairs.push_back(i);
      phase.push_back(std::fmod(w * centre, 2 * M_PI));
    }
  }
  const int64_t n = static_cast<int64_t>(pairs.size());
  if (n == 0) {
    return Status::invalid_argument(
        "lexical init: no RoPE pair turns by less than max_phase over " + std::to_string(spread) +
        " positions (raise rope_theta)");
  }
  if (2 * n > hd) {
    return Status::invalid_argument("lexical init: more slow RoPE dimensions than hidden_size");
  }
  // |P x|² ≈ 2n for a normalised x (rms 1) and orthonormal P: s² · 2n / sqrt(D) = match_logit.
  const double s = std::sqrt(o.match_logit * std::sqrt(static_cast<double>(d)) / (2.0 * n));
  try {
    c10::NoGradGuard no_grad;
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
    const auto f32 = at::TensorOptions().dtype(at::kDouble);
    for (int64_t l = 0; l < o.layer; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      for (const char* name : {"self_attn.o_proj.weight", "mlp.down_proj.weight"}) {
        at::Tensor w = find_parameter(*model, p + name);
        if (!w.defined()) {
          return Status::internal(std::string("lexical init: no parameter ") + p + name);
        }
        w.zero_();
      }
    }
    const std::string p = "model.layers." + std::to_string(o.layer) + ".";
    at::Tensor qw = find_parameter(*model, p + "self_attn.q_proj.weight");
    at::Tensor kw = find_parameter(*model, p + "self_attn.k_proj.weight");
    if (!qw.defined() || !kw.defined()) {
      return Status::internal("lexical init: no q_proj/k_proj at layer " + std::to_string(o.layer));
    }
    at::Tensor q = qw.to(at::kCPU, at::kDouble).clone();  // [Hq·D, hidden]
    at::Tensor k = kw.to(at::kCPU, at::kDouble).clone();  // [Hkv·D, hidden]
    for (int64_t g = 0; g < c.num_kv_heads; ++g) {
      // A random orthonormal basis of 2n directions of the hidden space (rows of P).
      at::Tensor a = at::randn({hd, 2 * n}, gen, f32);
      at::Tensor basis = std::get<0>(at::linalg_qr(a, "reduced")).t().contiguous();  // [2n, hd]
      for (int64_t m = 0; m < n; ++m) {
        const int64_t i = pairs[static_cast<size_t>(m)];
        at::Tensor re = basis[2 * m] * s, im = basis[2 * m + 1] * s;
        k[g * d + i].copy_(re);
        k[g * d + i + half].copy_(im);
        // q as the complex functional (re + i·im)·e^{-iφ}: rotate_half RoPE multiplies pair i by
        // e^{iωp}, so q·k picks up e^{iω(Δ - centre)}, close to 1 over the whole spread.
        const double cs = std::cos(phase[static_cast<size_t>(m)]);
        const double sn = std::sin(phase[static_cast<size_t>(m)]);
        for (int64_t j = 0; j < group; ++j) {
          const int64_t row = (g * group + j) * d;
          // Each query head of the group gets a little of its own noise, so they can diverge.
          at::Tensor nre = at::randn({hd}, gen, f32) * (0.02 * s);
          at::Tensor nim = at::randn({hd}, gen, f32) * (0.02 * s);
          q[row + i].copy_(re * cs + im * sn + nre);
          q[row + i + half].copy_(im * cs - re * sn + nim);
        }
      }
    }
    if (!o.neutral_tokens.empty()) {
      at::Tensor embed = find_parameter(*model, "model.embed_tokens.weight");
      if (!embed.defined()) {
        return Status::internal("lexical init: no model.embed_tokens.weight");
      }
      const int64_t vocab = embed.size(0);
      if (o.anchor_token < 0 || o.anchor_token >= vocab) {
        return Status::invalid_argument("lexical init: anchor token " +
                                        std::to_string(o.anchor_token) + " outside the vocabulary");
      }
      at::Tensor e = embed.to(at::kCPU, at::kDouble).clone();  // [V, hidden]
      // u: a unit direction that no k_proj row at l* reads, so keys never see it.
      at::Tensor u = at::randn({hd}, gen, f32);
      at::Tensor kb = std::get<0>(at::linalg_qr(k.t(), "reduced"));  // [hidden, rows] orthonormal
      u = u - at::matmul(kb, at::matmul(kb.t(), u));
      u = u / u.norm();
      k = k - at::outer(at::matmul(k, u), u);  // exact zero along u (up to rounding)
      // Every embedding loses its u component; the neutral tokens get one as long as the rest of
      // the embedding, so after RMSNorm u·x̂ = sqrt(hidden / 2) for them and 0 for all others.
      e = e - at::outer(at::matmul(e, u), u);
      for (int32_t t : o.neutral_tokens) {
        if (t < 0 || t >= vocab || t == o.anchor_token) {
          continue;
        }
        e[t].add_(u * e[t].norm());
      }
      // q for a neutral row = its (halved) own-token query + scale · q(anchor), with q(anchor)
      // giving about match_logit against the anchor's key.
      at::Tensor anchor = e[o.anchor_token];
      anchor = anchor / anchor.pow(2).mean().sqrt();      // RMSNorm with unit weight
      const at::Tensor q_anchor = at::matmul(q, anchor);  // [Hq·D]
      const double u_dot = std::sqrt(static_cast<double>(hd) / 2.0);
      q = q + at::outer(q_anchor, u) * (o.anchor_logit / o.match_logit / u_dot);
      embed.copy_(e.to(embed.options()));
    }
    qw.copy_(q.to(qw.options()));
    kw.copy_(k.to(kw.options()));
  } catch (const c10::Error& e) {
    return Status::internal(std::string("lexical init: ") + e.what_without_backtrace());
  }
  return Status::ok();
}

}  // namespace blockrank::training
