// SPDX-License-Identifier: Apache-2.0
// The trainable model: parameters, the batched differentiable BlockRank forward, and HF-format
// saving. See trainable_model.h for the layout and conventions.
#include "training/trainable_model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>

#include "ranker/core/model.h"
#include "ranker/core/safetensors.h"

#include <nlohmann/json.hpp>

namespace blockrank::training {

namespace fs = std::filesystem;

namespace {

// HF's masked-logit value for BlockRank (0.7 × fp32 min, BLOCKRANK.md §2.1): finite, so a pad row
// with no visible key gets a uniform softmax instead of NaN.
constexpr double kMaskValue = -0.7 * 3.4028234663852886e38;

std::string shape_str(at::IntArrayRef s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    r += (i ? ", " : "") + std::to_string(s[i]);
  }
  return r + "]";
}

Status read_text(const std::string& path, std::string* out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    return Status::not_found(path + ": cannot open");
  }
  std::ostringstream ss;
  ss << f.rdbuf();
  *out = ss.str();
  return Status::ok();
}

Status write_text_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f || !(f << text) || !f.flush()) {
    return Status::io_error(path + ": cannot write");
  }
  return Status::ok();
}

// The parameters of one decoder layer (handles sharing storage with the named list).
struct LayerParams {
  at::Tensor input_norm, post_norm;
  at::Tensor q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b;
  at::Tensor q_norm, k_norm;  // Qwen3
  at::Tensor gate_w, gate_b, up_w, up_b, down_w, down_b;
};

// One entry of the parameter table: name, shape, and where the handle lives.
struct ParamSlot {
  std::string name;
  std::vector<int64_t> shape;
  at::Tensor* slot;
  enum Init { kMatrix, kOnes, kZeros } init;
};

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Collation
// ---------------------------------------------------------------------------------------------------------

Status collate(const std::vector<const TrainingExample*>& examples,
               const CollateOptions& options,
               int64_t vocab_size,
               c10::Device device,
               Batch* out) {
  if (examples.empty()) {
    return Status::invalid_argument("collate: empty batch");
  }
  const int64_t b_count = static_cast<int64_t>(examples.size());
  const int64_t m = static_cast<int64_t>(examples.front()->block_lengths.size());
  const int64_t r = options.signal_rows;
  if (r < 1) {
    return Status::invalid_argument("collate: signal_rows must be >= 1");
  }
  int64_t h = 1;
  for (const TrainingExample* e : examples) {
    const std::string who = "example '" + e->query_id + "'";
    if (static_cast<int64_t>(e->block_lengths.size()) != m) {
      return Status::invalid_argument(who + ": " + std::to_string(e->block_lengths.size()) +
                                      " blocks, the batch has " + std::to_string(m));
    }
    if (m < 3) {
      return Status::invalid_argument(who + ": needs >= 3 blocks (instruction, documents, query)");
    }
    int64_t sum = 0;
    for (int32_t len : e->block_lengths) {
      if (len < 1) {
        return Status::invalid_argument(who + ": empty block");
      }
      sum += len;
      h = std::max<int64_t>(h, len);
    }
    if (sum != static_cast<int64_t>(e->input_ids.size()) ||
        e->labels.size() != e->input_ids.size()) {
      return Status::invalid_argument(who + ": block lengths sum to " + std::to_string(sum) + ", " +
                                      std::to_string(e->input_ids.size()) + " input ids, " +
                                      std::to_string(e->labels.size()) + " labels");
    }
    const int64_t last_start = sum - e->block_lengths.back();
    if (e->signal_row - r + 1 < last_start || e->signal_row >= sum) {
      return Status::invalid_argument(
          who + ": signal rows " + std::to_string(e->signal_row - r + 1) + ".." +
          std::to_string(e->signal_row) + " are not inside the last block");
    }
    const int64_t n = m - 2;
    for (int32_t p : e->positives) {
      if (p < 0 || p >= n) {
        return Status::invalid_argument(who + ": positive " + std::to_string(p) + " outside 0.." +
                                        std::to_string(n - 1));
      }
    }
    for (size_t i = 0; i < e->input_ids.size(); ++i) {
      if (e->input_ids[i] < 0 || e->input_ids[i] >= vocab_size) {
        return Status::invalid_argument(who + ": input_ids[" + std::to_string(i) +
                                        "] = " + std::to_string(e->input_ids[i]) +
                                        " outside the vocabulary");
      }
      if (e->labels[i] != -100 && (e->labels[i] < 0 || e->labels[i] >= vocab_size || i == 0)) {
        return Status::invalid_argument(who + ": bad label at " + std::to_string(i));
      }
    }
  }
  h = (h + options.pad_multiple - 1) / options.pad_multiple * options.pad_multiple;
  const int64_t t = m * h, n = m - 2;
  std::vector<int64_t> ids(static_cast<size_t>(b_count * t), 0), pos(ids.size(), 0);
  std::vector<uint8_t> valid(ids.size(), 0);
  std::vector<int64_t> label_rows, label_ids, signal_rows;
  std::vector<uint8_t> positive(static_cast<size_t>(b_count * n), 0);
  int64_t real_tokens = 0;
  for (int64_t b = 0; b < b_count; ++b) {
    const TrainingExample& e = *examples[static_cast<size_t>(b)];
    BlockLayout layout;
    layout.block_lengths.assign(e.block_lengths.begin(), e.block_lengths.end());
    layout.query_position_offset = options.query_position_offset;
    const std::vector<int64_t> positions = layout.positions();
    // slot_of[i]: the flat padded row of token i (blocks left-padded to H, as the reference).
    std::vector<int64_t> slot_of(e.input_ids.size());
    int64_t i = 0;
    for (int64_t blk = 0; blk < m; ++blk) {
      const int64_t len = e.block_lengths[static_cast<size_t>(blk)];
      for (int64_t j = 0; j < len; ++j, ++i) {
        const int64_t flat = b * t + blk * h + (h - len) + j;
        slot_of[static_cast<size_t>(i)] = flat;
        ids[static_cast<size_t>(flat)] = e.input_ids[static_cast<size_t>(i)];
        pos[static_cast<size_t>(flat)] = positions[static_cast<size_t>(i)];
        valid[static_cast<size_t>(flat)] = 1;
      }
    }
    real_tokens += i;
    for (size_t k = 1; k < e.labels.size(); ++k) {
      if (e.labels[k] != -100) {
        label_rows.push_back(slot_of[k - 1]);  // logits at k-1 predict labels[k] (HF shift)
        label_ids.push_back(e.labels[k]);
      }
    }
    for (int64_t k = e.signal_row - r + 1; k <= e.signal_row; ++k) {
      signal_rows.push_back(slot_of[static_cast<size_t>(k)]);
    }
    for (int32_t p : e.positives) {
      positive[static_cast<size_t>(b * n + p)] = 1;
    }
  }
  Batch batch;
  batch.batch_size = b_count;
  batch.num_blocks = m;
  batch.block_length = h;
  batch.num_tokens = real_tokens;
  batch.signal_rows_per_example = r;
  auto longs = [&](const std::vector<int64_t>& v) { return at::tensor(v, at::kLong).to(device); };
  auto bools = [&](const std::vector<uint8_t>& v, at::IntArrayRef shape) {
    return at::tensor(std::vector<int64_t>(v.begin(), v.end()), at::kLong)
        .to(at::kBool)
        .view(shape)
        .to(device);
  };
  batch.input_ids = longs(ids).view({b_count, t});
  batch.positions = longs(pos).view({b_count, t});
  batch.valid = bools(valid, {b_count, m, h});
  batch.label_rows = longs(label_rows);
  batch.label_ids = longs(label_ids);
  batch.signal_rows = longs(signal_rows);
  batch.positive = bools(positive, {b_count, n});
  *out = std::move(batch);
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------------------

struct TrainableModel::Impl {
  ModelConfig config;
  std::string config_json;
  BlockRankSettings settings;
  ModelOptions options;
  at::Tensor embed, final_norm, lm_head;  // lm_head undefined when tied
  std::vector<LayerParams> layers;
  std::vector<NamedParameter> params;

  c10::ScalarType master_dtype() const {
    return options.dtype == at::kDouble ? at::kDouble : at::kFloat;
  }
  // Softmax/norm/score dtype: fp32, or fp64 for an fp64 model.
  c10::ScalarType acc_dtype() const { return master_dtype(); }

  std::vector<ParamSlot> table() {
    const ModelConfig& c = config;
    const int64_t hd = c.hidden_size, qd = c.num_heads * c.head_dim,
                  kvd = c.num_kv_heads * c.head_dim, ffn = c.intermediate_size;
    std::vector<ParamSlot> t;
    t.push_back({"model.embed_tokens.weight", {c.vocab_size, hd}, &embed, ParamSlot::kMatrix});
    layers.resize(static_cast<size_t>(c.num_layers));
    for (int64_t i = 0; i < c.num_layers; ++i) {
      LayerParams& w = layers[static_cast<size_t>(i)];
      const std::string p = "model.layers." + std::to_string(i) + ".";
      t.push_back({p + "input_layernorm.weight", {hd}, &w.input_norm, ParamSlot::kOnes});
      t.push_back({p + "self_attn.q_proj.weight", {qd, hd}, &w.q_w, ParamSlot::kMatrix});
      t.push_back({p + "self_attn.k_proj.weight", {kvd, hd}, &w.k_w, ParamSlot::kMatrix});
      t.push_back({p + "self_attn.v_proj.weight", {kvd, hd}, &w.v_w, ParamSlot::kMatrix});
      t.push_back({p + "self_attn.o_proj.weight", {hd, qd}, &w.o_w, ParamSlot::kMatrix});
      if (c.qkv_bias) {
        t.push_back({p + "self_attn.q_proj.bias", {qd}, &w.q_b, ParamSlot::kZeros});
        t.push_back({p + "self_attn.k_proj.bias", {kvd}, &w.k_b, ParamSlot::kZeros});
        t.push_back({p + "self_attn.v_proj.bias", {kvd}, &w.v_b, ParamSlot::kZeros});
      }
      if (c.o_bias) {
        t.push_back({p + "self_attn.o_proj.bias", {hd}, &w.o_b, ParamSlot::kZeros});
      }
      if (c.qk_norm) {
        t.push_back({p + "self_attn.q_norm.weight", {c.head_dim}, &w.q_norm, ParamSlot::kOnes});
        t.push_back({p + "self_attn.k_norm.weight", {c.head_dim}, &w.k_norm, ParamSlot::kOnes});
      }
      t.push_back({p + "post_attention_layernorm.weight", {hd}, &w.post_norm, ParamSlot::kOnes});
      t.push_back({p + "mlp.gate_proj.weight", {ffn, hd}, &w.gate_w, ParamSlot::kMatrix});
      t.push_back({p + "mlp.up_proj.weight", {ffn, hd}, &w.up_w, ParamSlot::kMatrix});
      t.push_back({p + "mlp.down_proj.weight", {hd, ffn}, &w.down_w, ParamSlot::kMatrix});
      if (c.mlp_bias) {
        t.push_back({p + "mlp.gate_proj.bias", {ffn}, &w.gate_b, ParamSlot::kZeros});
        t.push_back({p + "mlp.up_proj.bias", {ffn}, &w.up_b, ParamSlot::kZeros});
        t.push_back({p + "mlp.down_proj.bias", {hd}, &w.down_b, ParamSlot::kZeros});
      }
    }
    t.push_back({"model.norm.weight", {hd}, &final_norm, ParamSlot::kOnes});
    if (!c.tie_word_embeddings) {
      t.push_back({"lm_head.weight", {c.vocab_size, hd}, &lm_head, ParamSlot::kMatrix});
    }
    return t;
  }

  // Registers the filled slots as the named leaf parameters on the device.
  void finish(std::vector<ParamSlot>& slots) {
    params.clear();
    for (ParamSlot& s : slots) {
      *s.slot = s.slot->to(options.device, master_dtype()).contiguous().set_requires_grad(true);
      params.push_back({s.name, *s.slot});
    }
  }

  at::Tensor cast(const at::Tensor& p) const {
    if (!p.defined() || p.scalar_type() == options.dtype) {
      return p;
    }
    return p.to(options.dtype);
  }

  at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w) const {
    // HF LlamaRMSNorm: statistics in fp32, cast back, then scale by the weight.
    at::Tensor xf = x.to(acc_dtype());
    at::Tensor y = xf * at::rsqrt(xf.pow(2).mean({-1}, /*keepdim=*/true) + config.rms_norm_eps);
    return cast(w) * y.to(x.scalar_type());
  }

  // cos/sin [B, T, D] in the compute dtype, computed as ranker/core (and HF) do.
  std::pair<at::Tensor, at::Tensor> rope_tables(const at::Tensor& positions) const {
    const int64_t d = config.head_dim;
    std::vector<double> f(static_cast<size_t>(d / 2));
    for (int64_t i = 0; i < d / 2; ++i) {
      if (acc_dtype() == at::kDouble) {
        f[static_cast<size_t>(i)] = 1.0 / std::pow(config.rope_theta, 2.0 * i / d);
      } else {  // fp32 exponent, correctly rounded power, fp32 reciprocal (model.cc)
        const float e = static_cast<float>(2 * i) / static_cast<float>(d);
        const float p = static_cast<float>(std::pow(config.rope_theta, static_cast<double>(e)));
        f[static_cast<size_t>(i)] = 1.0f / p;
      }
    }
    at::Tensor inv_freq = at::tensor(f, at::kDouble).to(acc_dtype()).to(options.device);
    at::Tensor freqs = positions.to(acc_dtype()).unsqueeze(-1) * inv_freq;
    at::Tensor emb = at::cat({freqs, freqs}, -1);
    return {emb.cos().to(options.dtype), emb.sin().to(options.dtype)};
  }

  static at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
    // x [B, T, heads, D], cos/sin [B, T, D]; rotate_half(x) = cat(-x2, x1).
    const int64_t half = x.size(-1) / 2;
    at::Tensor rot = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
    return x * cos.unsqueeze(2) + rot * sin.unsqueeze(2);
  }

  at::Tensor project(const at::Tensor& h,
                     const at::Tensor& w,
                     const at::Tensor& b,
                     const at::Tensor& norm,
                     int64_t heads,
                     const at::Tensor& cos,
                     const at::Tensor& sin) const {
    at::Tensor x =
        at::linear(h, cast(w), cast(b)).view({h.size(0), h.size(1), heads, config.head_dim});
    if (norm.defined()) {
      x = rms_norm(x, norm);  // Qwen3: per-head RMSNorm before RoPE
    }
    return apply_rope(x, cos, sin);
  }

  // Masked softmax(q·kᵀ/√D)·v for one group: q [.., G·Hr, D] (rows grouped per KV head), k/v [..,
  // K, D], `mask` broadcastable to the logits viewed as [.., G, Hr, K] (true = visible).
  at::Tensor attend(const at::Tensor& q,
                    const at::Tensor& k,
                    const at::Tensor& v,
                    const at::Tensor& mask,
                    int64_t g) const {
    at::Tensor s = at::matmul(q, k.transpose(-1, -2)).to(acc_dtype()) *
                   (1.0 / std::sqrt(static_cast<double>(config.head_dim)));
    std::vector<int64_t> grouped(s.sizes().begin(), s.sizes().end() - 2);
    grouped.push_back(g);
    grouped.push_back(s.size(-2) / g);
    grouped.push_back(s.size(-1));
    s = s.view(grouped).masked_fill(mask.logical_not(), kMaskValue);
    at::Tensor p = at::softmax(s, -1).to(options.dtype).flatten(-3, -2);
    return at::matmul(p, v);
  }

  struct Masks {
    at::Tensor first;  // [B, 1, 1, H, H]
    at::Tensor mid;    // [B, 1, M-2, 1, H, 2H]
    at::Tensor last;   // [B, 1, 1, H, M·H]
  };

  Masks make_masks(const Batch& batch) const {
    const int64_t b = batch.batch_size, m = batch.num_blocks, h = batch.block_length;
    const at::Tensor& valid = batch.valid;  // [B, M, H]
    at::Tensor causal = at::ones({h, h}, valid.options()).tril();
    Masks mk;
    mk.first = causal.logical_and(valid.select(1, 0).unsqueeze(1)).view({b, 1, 1, h, h});
    at::Tensor own_mid = causal.logical_and(valid.narrow(1, 1, m - 2).unsqueeze(2));  // [B,M-2,H,H]
    at::Tensor cross_mid = valid.select(1, 0).view({b, 1, 1, h}).expand({b, m - 2, h, h});
    mk.mid = at::cat({cross_mid, own_mid}, -1).view({b, 1, m - 2, 1, h, 2 * h});
    at::Tensor own_last = causal.logical_and(valid.select(1, m - 1).unsqueeze(1));  // [B,H,H]
    at::Tensor cross_last =
        valid.narrow(1, 0, m - 1).reshape({b, 1, (m - 1) * h}).expand({b, h, (m - 1) * h});
    mk.last = at::cat({cross_last, own_last}, -1).view({b, 1, 1, h, m * h});
    return mk;
  }

  // BlockRank attention over the padded layout; q [B, T, Hq, D], k/v [B, T, Hkv, D] ->
  // [B, T, Hq·D].
  at::Tensor block_attention(const at::Tensor& q,
                             const at::Tensor& k,
                             const at::Tensor& v,
                             const Batch& batch,
                             const Masks& mk) const {
    const int64_t b = batch.batch_size, m = batch.num_blocks, h = batch.block_length;
    const int64_t hkv = config.num_kv_heads, g = config.num_heads / hkv, d = config.head_dim;
    const int64_t mm = m - 2;
    at::Tensor q6 = q.view({b, m, h, hkv, g, d});
    at::Tensor k5 = k.view({b, m, h, hkv, d});
    at::Tensor v5 = v.view({b, m, h, hkv, d});
    // Block 0: causal over itself.
    at::Tensor k0 = k5.select(1, 0).permute({0, 2, 1, 3});  // [B, Hkv, H, D]
    at::Tensor v0 = v5.select(1, 0).permute({0, 2, 1, 3});
    at::Tensor q0 = q6.select(1, 0).permute({0, 2, 3, 1, 4}).reshape({b, hkv, g * h, d});
    at::Tensor o0 = attend(q0, k0, v0, mk.first, g)  // [B, Hkv, G·H, D]
                        .view({b, hkv, g, h, d})
                        .permute({0, 3, 1, 2, 4})
                        .reshape({b, 1, h, hkv * g * d});
    // Documents: keys [instruction | own block].
    at::Tensor qm = q6.narrow(1, 1, mm).permute({0, 3, 1, 4, 2, 5}).reshape({b, hkv, mm, g * h, d});
    at::Tensor km = at::cat(
        {k0.unsqueeze(2).expand({b, hkv, mm, h, d}), k5.narrow(1, 1, mm).permute({0, 3, 1, 2, 4})},
        3);  // [B, Hkv, M-2, 2H, D]
    at::Tensor vm = at::cat(
        {v0.unsqueeze(2).expand({b, hkv, mm, h, d}), v5.narrow(1, 1, mm).permute({0, 3, 1, 2, 4})},
        3);
    at::Tensor om = attend(qm, km, vm, mk.mid, g)  // [B, Hkv, M-2, G·H, D]
                        .view({b, hkv, mm, g, h, d})
                        .permute({0, 2, 4, 1, 3, 5})
                        .reshape({b, mm, h, hkv * g * d});
    // Query block: every slot before it, causal inside.
    at::Tensor ql = q6.select(1, m - 1).permute({0, 2, 3, 1, 4}).reshape({b, hkv, g * h, d});
    at::Tensor kall = k.permute({0, 2, 1, 3});  // [B, Hkv, T, D]
    at::Tensor vall = v.permute({0, 2, 1, 3});
    at::Tensor ol = attend(ql, kall, vall, mk.last, g)
                        .view({b, hkv, g, h, d})
                        .permute({0, 3, 1, 2, 4})
                        .reshape({b, 1, h, hkv * g * d});
    return at::cat({o0, om, ol}, 1).view({b, m * h, hkv * g * d});
  }

  // Pre-softmax logits [B, Hq, R, N·H] of the signal rows of rotated q [B, T, Hq, D] over the
  // document slots of k [B, T, Hkv, D], in the accumulation dtype; pad slots masked.
  at::Tensor signal_logits(const at::Tensor& q, const at::Tensor& k, const Batch& batch) const {
    const int64_t b = batch.batch_size, m = batch.num_blocks, h = batch.block_length;
    const int64_t r = batch.signal_rows_per_example, hq = config.num_heads,
                  hkv = config.num_kv_heads, g = hq / hkv, d = config.head_dim;
    const int64_t nd = (m - 2) * h;
    at::Tensor qs = q.reshape({b * m * h, hq, d})
                        .index_select(0, batch.signal_rows)
                        .view({b, r, hkv, g, d})
                        .permute({0, 2, 3, 1, 4})
                        .reshape({b, hkv, g * r, d})
                        .to(acc_dtype());
    at::Tensor kd = k.narrow(1, h, nd).permute({0, 2, 3, 1}).to(acc_dtype());  // [B, Hkv, D, Nd]
    at::Tensor s = at::matmul(qs, kd) * (1.0 / std::sqrt(static_cast<double>(d)));
    at::Tensor doc_valid = batch.valid.narrow(1, 1, m - 2).reshape({b, 1, 1, nd});
    return s.view({b, hq, r, nd}).masked_fill(doc_valid.logical_not(), kMaskValue);
  }

  ForwardOutput forward(const Batch& batch, const ForwardOptions& fo) const {
    ForwardOutput out;
    const int64_t b = batch.batch_size, t = batch.num_blocks * batch.block_length;
    auto [cos, sin] = rope_tables(batch.positions);
    const Masks mk = make_masks(batch);
    at::Tensor x = at::embedding(cast(embed), batch.input_ids);  // [B, T, hidden]
    for (size_t l = 0; l < layers.size(); ++l) {
      const LayerParams& w = layers[l];
      const bool aux_here = static_cast<int64_t>(l) == fo.aux_layer;
      at::Tensor h = rms_norm(x, w.input_norm);
      at::Tensor q = project(h, w.q_w, w.q_b, w.q_norm, config.num_heads, cos, sin);
      at::Tensor k = project(h, w.k_w, w.k_b, w.k_norm, config.num_kv_heads, cos, sin);
      if (aux_here) {
        out.signal_logits = signal_logits(q, k, batch);
        if (!fo.lm) {
          return out;
        }
      }
      at::Tensor v = at::linear(h, cast(w.v_w), cast(w.v_b))
                         .view({b, t, config.num_kv_heads, config.head_dim});
      at::Tensor attn = block_attention(q, k, v, batch, mk);
      x = x + at::linear(attn, cast(w.o_w), cast(w.o_b));
      at::Tensor h2 = rms_norm(x, w.post_norm);
      at::Tensor act = at::silu(at::linear(h2, cast(w.gate_w), cast(w.gate_b))) *
                       at::linear(h2, cast(w.up_w), cast(w.up_b));
      x = x + at::linear(act, cast(w.down_w), cast(w.down_b));
    }
    if (fo.lm) {
      // Only the label rows go through the final norm and the LM head: [L, V], never [T, V].
      at::Tensor rows = x.reshape({b * t, config.hidden_size}).index_select(0, batch.label_rows);
      at::Tensor head = lm_head.defined() ? lm_head : embed;
      out.label_logits = at::linear(rms_norm(rows, final_norm), cast(head)).to(acc_dtype());
    }
    return out;
  }
};

TrainableModel::TrainableModel() : impl_(std::make_unique<Impl>()) {}
TrainableModel::~TrainableModel() = default;

const ModelConfig& TrainableModel::config() const {
  return impl_->config;
}
const BlockRankSettings& TrainableModel::settings() const {
  return impl_->settings;
}
BlockRankSettings& TrainableModel::mutable_settings() {
  return impl_->settings;
}
const ModelOptions& TrainableModel::options() const {
  return impl_->options;
}
const std::vector<NamedParameter>& TrainableModel::parameters() const {
  return impl_->params;
}
int64_t TrainableModel::num_parameters() const {
  int64_t n = 0;
  for (const NamedParameter& p : impl_->params) {
    n += p.tensor.numel();
  }
  return n;
}

namespace {

Status check_options(const ModelOptions& o) {
  if (o.dtype != at::kFloat && o.dtype != at::kBFloat16 && o.dtype != at::kDouble) {
    return Status::invalid_argument("training dtype must be float32, bfloat16 or float64");
  }
  return Status::ok();
}

Status check_config(const ModelConfig& c) {
  if (c.num_layers <= 0 || c.hidden_size <= 0 || c.num_heads <= 0 || c.num_kv_heads <= 0 ||
      c.num_heads % c.num_kv_heads != 0 || c.head_dim <= 0 || c.head_dim % 2 != 0 ||
      c.vocab_size <= 0 || c.intermediate_size <= 0) {
    return Status::invalid_argument("model config: inconsistent shape (layers, heads, head_dim)");
  }
  return Status::ok();
}

}  // namespace

Status TrainableModel::load(const std::string& dir,
                            const ModelOptions& options,
                            std::unique_ptr<TrainableModel>* out) {
  BLOCKRANK_RETURN_IF_ERROR(check_options(options));
  std::unique_ptr<TrainableModel> m(new TrainableModel());
  Impl& impl = *m->impl_;
  impl.options = options;
  BLOCKRANK_RETURN_IF_ERROR(read_text(dir + "/config.json", &impl.config_json));
  BLOCKRANK_ASSIGN_OR_RETURN(impl.config,
                             parse_model_config(impl.config_json, dir + "/config.json"));
  BLOCKRANK_RETURN_IF_ERROR(check_config(impl.config));
  BLOCKRANK_ASSIGN_OR_RETURN(impl.settings, load_blockrank_settings(dir, impl.config));
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  Status s = read_sharded_safetensors(dir, "model", &tensors);
  if (s.code() == StatusCode::kNotFound) {
    return Status::not_found(dir + ": no model.safetensors or model.safetensors.index.json");
  }
  BLOCKRANK_RETURN_IF_ERROR(s);
  try {
    std::vector<ParamSlot> slots = impl.table();
    std::map<std::string, at::Tensor> by_name(tensors.begin(), tensors.end());
    for (ParamSlot& slot : slots) {
      auto it = by_name.find(slot.name);
      if (it == by_name.end()) {
        return Status::not_found(dir + ": missing tensor '" + slot.name + "'");
      }
      if (it->second.sizes().vec() != slot.shape) {
        return Status::invalid_argument(dir + ": tensor '" + slot.name + "' has shape " +
                                        shape_str(it->second.sizes()) + ", config.json implies " +
                                        shape_str(slot.shape));
      }
      *slot.slot = it->second.to(impl.master_dtype());
    }
    c10::NoGradGuard no_grad;
    impl.finish(slots);
  } catch (const c10::Error& e) {
    return Status::internal(dir + ": loading weights: " + e.what_without_backtrace());
  }
  *out = std::move(m);
  return Status::ok();
}

Status TrainableModel::create_random(const ModelConfig& config,
                                     const std::string& config_json,
                                     const BlockRankSettings& settings,
                                     const ModelOptions& options,
                                     uint64_t seed,
                                     std::unique_ptr<TrainableModel>* out) {
  BLOCKRANK_RETURN_IF_ERROR(check_options(options));
  BLOCKRANK_RETURN_IF_ERROR(check_config(config));
  std::unique_ptr<TrainableModel> m(new TrainableModel());
  Impl& impl = *m->impl_;
  impl.config = config;
  impl.config_json = config_json;
  impl.settings = settings;
  impl.options = options;
  try {
    c10::NoGradGuard no_grad;
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    std::vector<ParamSlot> slots = impl.table();
    for (ParamSlot& s : slots) {
      const auto f32 = at::TensorOptions().dtype(at::kFloat);
      switch (s.init) {
        case ParamSlot::kMatrix:
          *s.slot = at::randn(s.shape, gen, f32) * 0.02;  // HF initializer_range
          break;
        case ParamSlot::kOnes:
          *s.slot = at::ones(s.shape, f32);
          break;
        case ParamSlot::kZeros:
          *s.slot = at::zeros(s.shape, f32);
          break;
      }
    }
    impl.finish(slots);
  } catch (const c10::Error& e) {
    return Status::internal(std::string("create_random: ") + e.what_without_backtrace());
  }
  *out = std::move(m);
  return Status::ok();
}

StatusOr<ForwardOutput> TrainableModel::forward(const Batch& batch,
                                                const ForwardOptions& options) const {
  if (options.aux_layer >= impl_->config.num_layers) {
    return Status::invalid_argument("aux layer " + std::to_string(options.aux_layer) +
                                    " outside [0, " + std::to_string(impl_->config.num_layers) +
                                    ")");
  }
  if (!options.lm && options.aux_layer < 0) {
    return Status::invalid_argument("forward: nothing requested");
  }
  try {
    return impl_->forward(batch, options);
  } catch (const c10::Error& e) {
    const std::string what = e.what_without_backtrace();
    if (what.find("out of memory") != std::string::npos) {
      return Status::resource_exhausted("forward: " + what);
    }
    return Status::internal("forward: " + what);
  } catch (const std::bad_alloc&) {
    return Status::resource_exhausted("forward: out of memory");
  }
}

Status TrainableModel::load_parameters(
    const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  std::map<std::string, at::Tensor> by_name(tensors.begin(), tensors.end());
  try {
    c10::NoGradGuard no_grad;
    for (NamedParameter& p : impl_->params) {
      auto it = by_name.find(p.name);
      if (it == by_name.end()) {
        return Status::not_found("missing parameter '" + p.name + "'");
      }
      if (it->second.sizes() != p.tensor.sizes()) {
        return Status::invalid_argument("parameter '" + p.name + "' has shape " +
                                        shape_str(it->second.sizes()) + ", expected " +
                                        shape_str(p.tensor.sizes()));
      }
      p.tensor.copy_(it->second);
    }
  } catch (const c10::Error& e) {
    return Status::internal(std::string("load_parameters: ") + e.what_without_backtrace());
  }
  return Status::ok();
}

Status TrainableModel::save_pretrained(const std::string& dir,
                                       c10::ScalarType dtype,
                                       int64_t max_shard_bytes) const {
  if (dtype != at::kFloat && dtype != at::kBFloat16) {
    return Status::invalid_argument("save dtype must be float32 or bfloat16");
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return Status::io_error(dir + ": cannot create: " + ec.message());
  }
  // config.json: the source text with the saved dtype (fields we do not read survive unchanged).
  nlohmann::json cj;
  try {
    cj = nlohmann::json::parse(impl_->config_json);
  } catch (const nlohmann::json::exception& e) {
    return Status::invalid_argument(std::string("config.json: ") + e.what());
  }
  const char* dtype_name = dtype == at::kFloat ? "float32" : "bfloat16";
  cj["torch_dtype"] = dtype_name;
  if (cj.contains("dtype")) {
    cj["dtype"] = dtype_name;
  }
  BLOCKRANK_RETURN_IF_ERROR(write_text_file(dir + "/config.json", cj.dump(2) + "\n"));
  const BlockRankSettings& s = impl_->settings;
  nlohmann::json bj = {{"scoring_layer", s.scoring_layer},
                       {"signal_rows", s.signal_rows},
                       {"query_position_offset", s.query_position_offset},
                       {"max_block_length", s.max_block_length},
                       {"temperature", s.temperature},
                       {"prompt_template", s.prompt_template}};
  BLOCKRANK_RETURN_IF_ERROR(write_text_file(dir + "/blockrank.json", bj.dump(2) + "\n"));
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  try {
    c10::NoGradGuard no_grad;
    for (const NamedParameter& p : impl_->params) {
      tensors.emplace_back(p.name, p.tensor.detach().to(at::kCPU, dtype).contiguous());
    }
  } catch (const c10::Error& e) {
    return Status::internal(std::string("save_pretrained: ") + e.what_without_backtrace());
  }
  return write_sharded_safetensors(dir, "model", tensors, max_shard_bytes);
}

// ---------------------------------------------------------------------------------------------------------
// Sharded safetensors
// ---------------------------------------------------------------------------------------------------------

Status write_sharded_safetensors(const std::string& dir,
                                 const std::string& stem,
                                 const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                                 int64_t max_shard_bytes) {
  int64_t total = 0;
  for (const auto& [name, t] : tensors) {
    total += static_cast<int64_t>(t.nbytes());
  }
  if (max_shard_bytes <= 0 || total <= max_shard_bytes) {
    return write_safetensors(dir + "/" + stem + ".safetensors", tensors);
  }
  // Greedy shards in parameter order; a tensor larger than the limit gets a shard of its own.
  std::vector<std::vector<std::pair<std::string, at::Tensor>>> shards(1);
  int64_t cur = 0;
  for (const auto& nt : tensors) {
    const int64_t n = static_cast<int64_t>(nt.second.nbytes());
    if (!shards.back().empty() && cur + n > max_shard_bytes) {
      shards.emplace_back();
      cur = 0;
    }
    shards.back().push_back(nt);
    cur += n;
  }
  nlohmann::json weight_map = nlohmann::json::object();
  const size_t count = shards.size();
  for (size_t i = 0; i < count; ++i) {
    char file[128];
    std::snprintf(file, sizeof(file), "%s-%05zu-of-%05zu.safetensors", stem.c_str(), i + 1, count);
    BLOCKRANK_RETURN_IF_ERROR(write_safetensors(dir + "/" + file, shards[i]));
    for (const auto& [name, t] : shards[i]) {
      weight_map[name] = file;
    }
  }
  nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  return write_text_file(dir + "/" + stem + ".safetensors.index.json", index.dump(2) + "\n");
}

Status read_sharded_safetensors(const std::string& dir,
                                const std::string& stem,
                                std::vector<std::pair<std::string, at::Tensor>>* tensors) {
  tensors->clear();
  std::vector<std::string> files;
  const std::string index_path = dir + "/" + stem + ".safetensors.index.json";
  if (fs::exists(index_path)) {
    std::string text;
    BLOCKRANK_RETURN_IF_ERROR(read_text(index_path, &text));
    try {
      nlohmann::json j = nlohmann::json::parse(text);
      for (auto it = j.at("weight_map").begin(); it != j.at("weight_map").end(); ++it) {
        const std::string f = it.value().get<std::string>();
        if (f.find('/') != std::string::npos) {
          return Status::invalid_argument(index_path + ": weight_map['" + it.key() +
                                          "'] must name a file in the directory");
        }
        if (std::find(files.begin(), files.end(), f) == files.end()) {
          files.push_back(f);
        }
      }
    } catch (const nlohmann::json::exception& e) {
      return Status::invalid_argument(index_path + ": " + e.what());
    }
  } else {
    files.push_back(stem + ".safetensors");
  }
  for (const std::string& f : files) {
    std::shared_ptr<SafetensorsFile> file;
    BLOCKRANK_RETURN_IF_ERROR(SafetensorsFile::open(dir + "/" + f, &file));
    for (const auto& [name, entry] : file->entries()) {
      BLOCKRANK_ASSIGN_OR_RETURN(at::Tensor view, file->view(name));
      tensors->emplace_back(name, view.clone());  // own the bytes; the mapping closes with `file`
    }
  }
  return Status::ok();
}

}  // namespace blockrank::training
