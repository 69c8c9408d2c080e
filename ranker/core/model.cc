// SPDX-License-Identifier: Apache-2.0
// Weight loading and the forward pass. See model.h for the attention layouts and conventions.
#include "ranker/core/model.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <tuple>
#include <utility>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>

#include "plugin/base/sha256.h"
#include "ranker/core/cuda_attention.h"
#include "ranker/core/safetensors.h"

#include <nlohmann/json.hpp>

namespace blockrank {

// ---------------------------------------------------------------------------------------------------------
// Layout helpers
// ---------------------------------------------------------------------------------------------------------

int64_t BlockLayout::num_tokens() const {
  int64_t t = 0;
  for (int64_t n : block_lengths) {
    t += n;
  }
  return t;
}

std::vector<int64_t> BlockLayout::positions() const {
  std::vector<int64_t> pos;
  pos.reserve(static_cast<size_t>(num_tokens()));
  const int64_t l0 = block_lengths.front();
  const size_t m = block_lengths.size();
  for (size_t b = 0; b < m; ++b) {
    // Instruction from 0; every document from L0 (shared, so scores do not depend on document
    // order); the query block from a fixed offset with no L0 added (the released checkpoint's
    // convention).
    const int64_t start = b == 0 ? 0 : (b + 1 < m ? l0 : query_position_offset);
    for (int64_t i = 0; i < block_lengths[b]; ++i) {
      pos.push_back(start + i);
    }
  }
  return pos;
}

Status BlockLayout::validate(int64_t num_tokens_expected, int64_t signal_rows) const {
  if (block_lengths.size() < 3) {
    return Status::invalid_argument(
        "blocks: need at least 3 blocks (instruction, >= 1 document, query), got " +
        std::to_string(block_lengths.size()));
  }
  for (size_t b = 0; b < block_lengths.size(); ++b) {
    if (block_lengths[b] < 1) {
      return Status::invalid_argument("blocks: block " + std::to_string(b) + " is empty");
    }
  }
  if (num_tokens() != num_tokens_expected) {
    return Status::invalid_argument("blocks: lengths sum to " + std::to_string(num_tokens()) +
                                    " but there are " + std::to_string(num_tokens_expected) +
                                    " input ids");
  }
  if (block_lengths.back() < signal_rows) {
    return Status::invalid_argument(
        "blocks: the query block has " + std::to_string(block_lengths.back()) +
        " tokens, fewer than the " + std::to_string(signal_rows) + " signal rows");
  }
  if (query_position_offset < 0) {
    return Status::invalid_argument("query_position_offset must be >= 0");
  }
  return Status::ok();
}

at::Tensor blockrank_visibility(const BlockLayout& layout, c10::Device device) {
  const int64_t t = layout.num_tokens();
  const int64_t l0 = layout.block_lengths.front();
  at::Tensor vis = at::zeros({t, t}, at::TensorOptions().dtype(at::kBool));
  int64_t start = 0;
  const size_t m = layout.block_lengths.size();
  for (size_t b = 0; b < m; ++b) {
    const int64_t n = layout.block_lengths[b];
    vis.narrow(0, start, n).narrow(1, start, n).copy_(at::ones({n, n}, at::kBool).tril());
    if (b > 0 && b + 1 < m) {
      vis.narrow(0, start, n).narrow(1, 0, l0).fill_(true);  // documents see the whole instruction
    } else if (b + 1 == m) {
      vis.narrow(0, start, n)
          .narrow(1, 0, start)
          .fill_(true);  // the query block sees everything before it
    }
    start += n;
  }
  return vis.to(device);
}

at::Tensor document_scores_from_logits(const at::Tensor& doc_logits,
                                       const std::vector<int64_t>& doc_lengths) {
  // Softmax over the document columns only (α' of the paper, normalised over T_docs), in fp32.
  at::Tensor p = at::softmax(doc_logits.to(at::kFloat), -1);
  at::Tensor per_token =
      p.mean(at::IntArrayRef{0, 1});  // mean over heads and signal rows -> [T_docs]
  std::vector<int64_t> owner;
  owner.reserve(static_cast<size_t>(per_token.size(0)));
  for (size_t d = 0; d < doc_lengths.size(); ++d) {
    owner.insert(owner.end(), static_cast<size_t>(doc_lengths[d]), static_cast<int64_t>(d));
  }
  at::Tensor idx = at::tensor(owner, at::kLong).to(per_token.device());
  return at::zeros({static_cast<int64_t>(doc_lengths.size())}, per_token.options())
      .index_add_(0, idx, per_token);  // sum per document
}

// ---------------------------------------------------------------------------------------------------------
// Weights
// ---------------------------------------------------------------------------------------------------------

namespace {

using internal::env_switch;

struct LayerWeights {
  at::Tensor input_norm, post_norm;
  at::Tensor q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b;
  at::Tensor q_norm, k_norm;  // Qwen3
  at::Tensor gate_w, gate_b, up_w, up_b, down_w, down_b;
  // CUDA bf16 only (merge_for_cuda): [q; k; v] and [gate; up] stacked along the output dim so each
  // is one GEMM; the separate tensors above are then views into these (no extra memory). There
  // gate_up_w also carries post_norm's weight in its columns (W diag(w)) and post_norm is all
  // ones, so the MLP's norm reduces to a row scale (fused_layers).
  at::Tensor qkv_w, qkv_b, gate_up_w, gate_up_b;
};

// Opens the checkpoint's shards and hands out tensors converted to the compute dtype/device,
// checking shapes.
class WeightSource {
 public:
  Status open(const std::string& dir) {
    dir_ = dir;
    const std::string index_path = dir + "/model.safetensors.index.json";
    std::ifstream index(index_path);
    if (index) {
      nlohmann::json j;
      try {
        index >> j;
      } catch (const nlohmann::json::exception& e) {
        return Status::invalid_argument(index_path + ": not valid JSON: " + e.what());
      }
      if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object()) {
        return Status::invalid_argument(index_path + ": missing object field 'weight_map'");
      }
      for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
        if (!it.value().is_string()) {
          return Status::invalid_argument(index_path + ": weight_map['" + it.key() +
                                          "'] must be a file name");
        }
        const std::string file = it.value().get<std::string>();
        if (file.find('/') != std::string::npos) {
          return Status::invalid_argument(index_path + ": weight_map['" + it.key() +
                                          "'] must name a file in " + "the model directory");
        }
        if (!files_.count(file)) {
          std::shared_ptr<SafetensorsFile> f;
          BLOCKRANK_RETURN_IF_ERROR(SafetensorsFile::open(dir + "/" + file, &f));
          files_[file] = f;
        }
        owner_[it.key()] = file;
      }
      source_ = index_path;
      return Status::ok();
    }
    const std::string single = dir + "/model.safetensors";
    std::shared_ptr<SafetensorsFile> f;
    Status s = SafetensorsFile::open(single, &f);
    if (s.code() == StatusCode::kNotFound) {
      return Status::not_found(dir + ": no model.safetensors or model.safetensors.index.json");
    }
    BLOCKRANK_RETURN_IF_ERROR(s);
    files_["model.safetensors"] = f;
    for (const auto& [name, entry] : f->entries()) {
      owner_[name] = "model.safetensors";
    }
    source_ = single;
    return Status::ok();
  }

  bool contains(const std::string& name) const { return owner_.count(name) != 0; }

  // A cheap digest of the checkpoint for the KV-cache fingerprint: the index (when sharded), then
  // per file (in name order) its name, size, the header and four 64 KiB samples of the data
  // (start, thirds, end). Reading every byte of a 14 GB checkpoint would cost seconds per start;
  // headers and sizes alone would not tell a fine-tuned checkpoint from its base (same shapes),
  // whereas fine-tuning changes essentially every weight, so the samples do.
  Status digest(std::string* out) const {
    Sha256 h;
    const std::string index_path = dir_ + "/model.safetensors.index.json";
    if (source_ == index_path) {
      std::ifstream in(index_path, std::ios::binary);
      std::stringstream ss;
      ss << in.rdbuf();
      const std::string text = ss.str();
      h.update(text.data(), text.size());
    }
    std::vector<char> buf;
    for (const auto& [name, file] : files_) {
      std::ifstream in(file->path(), std::ios::binary | std::ios::ate);
      if (!in) {
        return Status::io_error(file->path() + ": cannot reopen to digest");
      }
      const uint64_t size = static_cast<uint64_t>(in.tellg());
      h.update(name.data(), name.size());
      h.update(&size, sizeof(size));
      uint64_t header_len = 0;
      in.seekg(0);
      in.read(reinterpret_cast<char*>(&header_len), sizeof(header_len));
      const uint64_t head = std::min<uint64_t>(size, 8 + header_len);
      constexpr uint64_t kSample = 64 * 1024;
      std::vector<std::pair<uint64_t, uint64_t>> spans = {{0, head}};
      const uint64_t data = size > head ? size - head : 0;
      for (uint64_t i = 0; i < 4 && data > 0; ++i) {
        const uint64_t at = head + (data > kSample ? (data - kSample) * i / 3 : 0);
        spans.emplace_back(at, std::min(kSample, size - at));
      }
      for (const auto& [begin, len] : spans) {
        buf.resize(static_cast<size_t>(len));
        in.clear();
        in.seekg(static_cast<std::streamoff>(begin));
        in.read(buf.data(), static_cast<std::streamsize>(len));
        if (!in) {
          return Status::io_error(file->path() + ": short read while digesting");
        }
        h.update(buf.data(), buf.size());
      }
    }
    *out = "safetensors-sampled:" + digest_hex(h.finish());
    return Status::ok();
  }

  // The tensor `name` with exactly `shape`, converted to dtype/device.
  Status get(const std::string& name,
             const std::vector<int64_t>& shape,
             const LoadOptions& opt,
             at::Tensor* out) {
    auto it = owner_.find(name);
    if (it == owner_.end()) {
      return Status::not_found(source_ + ": missing tensor '" + name + "'");
    }
    const auto& file = files_.at(it->second);
    if (!file->contains(name)) {
      return Status::not_found(file->path() + ": missing tensor '" + name +
                               "' (listed in the index)");
    }
    BLOCKRANK_ASSIGN_OR_RETURN(at::Tensor view, file->view(name));
    if (view.sizes().vec() != shape) {
      return Status::invalid_argument(file->path() + ": tensor '" + name + "' has shape " +
                                      shape_str(view.sizes().vec()) + ", config.json implies " +
                                      shape_str(shape));
    }
    const at::ScalarType st = view.scalar_type();
    if (st != at::kFloat && st != at::kBFloat16 && st != at::kHalf) {
      return Status::unimplemented(file->path() + ": tensor '" + name + "' has unsupported dtype " +
                                   file->entries().at(name).dtype);
    }
    // One copy into the compute dtype/device; a view of the mapping when nothing changes (fp32 on
    // CPU). fp16 -> fp32 goes through the CPU cast kernel, which 1.13 has (unlike fp16 matmul).
    *out = view.to(opt.device, opt.dtype);
    return Status::ok();
  }

 private:
  static std::string shape_str(const std::vector<int64_t>& s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); ++i) {
      r += (i ? ", " : "") + std::to_string(s[i]);
    }
    return r + "]";
  }

  std::string dir_;
  std::string source_;
  std::map<std::string, std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::string> owner_;
};

// HF's masked-logit value for BlockRank (0.7 * fp32 min): finite, so a row with no visible key
// would give a uniform softmax rather than NaN; here every row sees at least itself, so masked
// entries become exact zeros.
constexpr float kMaskValue = -0.7f * 3.4028234663852886e38f;

// One attention segment: query rows [row_begin, row_end) attend to the concatenation of
// `key_ranges`, with `mask` [rows, keys] (bool, true = visible).
struct Segment {
  int64_t row_begin = 0;
  int64_t row_end = 0;
  std::vector<std::pair<int64_t, int64_t>> key_ranges;  // (begin, length)
  at::Tensor mask;
};

std::vector<Segment> causal_plan(int64_t t, c10::Device device) {
  Segment s;
  s.row_begin = 0;
  s.row_end = t;
  s.key_ranges = {{0, t}};
  s.mask = at::ones({t, t}, at::kBool).tril().to(device);
  return {s};
}

// The ragged BlockRank plan: one segment per block, each over exactly the keys it may see.
std::vector<Segment> blockrank_plan(const BlockLayout& layout, c10::Device device) {
  std::vector<Segment> plan;
  const int64_t l0 = layout.block_lengths.front();
  const size_t m = layout.block_lengths.size();
  int64_t start = 0;
  for (size_t b = 0; b < m; ++b) {
    const int64_t n = layout.block_lengths[b];
    Segment s;
    s.row_begin = start;
    s.row_end = start + n;
    at::Tensor own = at::ones({n, n}, at::kBool).tril();  // causal inside the block
    if (b == 0) {
      s.key_ranges = {{0, n}};
      s.mask = own;
    } else if (b + 1 < m) {
      s.key_ranges = {{0, l0}, {start, n}};  // the whole instruction, then the document itself
      s.mask = at::cat({at::ones({n, l0}, at::kBool), own}, 1);
    } else {
      s.key_ranges = {{0, start + n}};  // everything before it, then itself causally
      s.mask = at::cat({at::ones({n, start}, at::kBool), own}, 1);
    }
    s.mask = s.mask.to(device);
    plan.push_back(std::move(s));
    start += n;
  }
  return plan;
}

at::Tensor gather_keys(const at::Tensor& x,
                       const std::vector<std::pair<int64_t, int64_t>>& ranges) {
  if (ranges.size() == 1) {
    return x.narrow(0, ranges[0].first, ranges[0].second);
  }
  std::vector<at::Tensor> parts;
  for (const auto& [b, n] : ranges) {
    parts.push_back(x.narrow(0, b, n));
  }
  return at::cat(parts, 0);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------------------

struct Model::Impl {
  ModelConfig config;
  BlockRankSettings settings;
  LoadOptions options;
  at::Tensor embed;    // [V, hidden]
  at::Tensor lm_head;  // [V, hidden] (the embedding when tied)
  at::Tensor final_norm;
  std::vector<LayerWeights> layers;
  at::Tensor inv_freq;  // [D/2] fp32 on device
  std::string weights_digest;
  // merge_for_cuda on a device where the attention kernels' lane order pays: every o_w has its
  // columns in that order (o_lane_index), so the O projection takes the attention output in it;
  // fused_layers gets it from the kernels directly, the ATen paths through o_input().
  bool o_lane_order = false;
  at::Tensor o_lane_index;

  // The attention output `natural` [..., Hq * D] (each head's columns in order) as the O
  // projection's weights expect it.
  at::Tensor o_input(const at::Tensor& natural) const {
    return o_lane_order ? natural.index_select(-1, o_lane_index) : natural;
  }

  Status load_weights(const std::string& dir);
  void compute_inv_freq();
  void merge_for_cuda();
  bool fused_layers_usable() const;
  // What fused_layers needs besides the embeddings, built by its caller's `prepare` while the GPU
  // already runs layer 0's norm and Q|K|V GEMM (neither needs positions or a plan).
  struct FusedInputs {
    at::Tensor positions;          ///< int64 [T] on the device
    internal::CudaBlockPlan plan;  ///< the layout's plan (make_cuda_block_plan)
    at::Tensor rope_table;         ///< set by fused_layers: cuda_rope_table of rows [c, T)
  };
  at::Tensor fused_layers(at::Tensor x,
                          int64_t num_layers,
                          const std::function<Status(FusedInputs*)>& prepare,
                          FusedInputs* inputs,
                          const at::Tensor& past,
                          int64_t prefix_tokens,
                          at::Tensor* present) const;
  at::Tensor grouped_layers(const std::vector<int64_t>& ids,
                            const BlockLayout& layout,
                            int64_t num_layers,
                            const at::Tensor& cos,
                            const at::Tensor& sin,
                            const PrefixKv* prefix,
                            int64_t* first_row) const;

  at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w) const {
    // HF LlamaRMSNorm: variance and normalisation in fp32, cast back, then scale by the weight.
    at::Tensor xf = x.to(at::kFloat);
    at::Tensor y = xf * at::rsqrt(xf.pow(2).mean({-1}, /*keepdim=*/true) + config.rms_norm_eps);
    return w * y.to(x.scalar_type());
  }

  // cos/sin [T, D] in the compute dtype for the given positions, computed as HF does: fp32 product
  // of the position and inv_freq (one rounding), cos/sin in fp32, duplicated halves, then cast.
  std::pair<at::Tensor, at::Tensor> rope_tables(const at::Tensor& positions) const {
    at::Tensor freqs = positions.to(at::kFloat).unsqueeze(1) * inv_freq.unsqueeze(0);
    at::Tensor emb = at::cat({freqs, freqs}, -1);
    return {emb.cos().to(options.dtype), emb.sin().to(options.dtype)};
  }

  static at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
    // x [T, H, D]; rotate_half(x) = cat(-x2, x1).
    const int64_t half = x.size(-1) / 2;
    at::Tensor rot = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
    return x * cos.unsqueeze(1) + rot * sin.unsqueeze(1);
  }

  // Q or K projection of `h` rows, reshaped [T, heads, D], q/k-normed (Qwen3) and rotated.
  at::Tensor project(const at::Tensor& h,
                     const at::Tensor& w,
                     const at::Tensor& b,
                     const at::Tensor& norm,
                     int64_t heads,
                     const at::Tensor& cos,
                     const at::Tensor& sin) const {
    at::Tensor x = at::linear(h, w, b).view({h.size(0), heads, config.head_dim});
    if (norm.defined()) {
      x = rms_norm(x, norm);  // Qwen3: per-head RMSNorm over head_dim, before RoPE
    }
    return apply_rope(x, cos, sin);
  }

  // Pre-softmax logits [Hq, Tq, Tk] (fp32, scaled by 1/sqrt(D)) of q [Tq, Hq, D] against k [Tk,
  // Hkv, D]. Query heads are grouped per KV head (head h uses KV head h / G, as HF's repeat_kv), so
  // K is not copied.
  at::Tensor attention_logits(const at::Tensor& q, const at::Tensor& k) const {
    const int64_t tq = q.size(0), hkv = config.num_kv_heads, g = config.num_heads / hkv,
                  d = config.head_dim;
    at::Tensor qg = q.view({tq, hkv, g, d}).permute({1, 2, 0, 3}).reshape({hkv, g * tq, d});
    at::Tensor s = at::bmm(qg, k.permute({1, 2, 0}));  // [Hkv, G*Tq, Tk]
    s = s.to(at::kFloat) * (1.0 / std::sqrt(static_cast<double>(d)));
    return s.view({hkv * g, tq, k.size(0)});
  }

  // Attention output [Tq, Hq*D] for one segment; `probs_out` (optional) receives [Hq, Tq, Tk] fp32.
  at::Tensor attend(const at::Tensor& q,
                    const at::Tensor& k,
                    const at::Tensor& v,
                    const at::Tensor& mask,
                    at::Tensor* probs_out) const {
    const int64_t tq = q.size(0), tk = k.size(0), hkv = config.num_kv_heads,
                  g = config.num_heads / hkv;
    at::Tensor s = attention_logits(q, k);
    s = s.masked_fill(mask.logical_not().unsqueeze(0), kMaskValue);
    at::Tensor p = at::softmax(s, -1);  // fp32
    if (probs_out != nullptr) {
      *probs_out = p;
    }
    at::Tensor o = at::bmm(p.to(v.scalar_type()).view({hkv, g * tq, tk}), v.permute({1, 0, 2}));
    return o.view({hkv, g, tq, config.head_dim})
        .permute({2, 0, 1, 3})
        .reshape({tq, config.num_heads * config.head_dim});
  }

  struct LayerCapture {
    at::Tensor* attention = nullptr;  // [Hq, T, T] to fill
    at::Tensor* scores = nullptr;
    const BlockLayout* layout = nullptr;
    int64_t signal_rows = 2;
    at::Tensor* keys = nullptr;    // [T, Hkv, D] rotated K, for the decoding KV cache
    at::Tensor* values = nullptr;  // [T, Hkv, D]
    // Set (with an empty segment plan) when the CUDA kernels run the ragged attention in one
    // launch.
    const internal::CudaBlockPlan* cuda_plan = nullptr;
  };

  at::Tensor layer_forward(const LayerWeights& w,
                           const at::Tensor& x,
                           const at::Tensor& cos,
                           const at::Tensor& sin,
                           const std::vector<Segment>& plan,
                           const LayerCapture& cap) const {
    const int64_t t = x.size(0);
    at::Tensor h = rms_norm(x, w.input_norm);
    at::Tensor q = project(h, w.q_w, w.q_b, w.q_norm, config.num_heads, cos, sin);
    at::Tensor k = project(h, w.k_w, w.k_b, w.k_norm, config.num_kv_heads, cos, sin);
    at::Tensor v = at::linear(h, w.v_w, w.v_b).view({t, config.num_kv_heads, config.head_dim});
    if (cap.keys != nullptr) {
      *cap.keys = k;
      *cap.values = v;
    }
    at::Tensor out = at::empty({t, config.num_heads * config.head_dim}, x.options());
    for (const Segment& seg : plan) {
      const int64_t rows = seg.row_end - seg.row_begin;
      at::Tensor probs;
      at::Tensor o =
          attend(q.narrow(0, seg.row_begin, rows), gather_keys(k, seg.key_ranges),
                 gather_keys(v, seg.key_ranges), seg.mask, cap.attention ? &probs : nullptr);
      out.narrow(0, seg.row_begin, rows).copy_(o);
      if (cap.attention != nullptr) {
        int64_t col = 0;
        for (const auto& [kb, kn] : seg.key_ranges) {
          cap.attention->narrow(1, seg.row_begin, rows)
              .narrow(2, kb, kn)
              .copy_(probs.narrow(2, col, kn));
          col += kn;
        }
      }
    }
    if (cap.cuda_plan != nullptr) {
      internal::throw_if_error(
          internal::cuda_block_attention(q, k, v, *cap.cuda_plan, &out, nullptr, o_lane_order));
    } else {
      out = o_input(out);
    }
    if (cap.scores != nullptr) {
      *cap.scores = layout_scores(q, k, *cap.layout, cap.signal_rows);
    }
    return mlp_block(w, x + at::linear(out, w.o_w, w.o_b));
  }

  // The post-attention half of a decoder layer: y + MLP(norm(y)).
  at::Tensor mlp_block(const LayerWeights& w, const at::Tensor& y) const {
    at::Tensor h2 = rms_norm(y, w.post_norm);
    at::Tensor act = at::silu(at::linear(h2, w.gate_w, w.gate_b)) * at::linear(h2, w.up_w, w.up_b);
    return y + at::linear(act, w.down_w, w.down_b);
  }

  // One decoding step of one layer for a single new token x [1, hidden] at the rotary tables
  // cos/sin [1, D]: appends its K/V to the cache and attends to the whole cache. The token is the
  // last of the query block, which sees every earlier token (§2.1), so no mask is needed.
  at::Tensor decode_layer(const LayerWeights& w,
                          const at::Tensor& x,
                          const at::Tensor& cos,
                          const at::Tensor& sin,
                          at::Tensor* keys,
                          at::Tensor* values) const {
    at::Tensor h = rms_norm(x, w.input_norm);
    at::Tensor q = project(h, w.q_w, w.q_b, w.q_norm, config.num_heads, cos, sin);
    at::Tensor k = project(h, w.k_w, w.k_b, w.k_norm, config.num_kv_heads, cos, sin);
    at::Tensor v = at::linear(h, w.v_w, w.v_b).view({1, config.num_kv_heads, config.head_dim});
    *keys = at::cat({*keys, k}, 0);
    *values = at::cat({*values, v}, 0);
    at::Tensor all =
        at::ones({1, keys->size(0)}, at::TensorOptions().dtype(at::kBool)).to(options.device);
    at::Tensor o = attend(q, *keys, *values, all, nullptr);
    return mlp_block(w, x + at::linear(o_input(o), w.o_w, w.o_b));
  }

  // Greedy next token from the last row of the residual stream x [T, hidden].
  int64_t next_token(const at::Tensor& x) const {
    at::Tensor last = rms_norm(x.narrow(0, x.size(0) - 1, 1), final_norm);
    return at::linear(last, lm_head).to(at::kFloat).argmax(-1).item<int64_t>();
  }

  // Scores from rotated q [T, Hq, D] and k [T, Hkv, D]: signal rows = last R tokens; document
  // columns only.
  at::Tensor layout_scores(const at::Tensor& q,
                           const at::Tensor& k,
                           const BlockLayout& layout,
                           int64_t r) const {
    const int64_t t = q.size(0), l0 = layout.block_lengths.front(),
                  lq = layout.block_lengths.back();
    std::vector<int64_t> docs(layout.block_lengths.begin() + 1, layout.block_lengths.end() - 1);
    at::Tensor logits = attention_logits(q.narrow(0, t - r, r), k.narrow(0, l0, t - lq - l0));
    return document_scores_from_logits(logits, docs);
  }

  at::Tensor embed_ids(const std::vector<int64_t>& ids) const {
    const at::Tensor idx =
        internal::upload_without_waiting(at::tensor(ids, at::kLong), options.device);
    return at::embedding(embed, idx);
  }

  Status check_ids(const std::vector<int64_t>& ids) const {
    if (ids.empty()) {
      return Status::invalid_argument("input_ids is empty");
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] < 0 || ids[i] >= config.vocab_size) {
        return Status::invalid_argument(
            "input_ids[" + std::to_string(i) + "] = " + std::to_string(ids[i]) +
            " is outside the vocabulary [0, " + std::to_string(config.vocab_size) + ")");
      }
    }
    return Status::ok();
  }

  ForwardResult run(const std::vector<int64_t>& ids,
                    const std::vector<int64_t>& positions,
                    const std::vector<Segment>& plan,
                    const BlockLayout* layout,
                    const ForwardRequest& req) const {
    ForwardResult r;
    const int64_t t = static_cast<int64_t>(ids.size());
    at::Tensor pos = at::tensor(positions, at::kLong).to(options.device);
    auto [cos, sin] = rope_tables(pos);
    at::Tensor x = embed_ids(ids);
    if (req.hidden) {
      r.hidden.push_back(x.to(at::kFloat));
    }
    for (size_t l = 0; l < layers.size(); ++l) {
      LayerCapture cap;
      at::Tensor attn, scores;
      if (req.attention) {
        attn = at::zeros({config.num_heads, t, t}, x.options().dtype(at::kFloat));
        cap.attention = &attn;
      }
      if (req.scores && layout != nullptr) {
        cap.scores = &scores;
        cap.layout = layout;
        cap.signal_rows = req.signal_rows;
      }
      x = layer_forward(layers[l], x, cos, sin, plan, cap);
      if (req.attention) {
        r.attention.push_back(attn);
      }
      if (cap.scores != nullptr) {
        r.scores.push_back(scores);
      }
      if (req.hidden && l + 1 < layers.size()) {
        r.hidden.push_back(x.to(at::kFloat));
      }
    }
    if (req.hidden || req.logits) {
      at::Tensor normed = rms_norm(x, final_norm);
      if (req.hidden) {
        r.hidden.push_back(normed.to(at::kFloat));
      }
      if (req.logits) {
        r.logits = at::linear(normed, lm_head).to(at::kFloat);
      }
    }
    return r;
  }
};

// ---------------------------------------------------------------------------------------------------------
// CUDA bf16 fast path of the layer loop (score_documents): merged QKV and gate|up GEMMs, fused
// RMSNorm(+residual), RoPE and SwiGLU kernels (kernels/layer_ops), the ragged attention kernel.
// Same math and bf16 rounding points as layer_forward; it exists because on the GPU the ~15 ATen
// elementwise passes per layer cost about a third of the pass (docs/BENCHMARKS.md).
// ---------------------------------------------------------------------------------------------------------

void Model::Impl::merge_for_cuda() {
  if (!internal::cuda_layer_ops_available() || !options.device.is_cuda() ||
      options.dtype != at::kBFloat16 || config.qk_norm) {
    return;
  }
  const int64_t qd = config.num_heads * config.head_dim;
  const int64_t kvd = config.num_kv_heads * config.head_dim, ffn = config.intermediate_size;
  // The attention output in the kernels' lane order (16-byte stores without a transpose), W_o's
  // columns permuted to match: the same y = attn W_oᵀ. BLOCKRANK_ATTENTION_LANE_ORDER=0: natural
  // order (A/B runs). Permuted once: a second call must not undo it (the permutation is its own
  // inverse).
  static const bool lane_order_on = env_switch("BLOCKRANK_ATTENTION_LANE_ORDER", true);
  const bool permute_o = !o_lane_order && lane_order_on &&
                         internal::cuda_lane_order_usable(options.device, config.head_dim);
  if (permute_o) {
    o_lane_order = true;
    o_lane_index = internal::lane_order_index(config.num_heads, options.device);
  }
  for (LayerWeights& w : layers) {
    w.qkv_w = at::cat({w.q_w, w.k_w, w.v_w}, 0);
    w.q_w = w.qkv_w.narrow(0, 0, qd);
    w.k_w = w.qkv_w.narrow(0, qd, kvd);
    w.v_w = w.qkv_w.narrow(0, qd + kvd, kvd);
    if (w.q_b.defined()) {
      w.qkv_b = at::cat({w.q_b, w.k_b, w.v_b}, 0);
      w.q_b = w.qkv_b.narrow(0, 0, qd);
      w.k_b = w.qkv_b.narrow(0, qd, kvd);
      w.v_b = w.qkv_b.narrow(0, qd + kvd, kvd);
    }
    if (permute_o) {
      w.o_w = w.o_w.index_select(1, o_lane_index);  // columns in the attention's lane order
    }
    w.gate_up_w = at::cat({w.gate_w, w.up_w}, 0);
    // RMSNorm(x) Wᵀ = (x rstd) (W diag(w))ᵀ: the norm weight goes into gate|up's columns (one
    // bf16 rounding of each product, in place of the rounding of w * bf16(x rstd)), which lets
    // the SwiGLU GEMM read the residual stream and apply rstd per row. Every path that uses these
    // weights (fused_layers, layer_forward) then normalises with the unit weight.
    w.gate_up_w.mul_(w.post_norm.unsqueeze(0));
    w.post_norm = at::ones_like(w.post_norm);
    w.gate_w = w.gate_up_w.narrow(0, 0, ffn);
    w.up_w = w.gate_up_w.narrow(0, ffn, ffn);
    if (w.gate_b.defined()) {
      w.gate_up_b = at::cat({w.gate_b, w.up_b}, 0);
      w.gate_b = w.gate_up_b.narrow(0, 0, ffn);
      w.up_b = w.gate_up_b.narrow(0, ffn, ffn);
    }
  }
}

bool Model::Impl::fused_layers_usable() const {
  // BLOCKRANK_FUSED_LAYERS=0 keeps the ATen elementwise steps (A/B runs of the GPU benchmark).
  static const bool enabled = env_switch("BLOCKRANK_FUSED_LAYERS", true);
  return enabled && !layers.empty() && layers.front().qkv_w.defined() &&
         config.hidden_size % 8 == 0 && config.intermediate_size % 8 == 0;
}

// Runs layers [0, num_layers) on the embeddings x of rows [c, T) (c = prefix_tokens: rows of block
// 0 whose K/V `past` [num_layers, 2, Hkv, c, D] supplies; 0 when nothing is cached) and returns the
// input norm of layer `num_layers` for those rows (what score_documents needs at l*). `prepare`
// fills inputs->positions and inputs->plan; it is called once, right after layer 0's Q|K|V GEMM
// is enqueued (before anything when num_layers is 0 or the RoPE GEMM is on), so the host builds
// them while the GPU runs the first norm and GEMM; inputs->rope_table is set then too. The residual
// adds happen in the O and down GEMMs (beta = 1) where the projection has no bias, else in the
// next norm kernel, so the stream is read once per norm. With a cached prefix the QKV GEMM writes
// rows [c, T) of a [T, qd + 2 kvd] buffer whose first c rows get the cached K/V (Q zeroed) each
// layer, and `plan` has no work items for rows below c, so the attention kernel runs unchanged on
// the full token range. `present` (optional) receives block 0's K/V [num_layers, 2, Hkv, L0, D].
at::Tensor Model::Impl::fused_layers(at::Tensor x,
                                     int64_t num_layers,
                                     const std::function<Status(FusedInputs*)>& prepare,
                                     FusedInputs* inputs,
                                     const at::Tensor& past,
                                     int64_t prefix_tokens,
                                     at::Tensor* present) const {
  using internal::throw_if_error;
  const int64_t c = past.defined() ? past.size(3) : 0;
  const int64_t n = x.size(0), t = c + n, hq = config.num_heads, hkv = config.num_kv_heads,
                d = config.head_dim;
  const int64_t qd = hq * d, kvd = hkv * d, l0 = prefix_tokens;
  x = x.contiguous();
  const at::Tensor& positions = inputs->positions;
  const internal::CudaBlockPlan& plan = inputs->plan;
  at::Tensor row_positions;
  at::Tensor qkv_full;
  if (c > 0) {
    qkv_full = at::empty({t, qd + 2 * kvd}, x.options());
    qkv_full.narrow(0, 0, c).narrow(1, 0, qd).zero_();
  }
  if (present != nullptr) {
    *present = at::empty({num_layers, 2, hkv, l0, d}, x.options());
  }
  // BLOCKRANK_PROFILE_LAYERS=1: GPU time per stage on stderr (bench/gpu/NOTES.md).
  static const bool profile = env_switch("BLOCKRANK_PROFILE_LAYERS", false);
  // The O and down projections accumulate into the residual stream x in the GEMM (cuBLAS beta =
  // 1: one fp32 add, one bf16 rounding), so the norm after each reads x once and writes only its
  // output (4 passes over [T, hidden] -> 2). BLOCKRANK_GEMM_RESIDUAL=0: separate GEMM output,
  // added in the norm kernel (A/B runs of the GPU benchmark).
  static const bool gemm_residual = env_switch("BLOCKRANK_GEMM_RESIDUAL", true);
  // The gate|up GEMM with SiLU·up in its epilogue (kernels/swiglu_gemm, Hopper; used where
  // cuda_swiglu_gemm_usable) instead of cuBLAS + silu_mul. End to end on the H200
  // (docs/BENCHMARKS.md, "SwiGLU GEMM on by default"): Qwen2.5-0.5B shape N = 100 13.1-13.6
  // -> 12.1-12.2 ms, N = 500 62.0-62.7 -> 57.6-57.7 ms; Mistral-7B shape N = 100 181.5-183.0 ->
  // 178.0-180.8 ms, N = 500 889.8-890.9 -> 892.2-893.1 ms (+0.3%). BLOCKRANK_SWIGLU_GEMM=0: cuBLAS
  // + silu_mul (A/B runs).
  static const bool swiglu_gemm = env_switch("BLOCKRANK_SWIGLU_GEMM", true);
  // BLOCKRANK_ROPE_GEMM=1: the Q|K|V GEMM with RoPE in its epilogue (kernels/swiglu_gemm's
  // rope_gemm; head_dim 128, no QKV bias, Hopper) instead of cuBLAS + the RoPE kernel, from a
  // (cos, sin) table built once for all layers. Off by default: on the H200 the pass is slower
  // with it. Mistral-7B shape N = 100, alternated processes (bench/gpu/NOTES.md, session 14):
  // Q|K|V stage 21.8-22.0 ms against cuBLAS 19.3-19.4 + RoPE 1.46, pass 172.6-172.8 vs
  // 170.1-170.2 ms. At N = 6,144 the kernel runs ~12% behind cuBLAS even with its epilogue
  // under the next tile's main loop (18.4 waves of 128 x 256 tiles are part of it).
  static const bool rope_gemm_on = env_switch("BLOCKRANK_ROPE_GEMM", false);
  // The MLP's RMSNorm as a row scale in the SwiGLU GEMM: its weight is in gate_up_w
  // (merge_for_cuda), so a read-only kernel computes each row's rstd and the GEMM reads the
  // residual stream x itself; the normalised copy of x is never written. Needs the residual
  // already in x (the O GEMM's beta = 1). H200, Mistral-7B shape N = 100 (docs/BENCHMARKS.md,
  // session 15): rms_norm stage 2.39 -> 1.90 ms, gate|up +0.1-0.2%. BLOCKRANK_MLP_ROW_SCALE=0:
  // the norm kernel with the unit weight, then the GEMM on its output (A/B runs).
  static const bool mlp_row_scale_on = env_switch("BLOCKRANK_MLP_ROW_SCALE", true);
  const bool rope_gemm = rope_gemm_on && num_layers > 0 && !layers.front().qkv_b.defined() &&
                         internal::cuda_rope_gemm_usable(x, layers.front().qkv_w, qd + kvd, d);
  // Q's RoPE inside the attention (the persistent kernel rotates each Q tile in shared memory
  // as it lands; cuda_block_attention's q_rope): the RoPE kernel then rotates only K, 1,024 of
  // the 5,120 columns it rewrote at the Mistral-7B shape. BLOCKRANK_ATTENTION_Q_ROPE=0: Q and K
  // by the RoPE kernel (A/B runs).
  static const bool q_rope_on = env_switch("BLOCKRANK_ATTENTION_Q_ROPE", true);
  const bool q_rope =
      q_rope_on && !rope_gemm && internal::cuda_persistent_attention_usable(x.device(), d);
  internal::CudaQRope q_rope_args;
  at::Tensor& cos_sin = inputs->rope_table;
  bool prepared = false;
  const auto ensure_prepared = [&] {
    if (prepared) {
      return;
    }
    prepared = true;
    throw_if_error(prepare(inputs));
    if (positions.size(0) != t || plan.num_tokens != t) {
      throw_if_error(Status::internal("fused_layers: prepare() built positions or a plan for " +
                                      std::to_string(plan.num_tokens) + " tokens, not " +
                                      std::to_string(t)));
    }
    row_positions = positions.narrow(0, c, n).contiguous();
    // The (cos, sin) table of the rows, built once for all layers: the RoPE kernel reads it with
    // 16-byte vectors (68.6 vs 80.8 us per layer at Mistral N = 100, layer_ops_bench), rope_gemm
    // in its epilogue.
    throw_if_error(internal::cuda_rope_table(row_positions, inv_freq, &cos_sin));
    if (q_rope) {
      q_rope_args.cos_sin = cos_sin;
      q_rope_args.positions = row_positions;
      q_rope_args.inv_freq = inv_freq;
      q_rope_args.row0 = c;
    }
  };
  if (rope_gemm || num_layers == 0) {
    ensure_prepared();
  }
  // The columns the RoPE kernel rotates: Q and K, or K alone.
  const int64_t rope_col0 = q_rope ? qd : 0, rope_heads = q_rope ? hkv : hq + hkv;
  internal::CudaStageTimer timer(profile);
  at::Tensor pending, h;  // pending: the last MLP output, not yet added to x
  for (int64_t l = 0; l < num_layers; ++l) {
    const LayerWeights& w = layers[static_cast<size_t>(l)];
    throw_if_error(internal::cuda_rms_norm(x, pending, w.input_norm, config.rms_norm_eps, &h));
    timer.mark("rms_norm");
    at::Tensor qkv;  // [T, qd + 2 kvd]
    if (c > 0) {
      at::Tensor rows = qkv_full.narrow(0, c, n);
      if (rope_gemm) {
        throw_if_error(internal::cuda_rope_gemm(h, w.qkv_w, cos_sin, qd + kvd, &rows));
      } else if (w.qkv_b.defined()) {
        at::addmm_out(rows, w.qkv_b, h, w.qkv_w.t());
      } else {
        at::mm_out(rows, h, w.qkv_w.t());
      }
      const at::Tensor cached = past.select(0, l);  // [2, Hkv, c, D]
      qkv_full.narrow(0, 0, c)
          .narrow(1, qd, kvd)
          .view({c, hkv, d})
          .copy_(cached.select(0, 0).permute({1, 0, 2}));
      qkv_full.narrow(0, 0, c)
          .narrow(1, qd + kvd, kvd)
          .view({c, hkv, d})
          .copy_(cached.select(0, 1).permute({1, 0, 2}));
      timer.mark("qkv_gemm");
      ensure_prepared();
      if (!rope_gemm) {
        throw_if_error(internal::cuda_rope_inplace(
            rows.narrow(1, rope_col0, qd + kvd - rope_col0).view({n, rope_heads, d}), row_positions,
            inv_freq, cos_sin));
      }
      qkv = qkv_full;
    } else if (rope_gemm) {
      throw_if_error(internal::cuda_rope_gemm(h, w.qkv_w, cos_sin, qd + kvd, &qkv));
      timer.mark("qkv_gemm");
    } else {
      qkv = at::linear(h, w.qkv_w, w.qkv_b);
      timer.mark("qkv_gemm");
      ensure_prepared();
      throw_if_error(internal::cuda_rope_inplace(
          qkv.narrow(1, rope_col0, qd + kvd - rope_col0).view({t, rope_heads, d}), positions,
          inv_freq, cos_sin));
    }
    timer.mark("rope");
    if (present != nullptr) {
      at::Tensor dst = present->select(0, l);
      dst.select(0, 0).copy_(
          qkv.narrow(0, 0, l0).narrow(1, qd, kvd).view({l0, hkv, d}).permute({1, 0, 2}));
      dst.select(0, 1).copy_(
          qkv.narrow(0, 0, l0).narrow(1, qd + kvd, kvd).view({l0, hkv, d}).permute({1, 0, 2}));
    }
    at::Tensor attn;
    throw_if_error(internal::cuda_block_attention(
        qkv.narrow(1, 0, qd).view({t, hq, d}), qkv.narrow(1, qd, kvd).view({t, hkv, d}),
        qkv.narrow(1, qd + kvd, kvd).view({t, hkv, d}), plan, &attn, nullptr, o_lane_order,
        q_rope ? &q_rope_args : nullptr));
    timer.mark("attention");
    const at::Tensor a = c > 0 ? attn.narrow(0, c, n) : attn;
    const bool swiglu =
        swiglu_gemm && !w.gate_up_b.defined() && internal::cuda_swiglu_gemm_usable(x, w.gate_up_w);
    at::Tensor rstd;  // defined: the MLP's norm is a row scale of the SwiGLU GEMM (h unused)
    if (gemm_residual && !w.o_b.defined()) {
      x.addmm_(a, w.o_w.t());  // x += a W_oᵀ in the GEMM's epilogue (beta = 1)
      timer.mark("o_gemm");
      if (swiglu && mlp_row_scale_on) {
        throw_if_error(internal::cuda_rms_rstd(x, config.rms_norm_eps, &rstd));
      } else {
        throw_if_error(
            internal::cuda_rms_norm(x, at::Tensor(), w.post_norm, config.rms_norm_eps, &h));
      }
    } else {
      const at::Tensor o = at::linear(a, w.o_w, w.o_b);
      timer.mark("o_gemm");
      throw_if_error(internal::cuda_rms_norm(x, o, w.post_norm, config.rms_norm_eps, &h));
    }
    timer.mark("rms_norm");
    at::Tensor act;
    if (swiglu) {
      throw_if_error(rstd.defined() ? internal::cuda_swiglu_gemm(x, w.gate_up_w, &act, rstd)
                                    : internal::cuda_swiglu_gemm(h, w.gate_up_w, &act));
      timer.mark("gate_up_gemm+silu");
    } else {
      const at::Tensor gate_up = at::linear(h, w.gate_up_w, w.gate_up_b);
      timer.mark("gate_up_gemm");
      throw_if_error(internal::cuda_silu_mul(gate_up, &act));
      timer.mark("silu_mul");
    }
    if (gemm_residual && !w.down_b.defined()) {
      x.addmm_(act, w.down_w.t());
      pending = at::Tensor();
    } else {
      pending = at::linear(act, w.down_w, w.down_b);
    }
    timer.mark("down_gemm");
  }
  const LayerWeights& next = layers[static_cast<size_t>(num_layers)];
  throw_if_error(internal::cuda_rms_norm(x, pending, next.input_norm, config.rms_norm_eps, &h));
  timer.mark("rms_norm");
  if (profile) {
    std::fprintf(stderr, "fused_layers: %lld layers, %lld rows\n%s",
                 static_cast<long long>(num_layers), static_cast<long long>(n),
                 timer.report().c_str());
  }
  return h;
}

// The ATen layer loop of score_documents in row groups (see PrefixKv): without `prefix` one group
// [0, T) (the plain ragged forward); with it the groups [c, split), [split, L0), [L0, T), c being
// the cached tokens. Each group runs layers [0, num_layers) over its rows, its Q against the K/V of
// every row up to its end (earlier groups' K/V kept per layer, starting from the cached past).
// Returns the input norm of layer `num_layers` for the last group's rows, whose first row goes to
// *first_row. prefix->present (when asked) gets block 0's K/V.
at::Tensor Model::Impl::grouped_layers(const std::vector<int64_t>& ids,
                                       const BlockLayout& layout,
                                       int64_t num_layers,
                                       const at::Tensor& cos,
                                       const at::Tensor& sin,
                                       const PrefixKv* prefix,
                                       int64_t* first_row) const {
  const int64_t t = static_cast<int64_t>(ids.size()), l0 = layout.block_lengths.front();
  const int64_t hkv = config.num_kv_heads, d = config.head_dim;
  const int64_t c = prefix != nullptr && prefix->past.defined() ? prefix->past.size(3) : 0;
  std::vector<int64_t> bounds = {c};
  if (prefix != nullptr) {
    if (prefix->split > c && prefix->split < l0) {
      bounds.push_back(prefix->split);
    }
    if (l0 > c) {
      bounds.push_back(l0);
    }
  }
  bounds.push_back(t);
  std::vector<at::Tensor> keys(static_cast<size_t>(num_layers)),
      values(static_cast<size_t>(num_layers));
  if (c > 0) {
    for (int64_t l = 0; l < num_layers; ++l) {
      keys[static_cast<size_t>(l)] = prefix->past.select(0, l).select(0, 0).permute({1, 0, 2});
      values[static_cast<size_t>(l)] = prefix->past.select(0, l).select(0, 1).permute({1, 0, 2});
    }
  }
  const std::vector<Segment> full = blockrank_plan(layout, options.device);
  at::Tensor x;
  for (size_t g = 0; g + 1 < bounds.size(); ++g) {
    const int64_t g0 = bounds[g], g1 = bounds[g + 1], n = g1 - g0;
    const bool last = g + 2 == bounds.size();
    std::vector<Segment> segs;
    for (const Segment& seg : full) {
      if (seg.row_begin >= g0 && seg.row_end <= g1) {
        segs.push_back(seg);
      } else if (seg.row_begin == 0 && g1 <= l0) {
        // Part of block 0: rows [g0, g1) see keys [0, row] (causal at absolute positions).
        Segment part;
        part.row_begin = g0;
        part.row_end = g1;
        part.key_ranges = {{0, g1}};
        part.mask = at::ones({n, g1}, at::kBool).tril(/*diagonal=*/g0).to(options.device);
        segs.push_back(std::move(part));
      }
    }
    const std::vector<int64_t> group_ids(ids.begin() + g0, ids.begin() + g1);
    x = embed_ids(group_ids);
    const at::Tensor gcos = cos.narrow(0, g0, n), gsin = sin.narrow(0, g0, n);
    for (int64_t l = 0; l < num_layers; ++l) {
      const LayerWeights& w = layers[static_cast<size_t>(l)];
      at::Tensor h = rms_norm(x, w.input_norm);
      at::Tensor q = project(h, w.q_w, w.q_b, w.q_norm, config.num_heads, gcos, gsin);
      at::Tensor k = project(h, w.k_w, w.k_b, w.k_norm, hkv, gcos, gsin);
      at::Tensor v = at::linear(h, w.v_w, w.v_b).view({n, hkv, d});
      at::Tensor& k_all = keys[static_cast<size_t>(l)];
      at::Tensor& v_all = values[static_cast<size_t>(l)];
      k_all = k_all.defined() ? at::cat({k_all, k}, 0) : k;
      v_all = v_all.defined() ? at::cat({v_all, v}, 0) : v;
      at::Tensor out = at::empty({n, config.num_heads * d}, x.options());
      for (const Segment& seg : segs) {
        const int64_t rows = seg.row_end - seg.row_begin;
        out.narrow(0, seg.row_begin - g0, rows)
            .copy_(attend(q.narrow(0, seg.row_begin - g0, rows), gather_keys(k_all, seg.key_ranges),
                          gather_keys(v_all, seg.key_ranges), seg.mask, nullptr));
      }
      x = mlp_block(w, x + at::linear(o_input(out), w.o_w, w.o_b));
    }
    if (g1 == l0 && prefix != nullptr && prefix->present != nullptr && num_layers > 0) {
      std::vector<at::Tensor> per_layer;
      for (int64_t l = 0; l < num_layers; ++l) {
        per_layer.push_back(at::stack({keys[static_cast<size_t>(l)].narrow(0, 0, l0),
                                       values[static_cast<size_t>(l)].narrow(0, 0, l0)},
                                      0));  // [2, L0, Hkv, D]
      }
      *prefix->present = at::stack(per_layer, 0).permute({0, 1, 3, 2, 4}).contiguous();
    }
    if (last) {
      *first_row = g0;
    }
  }
  return rms_norm(x, layers[static_cast<size_t>(num_layers)].input_norm);
}

void Model::Impl::compute_inv_freq() {
  // HF: inv_freq = 1 / theta ** (arange(0, D, 2).float() / D), all in fp32. The exponent is an fp32
  // quotient; the power is evaluated in double and rounded once to fp32 (what a correctly rounded
  // powf returns); the reciprocal is an fp32 division. The fixture generator checks this equals
  // HF's buffer bit for bit.
  const int64_t d = config.head_dim;
  std::vector<float> f(static_cast<size_t>(d / 2));
  for (int64_t i = 0; i < d / 2; ++i) {
    const float e = static_cast<float>(2 * i) / static_cast<float>(d);
    const float p = static_cast<float>(std::pow(config.rope_theta, static_cast<double>(e)));
    f[static_cast<size_t>(i)] = 1.0f / p;
  }
  inv_freq = at::tensor(f, at::kFloat).to(options.device);
}

Status Model::Impl::load_weights(const std::string& dir) {
  WeightSource src;
  BLOCKRANK_RETURN_IF_ERROR(src.open(dir));
  BLOCKRANK_RETURN_IF_ERROR(src.digest(&weights_digest));
  const ModelConfig& c = config;
  const int64_t hd = c.hidden_size, qd = c.num_heads * c.head_dim,
                kvd = c.num_kv_heads * c.head_dim;
  const int64_t ffn = c.intermediate_size;
  BLOCKRANK_RETURN_IF_ERROR(
      src.get("model.embed_tokens.weight", {c.vocab_size, hd}, options, &embed));
  BLOCKRANK_RETURN_IF_ERROR(src.get("model.norm.weight", {hd}, options, &final_norm));
  if (src.contains("lm_head.weight") && !c.tie_word_embeddings) {
    BLOCKRANK_RETURN_IF_ERROR(src.get("lm_head.weight", {c.vocab_size, hd}, options, &lm_head));
  } else if (c.tie_word_embeddings) {
    lm_head = embed;  // tied: save_pretrained omits lm_head.weight
  } else {
    return Status::not_found(
        dir + ": missing tensor 'lm_head.weight' (config.json has tie_word_embeddings=false)");
  }
  layers.resize(static_cast<size_t>(c.num_layers));
  for (int64_t i = 0; i < c.num_layers; ++i) {
    LayerWeights& w = layers[static_cast<size_t>(i)];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    auto get = [&](const std::string& name, std::vector<int64_t> shape, at::Tensor* out) {
      return src.get(p + name, shape, options, out);
    };
    BLOCKRANK_RETURN_IF_ERROR(get("input_layernorm.weight", {hd}, &w.input_norm));
    BLOCKRANK_RETURN_IF_ERROR(get("post_attention_layernorm.weight", {hd}, &w.post_norm));
    BLOCKRANK_RETURN_IF_ERROR(get("self_attn.q_proj.weight", {qd, hd}, &w.q_w));
    BLOCKRANK_RETURN_IF_ERROR(get("self_attn.k_proj.weight", {kvd, hd}, &w.k_w));
    BLOCKRANK_RETURN_IF_ERROR(get("self_attn.v_proj.weight", {kvd, hd}, &w.v_w));
    BLOCKRANK_RETURN_IF_ERROR(get("self_attn.o_proj.weight", {hd, qd}, &w.o_w));
    if (c.qkv_bias) {
      BLOCKRANK_RETURN_IF_ERROR(get("self_attn.q_proj.bias", {qd}, &w.q_b));
      BLOCKRANK_RETURN_IF_ERROR(get("self_attn.k_proj.bias", {kvd}, &w.k_b));
      BLOCKRANK_RETURN_IF_ERROR(get("self_attn.v_proj.bias", {kvd}, &w.v_b));
    }
    if (c.o_bias) {
      BLOCKRANK_RETURN_IF_ERROR(get("self_attn.o_proj.bias", {hd}, &w.o_b));
    }
    if (c.qk_norm) {
      BLOCKRANK_RETURN_IF_ERROR(get("self_attn.q_norm.weight", {c.head_dim}, &w.q_norm));
      BLOCKRANK_RETURN_IF_ERROR(get("self_attn.k_norm.weight", {c.head_dim}, &w.k_norm));
    }
    BLOCKRANK_RETURN_IF_ERROR(get("mlp.gate_proj.weight", {ffn, hd}, &w.gate_w));
    BLOCKRANK_RETURN_IF_ERROR(get("mlp.up_proj.weight", {ffn, hd}, &w.up_w));
    BLOCKRANK_RETURN_IF_ERROR(get("mlp.down_proj.weight", {hd, ffn}, &w.down_w));
    if (c.mlp_bias) {
      BLOCKRANK_RETURN_IF_ERROR(get("mlp.gate_proj.bias", {ffn}, &w.gate_b));
      BLOCKRANK_RETURN_IF_ERROR(get("mlp.up_proj.bias", {ffn}, &w.up_b));
      BLOCKRANK_RETURN_IF_ERROR(get("mlp.down_proj.bias", {hd}, &w.down_b));
    }
  }
  return Status::ok();
}

Model::Model() : impl_(std::make_unique<Impl>()) {}
Model::~Model() = default;

const ModelConfig& Model::config() const {
  return impl_->config;
}
const BlockRankSettings& Model::settings() const {
  return impl_->settings;
}
const LoadOptions& Model::options() const {
  return impl_->options;
}
const std::string& Model::weights_digest() const {
  return impl_->weights_digest;
}
bool Model::uses_fused_layers() const {
  const Impl& m = *impl_;
  return internal::cuda_kernels_usable(m.options.device, m.options.dtype, m.config.head_dim,
                                       m.config.num_heads, m.config.num_kv_heads) &&
         m.fused_layers_usable();
}

Status Model::load(const std::string& dir,
                   const LoadOptions& options,
                   std::unique_ptr<Model>* out) {
  if (options.dtype != at::kFloat && options.dtype != at::kBFloat16 && options.dtype != at::kHalf) {
    return Status::invalid_argument("compute dtype must be float32, bfloat16 or float16");
  }
  std::unique_ptr<Model> m(new Model());
  m->impl_->options = options;
  BLOCKRANK_ASSIGN_OR_RETURN(m->impl_->config, load_model_config(dir));
  BLOCKRANK_ASSIGN_OR_RETURN(m->impl_->settings, load_blockrank_settings(dir, m->impl_->config));
  try {
    c10::InferenceMode guard;
    BLOCKRANK_RETURN_IF_ERROR(m->impl_->load_weights(dir));
    m->impl_->compute_inv_freq();
    m->impl_->merge_for_cuda();
  } catch (const c10::Error& e) {
    return Status::internal(dir + ": loading weights: " + e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    return Status::resource_exhausted(dir + ": out of memory while loading weights");
  }
  *out = std::move(m);
  return Status::ok();
}

Status Model::create_random(const ModelConfig& config,
                            const BlockRankSettings& settings,
                            const LoadOptions& options,
                            uint64_t seed,
                            std::unique_ptr<Model>* out) {
  if (config.num_layers <= 0 || config.hidden_size <= 0 || config.num_heads <= 0 ||
      config.num_kv_heads <= 0 || config.num_heads % config.num_kv_heads != 0 ||
      config.head_dim <= 0 || config.head_dim % 2 != 0 ||
      settings.scoring_layer >= config.num_layers) {
    return Status::invalid_argument("create_random: inconsistent config");
  }
  std::unique_ptr<Model> m(new Model());
  Impl& impl = *m->impl_;
  impl.config = config;
  impl.settings = settings;
  impl.options = options;
  try {
    c10::InferenceMode guard;
    at::manual_seed(seed);
    const auto opt = at::TensorOptions().dtype(options.dtype).device(options.device);
    // Drawn in fp32 on the target device (a 7B model drawn on the CPU takes minutes), then cast.
    const auto f32 = at::TensorOptions().dtype(at::kFloat).device(options.device);
    auto mat = [&](int64_t rows, int64_t cols) {
      return (at::randn({rows, cols}, f32) / std::sqrt(static_cast<double>(cols))).to(opt);
    };
    auto vec = [&](int64_t n, bool bias) {
      return bias ? (at::randn({n}, at::kFloat) * 0.02).to(opt) : at::Tensor();
    };
    const int64_t hd = config.hidden_size, qd = config.num_heads * config.head_dim;
    const int64_t kvd = config.num_kv_heads * config.head_dim, ffn = config.intermediate_size;
    impl.embed = at::randn({config.vocab_size, hd}, f32).to(opt);
    impl.lm_head = config.tie_word_embeddings ? impl.embed : mat(config.vocab_size, hd);
    impl.final_norm = at::ones({hd}, opt);
    impl.layers.resize(static_cast<size_t>(config.num_layers));
    for (LayerWeights& w : impl.layers) {
      w.input_norm = at::ones({hd}, opt);
      w.post_norm = at::ones({hd}, opt);
      w.q_w = mat(qd, hd);
      w.k_w = mat(kvd, hd);
      w.v_w = mat(kvd, hd);
      w.o_w = mat(hd, qd);
      w.q_b = vec(qd, config.qkv_bias);
      w.k_b = vec(kvd, config.qkv_bias);
      w.v_b = vec(kvd, config.qkv_bias);
      w.o_b = vec(hd, config.o_bias);
      if (config.qk_norm) {
        w.q_norm = at::ones({config.head_dim}, opt);
        w.k_norm = at::ones({config.head_dim}, opt);
      }
      w.gate_w = mat(ffn, hd);
      w.up_w = mat(ffn, hd);
      w.down_w = mat(hd, ffn);
      w.gate_b = vec(ffn, config.mlp_bias);
      w.up_b = vec(ffn, config.mlp_bias);
      w.down_b = vec(hd, config.mlp_bias);
    }
    impl.compute_inv_freq();
    impl.merge_for_cuda();
    impl.weights_digest =
        "random:" +
        sha256_hex("seed=" + std::to_string(seed) + ";arch=" + architecture_name(config.arch) +
                   ";vocab=" + std::to_string(config.vocab_size) +
                   ";hidden=" + std::to_string(config.hidden_size) +
                   ";ffn=" + std::to_string(config.intermediate_size) +
                   ";layers=" + std::to_string(config.num_layers) + ";heads=" +
                   std::to_string(config.num_heads) + "/" + std::to_string(config.num_kv_heads) +
                   ";head_dim=" + std::to_string(config.head_dim) +
                   ";bias=" + std::to_string(config.qkv_bias) + std::to_string(config.o_bias) +
                   std::to_string(config.mlp_bias) + ";qk_norm=" + std::to_string(config.qk_norm) +
                   ";tied=" + std::to_string(config.tie_word_embeddings) +
                   ";device=" + options.device.str());  // randn differs per device
  } catch (const c10::Error& e) {
    return Status::internal(std::string("create_random: ") + e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    return Status::resource_exhausted("create_random: out of memory");
  }
  *out = std::move(m);
  return Status::ok();
}

StatusOr<ForwardResult> Model::forward(const std::vector<int64_t>& ids,
                                       const BlockLayout* layout,
                                       const ForwardRequest& req) const {
  BLOCKRANK_RETURN_IF_ERROR(impl_->check_ids(ids));
  const int64_t t = static_cast<int64_t>(ids.size());
  if (layout != nullptr) {
    BLOCKRANK_RETURN_IF_ERROR(layout->validate(t, req.scores ? req.signal_rows : 0));
  } else if (impl_->config.sliding_window && t > *impl_->config.sliding_window) {
    return Status::unimplemented("causal sequence of " + std::to_string(t) +
                                 " tokens exceeds sliding_window " +
                                 std::to_string(*impl_->config.sliding_window));
  }
  try {
    c10::InferenceMode guard;
    std::vector<int64_t> positions;
    std::vector<Segment> plan;
    if (layout != nullptr) {
      positions = layout->positions();
      plan = blockrank_plan(*layout, impl_->options.device);
    } else {
      for (int64_t i = 0; i < t; ++i) {
        positions.push_back(i);
      }
      plan = causal_plan(t, impl_->options.device);
    }
    return impl_->run(ids, positions, plan, layout, req);
  } catch (const c10::Error& e) {
    return Status::internal(std::string("forward: ") + e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    return Status::resource_exhausted("forward: out of memory");
  }
}

StatusOr<ForwardResult> Model::forward_dense(const std::vector<int64_t>& ids,
                                             const std::vector<int64_t>& positions,
                                             const at::Tensor& visible,
                                             const BlockLayout* layout,
                                             const ForwardRequest& req) const {
  BLOCKRANK_RETURN_IF_ERROR(impl_->check_ids(ids));
  const int64_t t = static_cast<int64_t>(ids.size());
  if (static_cast<int64_t>(positions.size()) != t || visible.dim() != 2 || visible.size(0) != t ||
      visible.size(1) != t) {
    return Status::invalid_argument(
        "forward_dense: positions must have T entries and visible must be [T, T]");
  }
  try {
    c10::InferenceMode guard;
    Segment s;
    s.row_begin = 0;
    s.row_end = t;
    s.key_ranges = {{0, t}};
    s.mask = visible.to(impl_->options.device, at::kBool);
    return impl_->run(ids, positions, {s}, layout, req);
  } catch (const c10::Error& e) {
    return Status::internal(std::string("forward_dense: ") + e.what_without_backtrace());
  }
}

StatusOr<std::vector<float>> Model::score_documents(const std::vector<int64_t>& ids,
                                                    const BlockLayout& layout,
                                                    int64_t layer,
                                                    int64_t signal_rows,
                                                    const PrefixKv* prefix) const {
  BLOCKRANK_RETURN_IF_ERROR(impl_->check_ids(ids));
  const int64_t t = static_cast<int64_t>(ids.size());
  BLOCKRANK_RETURN_IF_ERROR(layout.validate(t, signal_rows));
  if (layer < 0 || layer >= impl_->config.num_layers) {
    return Status::invalid_argument("scoring layer " + std::to_string(layer) + " outside [0, " +
                                    std::to_string(impl_->config.num_layers) + ")");
  }
  const Impl& m = *impl_;
  const int64_t l0 = layout.block_lengths.front(), lq = layout.block_lengths.back();
  if (layer == 0) {
    prefix = nullptr;  // layer 0 scores from the embeddings: block 0 contributes nothing
  }
  int64_t cached = 0;
  if (prefix != nullptr && prefix->past.defined()) {
    const at::Tensor& p = prefix->past;
    if (p.dim() != 5 || p.size(0) != layer || p.size(1) != 2 ||
        p.size(2) != m.config.num_kv_heads || p.size(3) > l0 || p.size(4) != m.config.head_dim) {
      return Status::invalid_argument("prefix K/V must be [" + std::to_string(layer) + ", 2, " +
                                      std::to_string(m.config.num_kv_heads) +
                                      ", <= " + std::to_string(l0) + ", " +
                                      std::to_string(m.config.head_dim) + "]");
    }
    // "cuda" (no index) names the current device, while a tensor always carries one ("cuda:0").
    const c10::Device want = m.options.device;
    const bool same_device = p.device().type() == want.type() &&
                             (!want.has_index() || p.device().index() == want.index());
    if (p.scalar_type() != m.options.dtype || !same_device) {
      return Status::invalid_argument("prefix K/V must have the model's dtype and device");
    }
    cached = p.size(3);
  }
  at::Tensor* present = prefix != nullptr && cached < l0 ? prefix->present : nullptr;
  // BLOCKRANK_PROFILE_LAYERS=1 also splits the whole call (CUDA): GPU time per phase around the
  // layer loop, and the host's wall time to the first launch and to the returned scores.
  static const bool profile = env_switch("BLOCKRANK_PROFILE_LAYERS", false);
  const auto wall0 = std::chrono::steady_clock::now();
  const auto ms_since = [&wall0]() {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - wall0)
        .count();
  };
  // prepare()'s status, so that a plan error inside fused_layers (which throws) keeps its code.
  Status prepare_status;
  try {
    c10::InferenceMode guard;
    internal::CudaStageTimer phases(profile && m.options.device.is_cuda());
    double host_loop_enqueued = 0;
    // On CUDA in bf16 the attention and the scoring run as the kernels of kernels/ (one launch per
    // layer for all blocks, no per-block masks); elsewhere as ragged ATen segments.
    const bool use_kernels =
        internal::cuda_kernels_usable(m.options.device, m.options.dtype, m.config.head_dim,
                                      m.config.num_heads, m.config.num_kv_heads);
    const bool fused = use_kernels && m.fused_layers_usable();
    double host_uploaded = 0, host_planned = 0;
    // Positions from pinned memory without waiting on CUDA: on the fused path this runs after
    // layer 0's first GEMM is enqueued, where a pageable copy would wait for it.
    const auto upload_positions = [&] {
      at::Tensor dev = internal::upload_without_waiting(at::tensor(layout.positions(), at::kLong),
                                                        m.options.device);
      host_uploaded = profile ? ms_since() : 0.0;
      return dev;
    };
    // The unfused kernel loop has no prefix support: with a cached past or a K/V to return it
    // falls back to the ATen row groups (correct, slower; only reached with
    // BLOCKRANK_FUSED_LAYERS=0 or Qwen3's q/k norms on CUDA).
    const bool prefix_used = cached > 0 || present != nullptr;
    const auto build_plan = [&](internal::CudaBlockPlan* plan) -> Status {
      // The plan's two knobs for A/B runs: BLOCKRANK_SPLIT_KEYS, the query block's split-K piece
      // length (a multiple of 64; by default auto_split_keys() of the prompt, or
      // split_keys_beside_persistent() where the persistent attention kernel runs), and
      // BLOCKRANK_ATTENTION_LPT=0, the grouped items in document order instead of longest first.
      static const int64_t split_keys = [] {
        const char* v = std::getenv("BLOCKRANK_SPLIT_KEYS");
        return v != nullptr && std::atoll(v) >= 64 ? std::atoll(v) : internal::kDefaultSplitKeys;
      }();
      static const bool longest_first = env_switch("BLOCKRANK_ATTENTION_LPT", true);
      const Status st = internal::make_cuda_block_plan(
          layout, m.options.device, split_keys, plan, /*skip_rows=*/fused ? cached : 0,
          longest_first,
          /*persistent_kv_heads=*/m.config.head_dim == 128 ? m.config.num_kv_heads : 0,
          /*persistent_heads=*/m.config.num_heads);
      host_planned = profile ? ms_since() : 0.0;
      return st;
    };
    Impl::FusedInputs in;
    const at::Tensor& pos = in.positions;
    const internal::CudaBlockPlan& cuda_plan = in.plan;
    // The fused path rotates with the RoPE kernel (bit-identical to apply_rope) and needs none of
    // rope_tables' bf16 cos/sin tensors (fused_layers builds its own packed table).
    at::Tensor cos, sin;
    if (!fused) {
      in.positions = upload_positions();
      std::tie(cos, sin) = m.rope_tables(pos);
      if (use_kernels) {
        BLOCKRANK_RETURN_IF_ERROR(build_plan(&in.plan));
      }
    }
    const LayerWeights& w = m.layers[static_cast<size_t>(layer)];
    at::Tensor h;
    int64_t row0 = 0;  // h holds rows [row0, T)
    double host_embedded = 0;
    if (fused) {
      // Embedding, layer 0's norm and Q|K|V GEMM go to the GPU first; fused_layers then asks for
      // the positions and the plan, which the host builds while the GPU runs those (~1 ms at the
      // Mistral-7B shape, N = 100, against ~0.2 ms of host work that used to come first).
      std::vector<int64_t> rows(ids.begin() + cached, ids.end());
      at::Tensor x0 = m.embed_ids(rows);
      phases.mark("prep+embed");
      host_embedded = profile ? ms_since() : 0.0;
      h = m.fused_layers(
          x0, layer,
          [&](Impl::FusedInputs* inputs) -> Status {
            inputs->positions = upload_positions();
            prepare_status = build_plan(&inputs->plan);
            return prepare_status;
          },
          &in, cached > 0 ? prefix->past : at::Tensor(), l0, present);
      phases.mark("layer loop");
      host_loop_enqueued = profile ? ms_since() : 0.0;
      row0 = cached;
    } else if (use_kernels && !prefix_used) {
      Impl::LayerCapture cap;
      cap.cuda_plan = &cuda_plan;
      at::Tensor x = m.embed_ids(ids);
      for (int64_t l = 0; l < layer; ++l) {
        x = m.layer_forward(m.layers[static_cast<size_t>(l)], x, cos, sin, {}, cap);
      }
      h = m.rms_norm(x, w.input_norm);
    } else {
      h = m.grouped_layers(ids, layout, layer, cos, sin, prefix, &row0);
    }
    // Layer l*: only the norm, Q for the signal rows and K for the document tokens (§4.1, §9.11).
    const int64_t tdoc = t - l0 - lq;
    at::Tensor q, k;
    if (fused) {  // no q/k norms here (fused_layers_usable)
      // RoPE from fused_layers' (cos, sin) table of rows [row0, T).
      const int64_t d = m.config.head_dim;
      const int64_t q_row = t - signal_rows;
      q = at::linear(h.narrow(0, q_row - row0, signal_rows), w.q_w, w.q_b)
              .view({signal_rows, m.config.num_heads, d});
      BLOCKRANK_RETURN_IF_ERROR(
          internal::cuda_rope_inplace(q, pos.narrow(0, q_row, signal_rows), m.inv_freq,
                                      in.rope_table.narrow(0, q_row - row0, signal_rows)));
      k = at::linear(h.narrow(0, l0 - row0, tdoc), w.k_w, w.k_b)
              .view({tdoc, m.config.num_kv_heads, d});
      BLOCKRANK_RETURN_IF_ERROR(internal::cuda_rope_inplace(
          k, pos.narrow(0, l0, tdoc), m.inv_freq, in.rope_table.narrow(0, l0 - row0, tdoc)));
    } else {
      q = m.project(h.narrow(0, t - signal_rows - row0, signal_rows), w.q_w, w.q_b, w.q_norm,
                    m.config.num_heads, cos.narrow(0, t - signal_rows, signal_rows),
                    sin.narrow(0, t - signal_rows, signal_rows));
      k = m.project(h.narrow(0, l0 - row0, tdoc), w.k_w, w.k_b, w.k_norm, m.config.num_kv_heads,
                    cos.narrow(0, l0, tdoc), sin.narrow(0, l0, tdoc));
    }
    std::vector<int64_t> docs(layout.block_lengths.begin() + 1, layout.block_lengths.end() - 1);
    phases.mark("l* q/k");
    at::Tensor s;
    if (use_kernels) {
      BLOCKRANK_RETURN_IF_ERROR(internal::cuda_document_scores(q, k, cuda_plan, &s));
    } else {
      s = document_scores_from_logits(m.attention_logits(q, k), docs);
    }
    phases.mark("scores");
    const double host_enqueued = profile ? ms_since() : 0.0;
    s = s.to(at::kCPU).contiguous();
    if (profile && m.options.device.is_cuda()) {
      std::fprintf(stderr,
                   "score_documents: host uploaded the positions at %.3f ms, the plan at %.3f ms, "
                   "enqueued the embedding at %.3f ms (the fused path: first), done enqueuing the "
                   "layer loop at %.3f ms (its stage report waits for the GPU), everything at "
                   "%.3f ms; wall %.3f ms; GPU phases:\n%s",
                   host_uploaded, host_planned, host_embedded, host_loop_enqueued, host_enqueued,
                   ms_since(), phases.report().c_str());
    }
    const float* p = s.data_ptr<float>();
    return std::vector<float>(p, p + s.numel());
  } catch (const c10::Error& e) {
    if (!prepare_status.is_ok()) {
      return prepare_status;
    }
    return Status::internal(std::string("score_documents: ") + e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    return Status::resource_exhausted("score_documents: out of memory");
  }
}

StatusOr<GenerateResult> Model::generate(const std::vector<int64_t>& ids,
                                         const BlockLayout& layout,
                                         const GenerateRequest& req) const {
  BLOCKRANK_RETURN_IF_ERROR(impl_->check_ids(ids));
  const int64_t t = static_cast<int64_t>(ids.size());
  const bool want_scores = req.scoring_layer >= 0;
  BLOCKRANK_RETURN_IF_ERROR(layout.validate(t, want_scores ? req.signal_rows : 0));
  if (req.scoring_layer >= impl_->config.num_layers) {
    return Status::invalid_argument("scoring layer " + std::to_string(req.scoring_layer) +
                                    " outside [0, " + std::to_string(impl_->config.num_layers) +
                                    ")");
  }
  if (req.max_new_tokens < 0) {
    return Status::invalid_argument("max_new_tokens must be >= 0");
  }
  try {
    c10::InferenceMode guard;
    const Impl& m = *impl_;
    GenerateResult r;
    at::Tensor pos = at::tensor(layout.positions(), at::kLong).to(m.options.device);
    auto [cos, sin] = m.rope_tables(pos);
    const std::vector<Segment> plan = blockrank_plan(layout, m.options.device);
    const size_t num_layers = m.layers.size();
    std::vector<at::Tensor> keys(num_layers), values(num_layers);
    at::Tensor x = m.embed_ids(ids);
    for (size_t l = 0; l < num_layers; ++l) {
      Impl::LayerCapture cap;
      cap.keys = &keys[l];
      cap.values = &values[l];
      at::Tensor scores;
      if (want_scores && static_cast<int64_t>(l) == req.scoring_layer) {
        cap.scores = &scores;
        cap.layout = &layout;
        cap.signal_rows = req.signal_rows;
      }
      x = m.layer_forward(m.layers[l], x, cos, sin, plan, cap);
      if (cap.scores != nullptr) {
        at::Tensor s = scores.to(at::kCPU, at::kFloat).contiguous();
        r.scores.assign(s.data_ptr<float>(), s.data_ptr<float>() + s.numel());
      }
    }
    if (req.max_new_tokens == 0) {
      return r;
    }
    std::vector<int64_t> stop = req.stop_ids;
    std::sort(stop.begin(), stop.end());
    int64_t next = m.next_token(x);
    // Generated tokens continue the query block's positions: offset + Lq, offset + Lq + 1, ...
    int64_t position = layout.query_position_offset + layout.block_lengths.back();
    while (true) {
      r.tokens.push_back(next);
      if (static_cast<int64_t>(r.tokens.size()) >= req.max_new_tokens ||
          std::binary_search(stop.begin(), stop.end(), next)) {
        break;
      }
      auto [c1, s1] = m.rope_tables(at::tensor({position}, at::kLong).to(m.options.device));
      at::Tensor xt = m.embed_ids({next});
      for (size_t l = 0; l < num_layers; ++l) {
        xt = m.decode_layer(m.layers[l], xt, c1, s1, &keys[l], &values[l]);
      }
      next = m.next_token(xt);
      ++position;
    }
    return r;
  } catch (const c10::Error& e) {
    return Status::internal(std::string("generate: ") + e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    return Status::resource_exhausted("generate: out of memory");
  }
}

}  // namespace blockrank
