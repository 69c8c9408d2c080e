// SPDX-License-Identifier: Apache-2.0
// `blockrank train --config F.json [--resume DIR]`: BlockRank fine-tuning (BLOCKRANK.md §3, §7) on
// LibTorch autograd. Reads top to bottom: config → data → model → loop (trainer.cc: forward → loss
// → backward → all-reduce → clip → step → log, periodic eval and checkpoints) → resume.
//
// Data-parallel runs start one process per device with the launcher's RANK / WORLD_SIZE /
// LOCAL_RANK / MASTER_ADDR / MASTER_PORT (training/distributed); rank 0 logs and saves.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/Parallel.h>

#include "plugin/base/cli_command.h"
#include "plugin/base/progress.h"
#include "ranker/core/prompt.h"
#include "ranker/tokenizer/tokenizer.h"
#include "training/distributed/distributed.h"
#include "training/example.h"
#include "training/pretrain.h"
#include "training/trainer.h"

#include <CLI/CLI.hpp>

namespace blockrank {
namespace {

namespace fs = std::filesystem;
using training::TrainConfig;

struct TrainFlags {
  std::string config;
  std::string resume;
  std::string device;
  int64_t max_steps = 0;
  int threads = 0;
};

// JSONL examples built on demand: build_training_example is deterministic in (seed, index), so an
// example is the same whenever the trainer asks for it (and after a resume).
// Causal-LM pretraining examples (training/pretrain.h): triple k = chunks 3k, 3k+1, 3k+2.
class ChunkSource final : public training::ExampleSource {
 public:
  ChunkSource(std::vector<std::vector<int32_t>> chunks, int32_t bos)
      : chunks_(std::move(chunks)), bos_(bos) {}
  int64_t size() const override { return static_cast<int64_t>(chunks_.size() / 3); }
  Status get(int64_t index, training::TrainingExample* out) const override {
    const size_t k = static_cast<size_t>(index) * 3;
    *out = training::make_lm_example(chunks_[k], chunks_[k + 1], chunks_[k + 2], bos_);
    return Status::ok();
  }

 private:
  std::vector<std::vector<int32_t>> chunks_;
  int32_t bos_;
};

class JsonlSource final : public training::ExampleSource {
 public:
  JsonlSource(std::vector<training::RawExample> raw,
              std::shared_ptr<Tokenizer> tokenizer,
              training::ExampleOptions options)
      : raw_(std::move(raw)), tokenizer_(std::move(tokenizer)), options_(options) {}
  int64_t size() const override { return static_cast<int64_t>(raw_.size()); }
  Status get(int64_t index, training::TrainingExample* out) const override {
    return training::build_training_example(*tokenizer_, raw_[static_cast<size_t>(index)], options_,
                                            static_cast<uint64_t>(index), out);
  }

 private:
  std::vector<training::RawExample> raw_;
  std::shared_ptr<Tokenizer> tokenizer_;
  training::ExampleOptions options_;
};

std::string resolve(const std::string& base, const std::string& path) {
  if (path.empty() || fs::path(path).is_absolute()) {
    return path;
  }
  return (fs::path(base) / path).lexically_normal().string();
}

Status run_train(const TrainFlags& flags, const std::shared_ptr<Logger>& logger) {
  // ===================================== config =====================================
  std::ifstream cf(flags.config);
  if (!cf) {
    return Status::not_found(flags.config + ": cannot open");
  }
  std::stringstream text;
  text << cf.rdbuf();
  TrainConfig c;
  BLOCKRANK_RETURN_IF_ERROR(training::parse_train_config(text.str(), flags.config, &c));
  // Paths in the config are relative to the config file.
  const std::string base = fs::path(flags.config).parent_path().string();
  for (std::string* p : {&c.model_dir, &c.model_config, &c.tokenizer, &c.train_file, &c.eval_file,
                         &c.pretrain_file, &c.output_dir}) {
    *p = resolve(base, *p);
  }
  if (!flags.device.empty()) {
    c.device = flags.device;
  }
  if (flags.max_steps > 0) {
    c.max_steps = flags.max_steps;
  }
  BLOCKRANK_RETURN_IF_ERROR(c.validate());
  BLOCKRANK_ASSIGN_OR_RETURN(training::DistributedEnv env,
                             training::DistributedEnv::from_environment());
  if (env.world_size > 1 && c10::Device(c.device).is_cuda()) {
    c.device = "cuda:" + std::to_string(env.local_rank);  // one GPU per process
  }
  at::set_num_threads(flags.threads > 0
                          ? flags.threads
                          : static_cast<int>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN))));

  // ===================================== model ======================================
  std::unique_ptr<training::TrainableModel> model;
  BLOCKRANK_RETURN_IF_ERROR(training::create_model(c, &model));
  BLOCKRANK_LOG_INFO(logger, "model: %s, %lld layers, %.1fM parameters, %s on %s, aux layer %lld",
                     architecture_name(model->config().arch),
                     static_cast<long long>(model->config().num_layers),
                     static_cast<double>(model->num_parameters()) / 1e6,
                     model->options().dtype == at::kBFloat16 ? "bf16 (fp32 masters)" : "fp32",
                     c.device.c_str(), static_cast<long long>(model->settings().scoring_layer));

  // ===================================== data =======================================
  std::unique_ptr<training::ExampleSource> train_data, eval_data;
  const int32_t vocab = static_cast<int32_t>(model->config().vocab_size);
  if (c.synthetic_train_examples > 0) {
    train_data = training::synthetic_source(c, vocab, c.synthetic_train_examples, c.seed);
    if (c.synthetic_eval_examples > 0) {
      eval_data = training::synthetic_source(c, vocab, c.synthetic_eval_examples, c.seed + 1);
    }
  } else if (!c.pretrain_file.empty()) {
    std::unique_ptr<Tokenizer> tok;
    BLOCKRANK_RETURN_IF_ERROR(
        Tokenizer::load(c.tokenizer.empty() ? c.model_dir : c.tokenizer, &tok));
    training::TextChunkOptions to;
    to.chunk_tokens = c.pretrain_chunk_tokens;
    std::vector<std::vector<int32_t>> chunks, train_chunks, eval_chunks;
    training::TextChunkStats ts;
    BLOCKRANK_RETURN_IF_ERROR(training::read_text_chunks(c.pretrain_file, *tok, to, &chunks, &ts));
    // Held out: every pretrain_eval_every-th triple of chunks.
    for (size_t i = 0; i + 3 <= chunks.size(); i += 3) {
      const bool held_out =
          c.pretrain_eval_every > 0 && (i / 3) % static_cast<size_t>(c.pretrain_eval_every) == 0;
      for (size_t j = i; j < i + 3; ++j) {
        (held_out ? eval_chunks : train_chunks).push_back(std::move(chunks[j]));
      }
    }
    BLOCKRANK_LOG_INFO(
        logger,
        "%s: %lld documents (%lld empty), %lld tokens: %zu training and %zu held-out "
        "examples of 3 x %lld tokens (causal-LM pretraining)",
        c.pretrain_file.c_str(), static_cast<long long>(ts.documents),
        static_cast<long long>(ts.empty), static_cast<long long>(ts.tokens),
        train_chunks.size() / 3, eval_chunks.size() / 3,
        static_cast<long long>(c.pretrain_chunk_tokens));
    const std::optional<int32_t> bos = tok->bos_id();
    if (!bos) {
      return Status::invalid_argument(c.tokenizer + ": the tokenizer has no BOS token");
    }
    if (train_chunks.empty()) {
      return Status::invalid_argument(c.pretrain_file + ": too little text to pretrain on");
    }
    train_data = std::make_unique<ChunkSource>(std::move(train_chunks), *bos);
    if (!eval_chunks.empty()) {
      eval_data = std::make_unique<ChunkSource>(std::move(eval_chunks), *bos);
    }
  } else {
    std::unique_ptr<Tokenizer> tok;
    BLOCKRANK_RETURN_IF_ERROR(
        Tokenizer::load(c.tokenizer.empty() ? c.model_dir : c.tokenizer, &tok));
    std::shared_ptr<Tokenizer> tokenizer(std::move(tok));
    training::ExampleOptions eo;
    eo.num_documents = c.num_documents;
    eo.max_block_length = c.max_block_length;
    eo.seed = c.seed;
    BLOCKRANK_ASSIGN_OR_RETURN(eo.tmpl, parse_prompt_template(c.prompt_template));
    training::ReadOptions ro;
    ro.skip_bad = c.skip_bad;
    for (auto [path, dst] :
         {std::make_pair(&c.train_file, &train_data), std::make_pair(&c.eval_file, &eval_data)}) {
      if (path->empty()) {
        continue;
      }
      std::vector<training::RawExample> raw;
      training::ReadStats stats;
      BLOCKRANK_RETURN_IF_ERROR(training::read_training_jsonl(*path, ro, &raw, &stats));
      for (const std::string& e : stats.first_errors) {
        BLOCKRANK_LOG_WARNING(logger, "skipped: %s", e.c_str());
      }
      BLOCKRANK_LOG_INFO(logger, "%s: %lld examples, %lld bad lines skipped", path->c_str(),
                         static_cast<long long>(stats.read), static_cast<long long>(stats.skipped));
      *dst = std::make_unique<JsonlSource>(std::move(raw), tokenizer, eo);
    }
  }

  // ===================================== loop =======================================
  // (trainer.cc: steps, periodic eval/checkpoint; --resume restores weights, optimizer, position)
  std::unique_ptr<training::Reducer> reducer;
  BLOCKRANK_RETURN_IF_ERROR(training::open_reducer(env, c10::Device(c.device), 600, &reducer));
  training::TrainHooks hooks;
  hooks.logger = env.is_primary() ? logger : Logger::null_logger();
  hooks.reducer = reducer.get();
  hooks.on_step = [](const training::StepStats& s) {
    const int width = 20;
    const int filled = static_cast<int>(width * s.step / std::max<int64_t>(1, s.total_steps));
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(width, '.');
    std::fprintf(stderr,
                 "[%s] %lld/%lld | loss %.4f | lm %.4f | aux %.4f | aux acc %.3f | lr %.2e | "
                 "%.0f tok/s | %s%s\n",
                 bar.c_str(), static_cast<long long>(s.step), static_cast<long long>(s.total_steps),
                 s.loss, s.lm_loss, s.aux_loss, s.aux_acc, s.lr, s.tokens_per_s,
                 format_duration(s.elapsed_s).c_str(),
                 s.peak_memory_bytes > 0
                     ? (" | peak " + format_bytes(static_cast<double>(s.peak_memory_bytes))).c_str()
                     : "");
  };
  hooks.on_eval = [](const training::EvalStats& e) {
    std::fprintf(stderr, "eval @ %lld: loss %.4f | aux %.4f | P@1 %.4f | nDCG@10 %.4f (%lld)\n",
                 static_cast<long long>(e.step), e.loss, e.aux_loss, e.p1, e.ndcg10,
                 static_cast<long long>(e.count));
  };
  training::TrainResult result;
  BLOCKRANK_RETURN_IF_ERROR(training::train(c, *model, *train_data, eval_data.get(),
                                            resolve(".", flags.resume), hooks, &result));
  if (env.is_primary()) {
    std::printf("trained %lld steps; checkpoint %s\n", static_cast<long long>(result.steps),
                result.last_checkpoint.c_str());
  }
  return Status::ok();
}

}  // namespace

void add_train_command(CLI::App& app, CommandContext& ctx) {
  auto flags = std::make_shared<TrainFlags>();
  CLI::App* cmd = app.add_subcommand(
      "train",
      "Fine-tune a BlockRank reranker (LM loss on the answer + λ·InfoNCE on layer-l* attention)");
  cmd->add_option("--config", flags->config,
                  "Training config JSON (fields and defaults: training/trainer.h)")
      ->required();
  cmd->add_option("--resume", flags->resume,
                  "Continue from a checkpoint (or an output_dir: its latest checkpoint)");
  cmd->add_option("--device", flags->device, "Override the config's device (cpu, cuda, cuda:N)");
  cmd->add_option("--max-steps", flags->max_steps, "Override the config's max_steps (0 = keep)")
      ->capture_default_str();
  cmd->add_option("--threads", flags->threads, "CPU intra-op threads (0 = all cores)")
      ->capture_default_str();
  cmd->callback(
      [flags, &ctx]() { ctx.exit_code = report_status("train", run_train(*flags, ctx.logger)); });
}

}  // namespace blockrank
