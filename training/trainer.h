// SPDX-License-Identifier: Apache-2.0
// The BlockRank training loop: configuration (one JSON file, every field with its default here),
// the seeded data order, the step (forward → loss → backward → all-reduce → clip → AdamW → log),
// held-out evaluation, and checkpoints that are Hugging Face model directories plus a `trainer/`
// folder (optimizer moments, fp32 masters when the model is saved in bf16, step and data position)
// so `--resume` continues exactly where a run stopped.
//
// Checkpoint layout (`output_dir/checkpoint-000123/`): config.json, blockrank.json,
// model.safetensors (or shards + index), tokenizer files copied from the tokenizer source,
// trainer/trainer_state.json, trainer/optimizer.safetensors (or shards), trainer/master.safetensors
// (bf16 saves only). Written into a temporary directory and renamed, so a crash never leaves a
// half-written checkpoint; `output_dir/latest` names the newest.
//
// Thread-safety: one training run per process.
#ifndef BLOCKRANK_TRAINING_TRAINER_H_
#define BLOCKRANK_TRAINING_TRAINER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "blockrank/status.h"
#include "plugin/base/logging.h"
#include "training/example.h"
#include "training/trainable_model.h"

namespace blockrank::training {

class Reducer;  // training/distributed/distributed.h

/// Everything `blockrank train --config F.json` reads. Field names in the JSON are the member
/// names; unknown fields are an error (a typo must not silently train with a default).
struct TrainConfig {
  // --- model ---
  /// A Hugging Face model directory to start from (weights, config.json, blockrank.json).
  std::string model_dir;
  /// Or a config.json to initialise randomly (with `blockrank` settings below). One of the two.
  std::string model_config;
  /// tokenizer.json (or a directory holding one): used to build examples and copied into every
  /// checkpoint. Default: model_dir.
  std::string tokenizer;
  // --- data ---
  std::string train_file;  ///< upstream JSONL (BLOCKRANK.md §5.1)
  std::string eval_file;   ///< held-out JSONL; empty: no evaluation
  /// Causal-LM pretraining instead of BlockRank fine-tuning (training/pretrain.h): a JSONL corpus
  /// ("title"/"text") cut into chunks; every pretrain_eval_every-th chunk is held out for
  /// evaluation (0: none). Excludes train_file and the synthetic task.
  std::string pretrain_file;
  int64_t pretrain_chunk_tokens = 256;
  int64_t pretrain_eval_every = 50;
  /// Synthetic rare-token examples instead of files (tests, benchmarks): how many training and
  /// eval examples; 0 = use the files.
  int64_t synthetic_train_examples = 0;
  int64_t synthetic_eval_examples = 0;
  int32_t synthetic_instruction_tokens =
      4;                                 ///< synthetic shape: instruction tokens before the query
  int32_t synthetic_doc_tokens = 8;      ///< synthetic shape: longest document (id included)
  int32_t synthetic_min_doc_tokens = 4;  ///< synthetic shape: shortest document
  int32_t synthetic_query_tokens = 3;    ///< synthetic shape: query length (one rare token)
  double synthetic_distractor_rate = 0.25;  ///< synthetic: rare tokens in negatives (synthetic.h)
  int32_t num_documents = 30;               ///< N candidates per prompt (§1.5). Default: 30.
  int64_t max_block_length = 160;           ///< H cap (§1.4). Default: 160.
  std::string prompt_template = "mistral";  ///< "mistral" or "chatml" ("qwen")
  bool skip_bad = false;                    ///< skip bad JSONL lines (else fatal)
  int64_t max_eval_examples = 500;          ///< evaluate on at most this many. Default: 500.
  // --- optimisation ---
  int64_t max_steps = 0;  ///< optimizer steps; 0: `epochs` passes over the data
  double epochs = 1.0;
  int64_t batch_size = 1;     ///< examples per micro-batch (per process)
  int64_t grad_accum = 1;     ///< micro-batches per optimizer step
  double lr = 3e-6;           ///< peak learning rate (§7: 3e-6 full fine-tuning)
  int64_t warmup_steps = -1;  ///< -1: warmup_ratio · total steps
  double warmup_ratio = 0.01;
  double min_lr_ratio = 0.0;
  double weight_decay = 0.0;
  /// Decay the matrices towards the starting weights (the initialisation or the loaded model)
  /// instead of towards zero: training can then only refine that start
  /// (AdamWOptions::decay_to_reference).
  bool weight_decay_to_init = false;
  double beta1 = 0.9, beta2 = 0.999, adam_eps = 1e-8;
  double max_grad_norm = 1.0;
  double aux_weight = 0.1;  ///< λ (§3.2)
  /// Weight of the answer-token LM loss; 0 drops it (the forward then stops at the aux layer).
  double lm_weight = 1.0;
  /// Parameter-name prefixes kept fixed during training (e.g. "model.embed_tokens." to keep the
  /// lexical prior's token identities); an entry that names no parameter is an error.
  std::vector<std::string> freeze;
  double temperature = 0.05;  ///< τ (§3.2)
  int64_t aux_layer = -1;     ///< l*; -1: blockrank.json's scoring_layer
  /// Signal rows per prompt (the last rows of the query block, BLOCKRANK.md §1.6), written into the
  /// checkpoint's blockrank.json; 0: the model's setting (2 for a new model).
  int64_t signal_rows = 0;
  /// Initialisation of a new model (model_config): "random" (HF init) or "lexical"
  /// (training/lexical_init.h: identity layers below l* and token matching at l*).
  std::string init = "random";
  double lexical_match_logit = 8.0;  ///< "lexical": q·k/sqrt(D) of a token with itself
  /// "lexical": make the signal rows of the query block's fixed text neutral (LexicalInitOptions::
  /// neutral_tokens), anchored on the first token of `lexical_anchor_text` as it follows "| " in
  /// a document's id line (Mistral template: "ID: k | CONTENT: ...").
  bool lexical_neutral_template = false;
  std::string lexical_anchor_text = "CONTENT";
  uint64_t seed = 42;
  std::string device = "cpu";  ///< "cpu", "cuda", "cuda:1"
  std::string dtype;           ///< "float32" | "bfloat16"; default: bf16 on CUDA, fp32 on CPU
  // --- output ---
  std::string output_dir;
  int64_t log_interval = 10;           ///< steps between progress lines / log records
  int64_t eval_interval = 500;         ///< 0: only at the end
  int64_t save_interval = 500;         ///< 0: only at the end
  bool save_final = true;              ///< checkpoint after the last step (benchmarks: false)
  int64_t save_total_limit = 2;        ///< checkpoints kept (oldest removed); 0: all
  std::string save_dtype;              ///< model weights on disk; default: the compute dtype
  int64_t max_shard_bytes = 15 << 20;  ///< safetensors shard size. Default: 15 MiB.

  /// kInvalidArgument naming the field for an inconsistent configuration.
  Status validate() const;
};

/// Parses the config JSON (`source` names it in errors); relative paths are resolved against the
/// file's directory by the caller.
Status parse_train_config(const std::string& json_text,
                          const std::string& source,
                          TrainConfig* out);

/// Training examples by index (the trainer asks in its own shuffled order).
class ExampleSource {
 public:
  virtual ~ExampleSource() = default;
  virtual int64_t size() const = 0;
  virtual Status get(int64_t index, TrainingExample* out) const = 0;
};

/// The synthetic rare-token task as a source (examples seed + index).
std::unique_ptr<ExampleSource> synthetic_source(const TrainConfig& config,
                                                int32_t vocab_size,
                                                int64_t count,
                                                uint64_t seed);

struct StepStats {
  int64_t step = 0;  ///< optimizer steps done
  int64_t total_steps = 0;
  /// Over the whole step's examples, every rank's under data parallelism (the same values as one
  /// process with the global batch).
  double loss = 0, lm_loss = 0, aux_loss = 0, aux_acc = 0;
  double lr = 0, grad_norm = 0;
  double tokens_per_s = 0;  ///< real (unpadded) tokens of this step, all ranks / its wall time
  int64_t tokens = 0;       ///< real tokens seen so far
  double elapsed_s = 0;
  int64_t peak_memory_bytes = 0;  ///< CUDA allocator peak (0 on CPU)
};

struct EvalStats {
  int64_t step = 0;
  double loss = 0, lm_loss = 0, aux_loss = 0;
  double p1 = 0, ndcg10 = 0;  ///< attention-inference ranking of the in-prompt candidates
  int64_t count = 0;
};

struct TrainHooks {
  std::shared_ptr<Logger> logger = Logger::null_logger();
  std::function<void(const StepStats&)> on_step;  ///< every log_interval steps (rank 0)
  std::function<void(const EvalStats&)> on_eval;
  /// Data-parallel gradient reduction; nullptr = one process.
  Reducer* reducer = nullptr;
  /// Stop (with a checkpoint) after this many steps of this call, as an interrupted run would;
  /// 0 = run to the end. The schedule still spans the whole run. For tests.
  int64_t stop_after_steps = 0;
};

struct TrainResult {
  int64_t steps = 0;
  StepStats last_step;
  EvalStats last_eval;
  std::string last_checkpoint;
};

/// Builds the model the config asks for (model_dir, or model_config + random init from `seed`) on
/// config.device in config.dtype.
Status create_model(const TrainConfig& config, std::unique_ptr<TrainableModel>* out);

/// Runs training. `resume_dir` (a checkpoint, or an output_dir with a `latest` file; empty: fresh)
/// restores the weights, optimizer state, step and data position. Writes checkpoints and
/// output_dir/log.jsonl (one JSON object per logged step / evaluation) on rank 0.
Status train(const TrainConfig& config,
             TrainableModel& model,
             const ExampleSource& train_data,
             const ExampleSource* eval_data,
             const std::string& resume_dir,
             const TrainHooks& hooks,
             TrainResult* result);

/// Evaluates on at most `max_examples` examples (no gradients): mean losses, P@1 and nDCG@10 of
/// the layer-l* attention scores.
Status evaluate(const TrainConfig& config,
                const TrainableModel& model,
                const ExampleSource& data,
                EvalStats* out);

}  // namespace blockrank::training

#endif  // BLOCKRANK_TRAINING_TRAINER_H_
