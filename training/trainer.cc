// SPDX-License-Identifier: Apache-2.0
// The training loop and its checkpoints. See trainer.h. Sections, in the order a run uses them:
// config → data order → model → checkpoint I/O → evaluation → the loop (resume, step, eval/save).
#include "training/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <utility>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>

#ifdef BLOCKRANK_TORCH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "plugin/base/file_util.h"
#include "ranker/core/model_config.h"
#include "ranker/core/prompt.h"
#include "ranker/tokenizer/tokenizer.h"
#include "training/distributed/distributed.h"
#include "training/lexical_init.h"
#include "training/loss.h"
#include "training/optimizer.h"
#include "training/synthetic.h"

#include <nlohmann/json.hpp>

namespace blockrank::training {

namespace fs = std::filesystem;
using json = nlohmann::json;

// ---------------------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------------------

namespace {

template <typename T>
Status read_field(const json& j, const std::string& source, const std::string& key, T* out) {
  try {
    *out = j.get<T>();
  } catch (const json::exception&) {
    return Status::invalid_argument(source + ": field '" + key + "' has the wrong type");
  }
  return Status::ok();
}

}  // namespace

Status parse_train_config(const std::string& json_text,
                          const std::string& source,
                          TrainConfig* out) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    return Status::invalid_argument(source + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) {
    return Status::invalid_argument(source + ": must be a JSON object");
  }
  TrainConfig c;
  // One row per field: the JSON key and where it goes.
  std::map<std::string, std::function<Status(const json&)>> fields;
  auto add = [&](const char* key, auto* member) {
    fields[key] = [member, key, &source](const json& v) {
      return read_field(v, source, key, member);
    };
  };
  add("model_dir", &c.model_dir);
  add("model_config", &c.model_config);
  add("tokenizer", &c.tokenizer);
  add("train_file", &c.train_file);
  add("eval_file", &c.eval_file);
  add("pretrain_file", &c.pretrain_file);
  add("pretrain_chunk_tokens", &c.pretrain_chunk_tokens);
  add("pretrain_eval_every", &c.pretrain_eval_every);
  add("synthetic_train_examples", &c.synthetic_train_examples);
  add("synthetic_eval_examples", &c.synthetic_eval_examples);
  add("synthetic_instruction_tokens", &c.synthetic_instruction_tokens);
  add("synthetic_doc_tokens", &c.synthetic_doc_tokens);
  add("synthetic_min_doc_tokens", &c.synthetic_min_doc_tokens);
  add("synthetic_query_tokens", &c.synthetic_query_tokens);
  add("synthetic_distractor_rate", &c.synthetic_distractor_rate);
  add("num_documents", &c.num_documents);
  add("max_block_length", &c.max_block_length);
  add("prompt_template", &c.prompt_template);
  add("skip_bad", &c.skip_bad);
  add("max_eval_examples", &c.max_eval_examples);
  add("max_steps", &c.max_steps);
  add("epochs", &c.epochs);
  add("batch_size", &c.batch_size);
  add("grad_accum", &c.grad_accum);
  add("lr", &c.lr);
  add("warmup_steps", &c.warmup_steps);
  add("warmup_ratio", &c.warmup_ratio);
  add("min_lr_ratio", &c.min_lr_ratio);
  add("weight_decay", &c.weight_decay);
  add("weight_decay_to_init", &c.weight_decay_to_init);
  add("beta1", &c.beta1);
  add("beta2", &c.beta2);
  add("adam_eps", &c.adam_eps);
  add("max_grad_norm", &c.max_grad_norm);
  add("aux_weight", &c.aux_weight);
  add("lm_weight", &c.lm_weight);
  add("freeze", &c.freeze);
  add("temperature", &c.temperature);
  add("aux_layer", &c.aux_layer);
  add("signal_rows", &c.signal_rows);
  add("init", &c.init);
  add("lexical_match_logit", &c.lexical_match_logit);
  add("lexical_neutral_template", &c.lexical_neutral_template);
  add("lexical_anchor_text", &c.lexical_anchor_text);
  add("seed", &c.seed);
  add("device", &c.device);
  add("dtype", &c.dtype);
  add("output_dir", &c.output_dir);
  add("log_interval", &c.log_interval);
  add("eval_interval", &c.eval_interval);
  add("save_interval", &c.save_interval);
  add("save_final", &c.save_final);
  add("save_total_limit", &c.save_total_limit);
  add("save_dtype", &c.save_dtype);
  add("max_shard_bytes", &c.max_shard_bytes);
  for (auto it = j.begin(); it != j.end(); ++it) {
    auto f = fields.find(it.key());
    if (f == fields.end()) {
      return Status::invalid_argument(source + ": unknown field '" + it.key() + "'");
    }
    if (!it.value().is_null()) {
      BLOCKRANK_RETURN_IF_ERROR(f->second(it.value()));
    }
  }
  *out = std::move(c);
  return Status::ok();
}

Status TrainConfig::validate() const {
  auto bad = [](const std::string& what) { return Status::invalid_argument("config: " + what); };
  if (model_dir.empty() == model_config.empty()) {
    return bad(
        "set exactly one of 'model_dir' (start from a checkpoint) and 'model_config' "
        "(random init)");
  }
  const bool synthetic = synthetic_train_examples > 0;
  if (!pretrain_file.empty()) {
    if (synthetic || !train_file.empty()) {
      return bad("'pretrain_file' excludes 'train_file' and 'synthetic_train_examples'");
    }
    if (pretrain_chunk_tokens < 16 || pretrain_eval_every < 0) {
      return bad("'pretrain_chunk_tokens' must be >= 16 and 'pretrain_eval_every' >= 0");
    }
  } else if (!synthetic && train_file.empty()) {
    return bad("'train_file' is required (or 'synthetic_train_examples' or 'pretrain_file')");
  }
  if (output_dir.empty()) {
    return bad("'output_dir' is required");
  }
  if (num_documents < 1) {
    return bad("'num_documents' must be >= 1");
  }
  if (max_block_length < 16) {
    return bad("'max_block_length' must be >= 16");
  }
  if (batch_size < 1 || grad_accum < 1) {
    return bad("'batch_size' and 'grad_accum' must be >= 1");
  }
  if (max_steps < 0 || (max_steps == 0 && !(epochs > 0))) {
    return bad("'max_steps' must be > 0, or 'epochs' > 0");
  }
  if (!(lr > 0) || warmup_ratio < 0 || warmup_ratio > 1 || min_lr_ratio < 0 || min_lr_ratio > 1) {
    return bad("'lr' must be > 0, 'warmup_ratio' and 'min_lr_ratio' in [0, 1]");
  }
  if (!(temperature > 0) || aux_weight < 0 || lm_weight < 0) {
    return bad("'temperature' must be > 0, 'aux_weight' and 'lm_weight' >= 0");
  }
  if (lm_weight == 0 && aux_weight == 0) {
    return bad("'lm_weight' and 'aux_weight' are both 0: nothing to train");
  }
  if (!(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1 && adam_eps > 0)) {
    return bad("'beta1'/'beta2' must be in [0, 1) and 'adam_eps' > 0");
  }
  if (weight_decay < 0.0 || (weight_decay_to_init && weight_decay == 0.0)) {
    return bad("'weight_decay' must be >= 0, and > 0 with 'weight_decay_to_init'");
  }
  if (init != "random" && init != "lexical") {
    return bad("'init' must be \"random\" or \"lexical\"");
  }
  if (init == "lexical" && !model_dir.empty()) {
    return bad("'init' \"lexical\" initialises a new model: use it with 'model_config'");
  }
  if (signal_rows < 0 || !(lexical_match_logit > 0)) {
    return bad("'signal_rows' must be >= 0 and 'lexical_match_logit' > 0");
  }
  if (!dtype.empty() && dtype != "float32" && dtype != "bfloat16") {
    return bad("'dtype' must be \"float32\" or \"bfloat16\"");
  }
  if (!save_dtype.empty() && save_dtype != "float32" && save_dtype != "bfloat16") {
    return bad("'save_dtype' must be \"float32\" or \"bfloat16\"");
  }
  if (!parse_prompt_template(prompt_template).is_ok()) {
    return bad("'prompt_template' must be \"mistral\" or \"chatml\" (alias \"qwen\")");
  }
  if (log_interval < 1 || eval_interval < 0 || save_interval < 0 || save_total_limit < 0) {
    return bad("'log_interval' must be >= 1; eval/save intervals and limit >= 0");
  }
  if (synthetic &&
      (synthetic_min_doc_tokens < 2 || synthetic_doc_tokens < synthetic_min_doc_tokens ||
       synthetic_instruction_tokens < 0 || synthetic_query_tokens < 1)) {
    return bad("synthetic shape: need 2 <= synthetic_min_doc_tokens <= synthetic_doc_tokens");
  }
  try {
    c10::Device d(device);
    (void)d;
  } catch (const c10::Error&) {
    return bad("'device' \"" + device + "\" is not a device (cpu, cuda, cuda:N)");
  }
  return Status::ok();
}

namespace {

c10::Device config_device(const TrainConfig& c) {
  return c10::Device(c.device);
}

c10::ScalarType compute_dtype(const TrainConfig& c) {
  if (c.dtype.empty()) {
    return config_device(c).is_cuda() ? at::kBFloat16 : at::kFloat;
  }
  return c.dtype == "bfloat16" ? at::kBFloat16 : at::kFloat;
}

c10::ScalarType save_dtype(const TrainConfig& c) {
  if (c.save_dtype.empty()) {
    return compute_dtype(c);
  }
  return c.save_dtype == "bfloat16" ? at::kBFloat16 : at::kFloat;
}

// ---------------------------------------------------------------------------------------------------------
// Data order
// ---------------------------------------------------------------------------------------------------------

uint64_t splitmix(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The example order: a fresh Fisher-Yates shuffle per epoch from (seed, epoch). The run's data
// position is one number, the count of examples consumed, so resuming only needs that count.
class DataOrder {
 public:
  DataOrder(int64_t size, uint64_t seed) : size_(size), seed_(seed) {}

  int64_t index_of(int64_t k) {
    const int64_t epoch = k / size_;
    if (epoch != epoch_) {
      perm_.resize(static_cast<size_t>(size_));
      for (int64_t i = 0; i < size_; ++i) {
        perm_[static_cast<size_t>(i)] = i;
      }
      uint64_t state = seed_ * 0x2545F4914F6CDD1Dull + static_cast<uint64_t>(epoch) + 1;
      for (int64_t i = size_ - 1; i > 0; --i) {
        const int64_t j = static_cast<int64_t>(splitmix(&state) % static_cast<uint64_t>(i + 1));
        std::swap(perm_[static_cast<size_t>(i)], perm_[static_cast<size_t>(j)]);
      }
      epoch_ = epoch;
    }
    return perm_[static_cast<size_t>(k % size_)];
  }

 private:
  int64_t size_;
  uint64_t seed_;
  int64_t epoch_ = -1;
  std::vector<int64_t> perm_;
};

class SyntheticSource final : public ExampleSource {
 public:
  SyntheticSource(const SyntheticTaskOptions& o, int64_t count, uint64_t seed)
      : options_(o), count_(count), seed_(seed) {}
  int64_t size() const override { return count_; }
  Status get(int64_t index, TrainingExample* out) const override {
    *out = make_synthetic_example(options_, seed_, static_cast<uint64_t>(index));
    return Status::ok();
  }

 private:
  SyntheticTaskOptions options_;
  int64_t count_;
  uint64_t seed_;
};

}  // namespace

std::unique_ptr<ExampleSource> synthetic_source(const TrainConfig& c,
                                                int32_t vocab_size,
                                                int64_t count,
                                                uint64_t seed) {
  SyntheticTaskOptions o;
  o.vocab_size = vocab_size;
  o.num_documents = c.num_documents;
  o.instruction_tokens = c.synthetic_instruction_tokens;
  o.min_doc_tokens = c.synthetic_min_doc_tokens;
  o.max_doc_tokens = c.synthetic_doc_tokens;
  o.query_tokens = c.synthetic_query_tokens;
  o.distractor_rate = c.synthetic_distractor_rate;
  return std::make_unique<SyntheticSource>(o, count, seed);
}

// ---------------------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------------------

// The query block's fixed-text tokens (empty query) and the anchor token, for the lexical init.
static Status neutral_template_tokens(const TrainConfig& c, LexicalInitOptions* lo) {
  std::unique_ptr<Tokenizer> tok;
  BLOCKRANK_RETURN_IF_ERROR(Tokenizer::load(c.tokenizer.empty() ? c.model_dir : c.tokenizer, &tok));
  BLOCKRANK_ASSIGN_OR_RETURN(PromptTemplate tmpl, parse_prompt_template(c.prompt_template));
  const PromptPieces pieces = render_prompt_pieces(tmpl, "", {});
  std::vector<int32_t> ids, more;
  BLOCKRANK_RETURN_IF_ERROR(tok->encode(pieces.query_prompt, &ids));
  BLOCKRANK_RETURN_IF_ERROR(tok->encode(pieces.completion, &more));
  ids.insert(ids.end(), more.begin(), more.end());
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  std::vector<int32_t> pipe, anchor;
  BLOCKRANK_RETURN_IF_ERROR(tok->encode("|", &pipe));
  BLOCKRANK_RETURN_IF_ERROR(tok->encode("| " + c.lexical_anchor_text, &anchor));
  if (anchor.size() <= pipe.size()) {
    return Status::invalid_argument("config: 'lexical_anchor_text' \"" + c.lexical_anchor_text +
                                    "\" encodes to no token after \"| \"");
  }
  lo->anchor_token = anchor[pipe.size()];
  ids.erase(std::remove(ids.begin(), ids.end(), lo->anchor_token), ids.end());
  lo->neutral_tokens = std::move(ids);
  return Status::ok();
}

Status create_model(const TrainConfig& c, std::unique_ptr<TrainableModel>* out) {
  ModelOptions mo;
  mo.device = config_device(c);
  mo.dtype = compute_dtype(c);
  if (!c.model_dir.empty()) {
    BLOCKRANK_RETURN_IF_ERROR(TrainableModel::load(c.model_dir, mo, out));
  } else {
    std::ifstream f(c.model_config);
    if (!f) {
      return Status::not_found(c.model_config + ": cannot open");
    }
    std::stringstream ss;
    ss << f.rdbuf();
    BLOCKRANK_ASSIGN_OR_RETURN(ModelConfig config, parse_model_config(ss.str(), c.model_config));
    BLOCKRANK_ASSIGN_OR_RETURN(BlockRankSettings settings,
                               parse_blockrank_settings("", "blockrank.json", config));
    BLOCKRANK_RETURN_IF_ERROR(
        TrainableModel::create_random(config, ss.str(), settings, mo, c.seed, out));
  }
  BlockRankSettings& s = (*out)->mutable_settings();
  if (c.aux_layer >= 0) {
    if (c.aux_layer >= (*out)->config().num_layers) {
      return Status::invalid_argument("config: 'aux_layer' " + std::to_string(c.aux_layer) +
                                      " outside the model's " +
                                      std::to_string((*out)->config().num_layers) + " layers");
    }
    s.scoring_layer = c.aux_layer;  // the checkpoint scores with the layer it was trained on
  }
  s.prompt_template = c.prompt_template;
  s.temperature = c.temperature;
  s.max_block_length = c.max_block_length;  // and with the block length it was trained on
  if (c.signal_rows > 0) {
    s.signal_rows = c.signal_rows;
  }
  if (c.init == "lexical") {
    LexicalInitOptions lo;
    lo.layer = s.scoring_layer;
    lo.block_length = c.max_block_length;
    lo.query_position_offset = s.query_position_offset;
    lo.match_logit = c.lexical_match_logit;
    lo.seed = c.seed;
    if (c.lexical_neutral_template) {
      BLOCKRANK_RETURN_IF_ERROR(neutral_template_tokens(c, &lo));
    }
    BLOCKRANK_RETURN_IF_ERROR(apply_lexical_init(lo, out->get()));
  }
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------------------
// Checkpoints
// ---------------------------------------------------------------------------------------------------------

namespace {

struct TrainerState {
  int64_t step = 0;
  int64_t examples_seen = 0;  // the data position
  int64_t tokens_seen = 0;
  double elapsed_s = 0;
};

Status write_file_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f || !(f << text) || !f.flush()) {
      return Status::io_error(tmp + ": cannot write");
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    return Status::io_error(path + ": cannot rename into place: " + ec.message());
  }
  return Status::ok();
}

Status copy_tokenizer_files(const std::string& source, const std::string& dir) {
  if (source.empty()) {
    return Status::ok();
  }
  std::error_code ec;
  if (fs::is_regular_file(source)) {
    fs::copy_file(source, dir + "/tokenizer.json", fs::copy_options::overwrite_existing, ec);
  } else {
    for (const char* name :
         {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}) {
      const std::string src = source + "/" + name;
      if (fs::exists(src)) {
        fs::copy_file(src, dir + "/" + name, fs::copy_options::overwrite_existing, ec);
        if (ec) {
          break;
        }
      }
    }
  }
  if (ec) {
    return Status::io_error(dir + ": copying the tokenizer from " + source + ": " + ec.message());
  }
  return Status::ok();
}

std::string checkpoint_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "checkpoint-%06lld", static_cast<long long>(step));
  return buf;
}

Status save_checkpoint(const TrainConfig& c,
                       const TrainableModel& model,
                       const AdamW& opt,
                       const TrainerState& st,
                       std::string* written) {
  const std::string name = checkpoint_name(st.step);
  const std::string final_dir = c.output_dir + "/" + name;
  const std::string tmp = c.output_dir + "/.tmp-" + name;
  std::error_code ec;
  BLOCKRANK_RETURN_IF_ERROR(remove_tree(tmp));
  const c10::ScalarType sd = save_dtype(c);
  BLOCKRANK_RETURN_IF_ERROR(model.save_pretrained(tmp, sd, c.max_shard_bytes));
  BLOCKRANK_RETURN_IF_ERROR(
      copy_tokenizer_files(c.tokenizer.empty() ? c.model_dir : c.tokenizer, tmp));
  const std::string tdir = tmp + "/trainer";
  fs::create_directories(tdir, ec);
  if (ec) {
    return Status::io_error(tdir + ": cannot create: " + ec.message());
  }
  BLOCKRANK_RETURN_IF_ERROR(
      write_sharded_safetensors(tdir, "optimizer", opt.state(), c.max_shard_bytes));
  const c10::ScalarType master = model.parameters().front().tensor.scalar_type();
  if (sd != master) {  // the model files are rounded: keep the exact masters for resuming
    std::vector<std::pair<std::string, at::Tensor>> masters;
    for (const NamedParameter& p : model.parameters()) {
      masters.emplace_back(p.name, p.tensor.detach().to(at::kCPU).contiguous());
    }
    BLOCKRANK_RETURN_IF_ERROR(
        write_sharded_safetensors(tdir, "master", masters, c.max_shard_bytes));
  }
  json state = {{"step", st.step},
                {"examples_seen", st.examples_seen},
                {"tokens_seen", st.tokens_seen},
                {"elapsed_s", st.elapsed_s},
                {"optimizer_steps", opt.steps()},
                {"seed", c.seed}};
  BLOCKRANK_RETURN_IF_ERROR(write_file_atomic(tdir + "/trainer_state.json", state.dump(2) + "\n"));
  BLOCKRANK_RETURN_IF_ERROR(remove_tree(final_dir));
  fs::rename(tmp, final_dir, ec);
  if (ec) {
    return Status::io_error(final_dir + ": cannot rename into place: " + ec.message());
  }
  BLOCKRANK_RETURN_IF_ERROR(write_file_atomic(c.output_dir + "/latest", name + "\n"));
  // Keep the newest save_total_limit checkpoints.
  if (c.save_total_limit > 0) {
    std::vector<std::string> all;
    for (const auto& e : fs::directory_iterator(c.output_dir, ec)) {
      const std::string n = e.path().filename().string();
      if (e.is_directory() && n.rfind("checkpoint-", 0) == 0) {
        all.push_back(n);
      }
    }
    std::sort(all.begin(), all.end());
    for (size_t i = 0; i + static_cast<size_t>(c.save_total_limit) < all.size(); ++i) {
      (void)remove_tree(c.output_dir + "/" + all[i]);  // an old checkpoint left behind is harmless
    }
  }
  *written = final_dir;
  return Status::ok();
}

// `dir` is a checkpoint, or an output directory whose `latest` file names one.
std::string resolve_checkpoint(const std::string& dir) {
  std::ifstream latest(dir + "/latest");
  std::string name;
  if (latest && std::getline(latest, name) && !name.empty()) {
    return dir + "/" + name;
  }
  return dir;
}

Status load_checkpoint(const std::string& dir,
                       const TrainConfig& c,
                       TrainableModel& model,
                       AdamW& opt,
                       TrainerState* st) {
  const std::string tdir = dir + "/trainer";
  std::ifstream f(tdir + "/trainer_state.json");
  if (!f) {
    return Status::not_found(dir + ": not a training checkpoint (no trainer/trainer_state.json)");
  }
  json j;
  int64_t optimizer_steps = 0;
  try {
    f >> j;
    st->step = j.at("step").get<int64_t>();
    st->examples_seen = j.at("examples_seen").get<int64_t>();
    st->tokens_seen = j.at("tokens_seen").get<int64_t>();
    st->elapsed_s = j.at("elapsed_s").get<double>();
    optimizer_steps = j.at("optimizer_steps").get<int64_t>();
    if (j.at("seed").get<uint64_t>() != c.seed) {
      return Status::invalid_argument(tdir + "/trainer_state.json: seed " +
                                      std::to_string(j.at("seed").get<uint64_t>()) +
                                      " differs from the config's " + std::to_string(c.seed) +
                                      " (the data order would change)");
    }
  } catch (const json::exception& e) {
    return Status::invalid_argument(tdir + "/trainer_state.json: " + e.what());
  }
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  const bool has_master = fs::exists(tdir + "/master.safetensors") ||
                          fs::exists(tdir + "/master.safetensors.index.json");
  BLOCKRANK_RETURN_IF_ERROR(
      read_sharded_safetensors(has_master ? tdir : dir, has_master ? "master" : "model", &tensors));
  BLOCKRANK_RETURN_IF_ERROR(model.load_parameters(tensors));
  BLOCKRANK_RETURN_IF_ERROR(read_sharded_safetensors(tdir, "optimizer", &tensors));
  return opt.load_state(tensors, optimizer_steps);
}

int64_t cuda_peak_memory(c10::Device device) {
#ifdef BLOCKRANK_TORCH_CUDA
  if (device.is_cuda()) {
    // Index 0 of the stat arrays is the aggregate over pools (StatType::AGGREGATE), stable across
    // LibTorch releases whose enum namespace moved.
    const auto stats =
        c10::cuda::CUDACachingAllocator::getDeviceStats(device.has_index() ? device.index() : 0);
    return stats.allocated_bytes[0].peak;
  }
#endif
  (void)device;
  return 0;
}

// Groups examples by block count (one collated batch needs equal M), keeping first-seen order.
std::vector<std::vector<const TrainingExample*>> group_by_blocks(
    const std::vector<TrainingExample>& examples, size_t begin, size_t end) {
  std::vector<std::vector<const TrainingExample*>> groups;
  std::map<size_t, size_t> slot;
  for (size_t i = begin; i < end; ++i) {
    const size_t m = examples[i].block_lengths.size();
    auto it = slot.find(m);
    if (it == slot.end()) {
      it = slot.emplace(m, groups.size()).first;
      groups.emplace_back();
    }
    groups[it->second].push_back(&examples[i]);
  }
  return groups;
}

CollateOptions collate_options(const TrainableModel& model) {
  CollateOptions co;
  co.signal_rows = model.settings().signal_rows;
  co.query_position_offset = model.settings().query_position_offset;
  return co;
}

int64_t aux_layer_of(const TrainableModel& model) {
  return model.settings().scoring_layer;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------------------

Status evaluate(const TrainConfig& c,
                const TrainableModel& model,
                const ExampleSource& data,
                EvalStats* out) {
  c10::NoGradGuard no_grad;
  const int64_t n = std::min<int64_t>(data.size(), c.max_eval_examples);
  double lm_sum = 0, aux_sum = 0;
  int64_t lm_count = 0, aux_count = 0;
  RankingSums rank;
  std::vector<TrainingExample> examples;
  for (int64_t start = 0; start < n; start += c.batch_size) {
    examples.clear();
    for (int64_t i = start; i < std::min(n, start + c.batch_size); ++i) {
      examples.emplace_back();
      BLOCKRANK_RETURN_IF_ERROR(data.get(i, &examples.back()));
    }
    for (const auto& group : group_by_blocks(examples, 0, examples.size())) {
      Batch batch;
      BLOCKRANK_RETURN_IF_ERROR(collate(group, collate_options(model), model.config().vocab_size,
                                        model.options().device, &batch));
      ForwardOptions fo;
      fo.aux_layer = aux_layer_of(model);
      fo.lm = c.lm_weight > 0;
      BLOCKRANK_ASSIGN_OR_RETURN(ForwardOutput fwd, model.forward(batch, fo));
      const LossTerms t = loss_terms(fwd, batch, c.temperature);
      lm_sum += t.lm_sum.item<double>();
      aux_sum += t.aux_sum.item<double>();
      lm_count += t.lm_count;
      aux_count += t.aux_count;
      const RankingSums r = ranking_sums(document_scores(fwd.signal_logits, batch), batch.positive);
      rank.p1 += r.p1;
      rank.ndcg10 += r.ndcg10;
      rank.count += r.count;
    }
  }
  EvalStats e;
  e.count = rank.count;
  e.lm_loss = lm_count > 0 ? lm_sum / static_cast<double>(lm_count) : 0.0;
  e.aux_loss = aux_count > 0 ? aux_sum / static_cast<double>(aux_count) : 0.0;
  e.loss = c.lm_weight * e.lm_loss + c.aux_weight * e.aux_loss;
  e.p1 = rank.count > 0 ? rank.p1 / static_cast<double>(rank.count) : 0.0;
  e.ndcg10 = rank.count > 0 ? rank.ndcg10 / static_cast<double>(rank.count) : 0.0;
  *out = e;
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------------------
// The loop
// ---------------------------------------------------------------------------------------------------------

Status train(const TrainConfig& c,
             TrainableModel& model,
             const ExampleSource& train_data,
             const ExampleSource* eval_data,
             const std::string& resume_dir,
             const TrainHooks& hooks,
             TrainResult* result) {
  BLOCKRANK_RETURN_IF_ERROR(c.validate());
  if (train_data.size() < 1) {
    return Status::invalid_argument("no training examples");
  }
  const int rank = hooks.reducer != nullptr ? hooks.reducer->rank() : 0;
  const int world = hooks.reducer != nullptr ? hooks.reducer->world_size() : 1;
  const bool primary = rank == 0;
  const int64_t per_rank = c.batch_size * c.grad_accum;
  const int64_t per_step = per_rank * world;
  const int64_t total_steps =
      c.max_steps > 0 ? c.max_steps
                      : std::max<int64_t>(1, static_cast<int64_t>(std::ceil(
                                                 c.epochs * static_cast<double>(train_data.size()) /
                                                 static_cast<double>(per_step))));
  ScheduleOptions sched;
  sched.peak_lr = c.lr;
  sched.total_steps = total_steps;
  sched.min_lr_ratio = c.min_lr_ratio;
  sched.warmup_steps = c.warmup_steps >= 0
                           ? c.warmup_steps
                           : static_cast<int64_t>(std::ceil(c.warmup_ratio * total_steps));
  // Frozen parameters get no gradient, so the optimizer and the clip skip them.
  for (const std::string& prefix : c.freeze) {
    int matched = 0;
    for (const NamedParameter& p : model.parameters()) {
      if (p.name.compare(0, prefix.size(), prefix) == 0) {
        p.tensor.set_requires_grad(false);
        ++matched;
      }
    }
    if (matched == 0) {
      return Status::invalid_argument("config: 'freeze' entry '" + prefix +
                                      "' names no parameter (e.g. model.embed_tokens.weight)");
    }
  }
  AdamWOptions ao;
  ao.beta1 = c.beta1;
  ao.beta2 = c.beta2;
  ao.eps = c.adam_eps;
  ao.weight_decay = c.weight_decay;
  ao.decay_to_reference = c.weight_decay_to_init;
  AdamW opt(model.parameters(), ao);
  // The starting point, before a resume overwrites the weights (a resumed run rebuilds the same
  // start: the seeded initialisation or the same model_dir).
  if (c.weight_decay_to_init) {
    opt.set_reference();
  }
  const int64_t aux_layer = aux_layer_of(model);
  const CollateOptions co = collate_options(model);
  const c10::Device device = model.options().device;

  // --- resume ----------------------------------------------------------------------------------
  TrainerState st;
  if (!resume_dir.empty()) {
    const std::string dir = resolve_checkpoint(resume_dir);
    BLOCKRANK_RETURN_IF_ERROR(load_checkpoint(dir, c, model, opt, &st));
    BLOCKRANK_LOG_INFO(hooks.logger, "resumed from %s at step %lld (%lld examples seen)",
                       dir.c_str(), static_cast<long long>(st.step),
                       static_cast<long long>(st.examples_seen));
  } else if (hooks.reducer != nullptr && world > 1) {
    std::vector<at::Tensor> params;
    for (const NamedParameter& p : model.parameters()) {
      params.push_back(p.tensor.detach());
    }
    BLOCKRANK_RETURN_IF_ERROR(hooks.reducer->broadcast_from_primary(&params));
    if (c.weight_decay_to_init) {
      opt.set_reference();  // every rank decays towards the primary's start
    }
  }
  std::error_code ec;
  if (primary) {
    fs::create_directories(c.output_dir, ec);
    if (ec) {
      return Status::io_error(c.output_dir + ": cannot create: " + ec.message());
    }
  }
  std::ofstream log;
  if (primary) {
    log.open(c.output_dir + "/log.jsonl", std::ios::app);
    if (!log) {
      return Status::io_error(c.output_dir + "/log.jsonl: cannot open");
    }
  }
  DataOrder order(train_data.size(), c.seed);
  const auto run_start = std::chrono::steady_clock::now();
  const double elapsed_before = st.elapsed_s;
  auto elapsed = [&] {
    return elapsed_before +
           std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
  };
  auto run_eval = [&](int64_t step) -> Status {
    if (eval_data == nullptr || !primary || eval_data->size() == 0) {
      return Status::ok();
    }
    EvalStats e;
    BLOCKRANK_RETURN_IF_ERROR(evaluate(c, model, *eval_data, &e));
    e.step = step;
    result->last_eval = e;
    log << json{{"step", step},
                {"eval_loss", e.loss},
                {"eval_lm_loss", e.lm_loss},
                {"eval_aux_loss", e.aux_loss},
                {"eval_p1", e.p1},
                {"eval_ndcg10", e.ndcg10},
                {"eval_count", e.count}}
               .dump()
        << "\n"
        << std::flush;
    if (hooks.on_eval) {
      hooks.on_eval(e);
    }
    return Status::ok();
  };
  auto run_save = [&]() -> Status {
    if (!primary) {
      return Status::ok();
    }
    st.elapsed_s = elapsed();
    BLOCKRANK_RETURN_IF_ERROR(save_checkpoint(c, model, opt, st, &result->last_checkpoint));
    BLOCKRANK_LOG_INFO(hooks.logger, "saved %s", result->last_checkpoint.c_str());
    return Status::ok();
  };

  // --- steps: forward → loss → backward → all-reduce → clip → AdamW → log ----------------------
  std::vector<TrainingExample> examples;
  int64_t steps_this_call = 0;
  try {
    while (st.step < total_steps) {
      const auto t0 = std::chrono::steady_clock::now();
      const double lr = learning_rate(st.step, sched);
      // This rank's examples of the step: every world-th of the next per_step in the data order.
      examples.resize(static_cast<size_t>(per_rank));
      int64_t lm_total = 0;
      int64_t step_tokens = 0;
      for (int64_t i = 0; i < per_rank; ++i) {
        const int64_t k = st.examples_seen + i * world + rank;
        TrainingExample& e = examples[static_cast<size_t>(i)];
        BLOCKRANK_RETURN_IF_ERROR(train_data.get(order.index_of(k), &e));
        for (int32_t label : e.labels) {
          lm_total += label != kIgnoreLabel ? 1 : 0;
        }
        step_tokens += static_cast<int64_t>(e.input_ids.size());
      }
      // Normalise by the whole step's counts, so accumulation equals one big batch. Under data
      // parallelism "the whole step" spans every rank: the LM label count is summed over the ranks
      // (rank-local counts differ from one another), and the factor `world` undoes the division of
      // the mean all-reduce below, so W ranks x batch B take the gradient of one process x W*B.
      int64_t lm_total_all = lm_total;
      if (hooks.reducer != nullptr && world > 1) {
        std::vector<at::Tensor> count{
            at::full({1}, static_cast<double>(lm_total),
                     at::TensorOptions().dtype(at::kDouble).device(device))};
        BLOCKRANK_RETURN_IF_ERROR(hooks.reducer->all_reduce_mean(&count));
        lm_total_all = std::llround(count[0].item<double>() * world);
      }
      const double lm_scale = c.lm_weight * static_cast<double>(world) /
                              static_cast<double>(std::max<int64_t>(1, lm_total_all));
      const double aux_scale = c.aux_weight / static_cast<double>(per_rank);
      at::Tensor lm_sum = at::zeros({}, at::TensorOptions().dtype(at::kDouble).device(device));
      at::Tensor aux_sum = at::zeros_like(lm_sum);
      int64_t aux_correct = 0;
      for (int64_t micro = 0; micro < c.grad_accum; ++micro) {
        const size_t begin = static_cast<size_t>(micro * c.batch_size);
        for (const auto& group : group_by_blocks(examples, begin, begin + c.batch_size)) {
          Batch batch;
          BLOCKRANK_RETURN_IF_ERROR(collate(group, co, model.config().vocab_size, device, &batch));
          ForwardOptions fo;
          fo.aux_layer = aux_layer;
          fo.lm = c.lm_weight > 0;
          BLOCKRANK_ASSIGN_OR_RETURN(ForwardOutput fwd, model.forward(batch, fo));
          const LossTerms t = loss_terms(fwd, batch, c.temperature);
          at::Tensor loss = t.lm_sum * lm_scale + t.aux_sum * aux_scale;
          loss.backward();
          lm_sum += t.lm_sum.detach().to(at::kDouble);
          aux_sum += t.aux_sum.detach().to(at::kDouble);
          aux_correct += t.aux_correct;
        }
      }
      if (hooks.reducer != nullptr && world > 1) {
        std::vector<at::Tensor> grads;
        for (const NamedParameter& p : model.parameters()) {
          if (p.tensor.grad()
                  .defined()) {  // lm_weight 0: the LM-only weights get none (on every rank)
            grads.push_back(p.tensor.grad());
          }
        }
        BLOCKRANK_RETURN_IF_ERROR(hooks.reducer->all_reduce_mean(&grads));
      }
      const double grad_norm = clip_grad_norm(model.parameters(), c.max_grad_norm);
      opt.step(lr);
      st.step += 1;
      st.examples_seen += per_step;
      st.tokens_seen += step_tokens * world;

      const double step_s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      StepStats s;
      s.step = st.step;
      s.total_steps = total_steps;
      // The whole step's examples, on every rank: under data parallelism the sums and counts are
      // averaged over the ranks (one 4-element all-reduce), so rank 0 logs the loss that one
      // process with the global batch would (the same curve for W x B as for 1 x W*B).
      double sums[4] = {lm_sum.item<double>(), static_cast<double>(lm_total),
                        aux_sum.item<double>(), static_cast<double>(aux_correct)};
      if (hooks.reducer != nullptr && world > 1) {
        std::vector<at::Tensor> v{
            at::tensor(at::ArrayRef<double>(sums, 4), at::kDouble).to(device)};
        BLOCKRANK_RETURN_IF_ERROR(hooks.reducer->all_reduce_mean(&v));
        const at::Tensor mean = v[0].to(at::kCPU);
        std::copy(mean.data_ptr<double>(), mean.data_ptr<double>() + 4, sums);
      }
      s.lm_loss = sums[0] / std::max(1.0, sums[1]);
      s.aux_loss = sums[2] / static_cast<double>(per_rank);
      s.loss = c.lm_weight * s.lm_loss + c.aux_weight * s.aux_loss;
      s.aux_acc = sums[3] / static_cast<double>(per_rank);
      s.lr = lr;
      s.grad_norm = grad_norm;
      s.tokens_per_s = static_cast<double>(step_tokens * world) / std::max(step_s, 1e-9);
      s.tokens = st.tokens_seen;
      s.elapsed_s = elapsed();
      s.peak_memory_bytes = cuda_peak_memory(device);
      result->last_step = s;
      result->steps = st.step;
      if (primary && (st.step % c.log_interval == 0 || st.step == total_steps)) {
        log << json{{"step", s.step},
                    {"loss", s.loss},
                    {"lm_loss", s.lm_loss},
                    {"aux_loss", s.aux_loss},
                    {"aux_acc", s.aux_acc},
                    {"lr", s.lr},
                    {"grad_norm", s.grad_norm},
                    {"tokens_per_s", s.tokens_per_s},
                    {"tokens", s.tokens},
                    {"elapsed_s", s.elapsed_s},
                    {"peak_memory_bytes", s.peak_memory_bytes}}
                   .dump()
            << "\n"
            << std::flush;
        if (hooks.on_step) {
          hooks.on_step(s);
        }
      }

      // --- periodic evaluation and checkpoint --------------------------------------------------
      const bool last = st.step == total_steps;
      if (last || (c.eval_interval > 0 && st.step % c.eval_interval == 0)) {
        BLOCKRANK_RETURN_IF_ERROR(run_eval(st.step));
      }
      const bool stop = hooks.stop_after_steps > 0 && ++steps_this_call == hooks.stop_after_steps;
      if ((last && c.save_final) || stop ||
          (c.save_interval > 0 && st.step % c.save_interval == 0)) {
        BLOCKRANK_RETURN_IF_ERROR(run_save());
      }
      if (stop) {
        break;
      }
    }
  } catch (const c10::Error& e) {
    const std::string what = e.what_without_backtrace();
    if (what.find("out of memory") != std::string::npos) {
      return Status::resource_exhausted("training step " + std::to_string(st.step) + ": " + what);
    }
    return Status::internal("training step " + std::to_string(st.step) + ": " + what);
  }
  return Status::ok();
}

}  // namespace blockrank::training
