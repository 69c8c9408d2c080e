// SPDX-License-Identifier: Apache-2.0
// The training loop on CPU with a tiny random Llama-shaped model and the synthetic rare-token task
// (training/synthetic.h: the positive document holds the query's rare token; chance P@1 = 1/N):
//  - the loss falls and the held-out aux accuracy / P@1 rise well above chance within a bounded
//    number of steps;
//  - an interrupted run resumed from its checkpoint ends with the same weights as an uninterrupted
//    run (gradient accumulation on);
//  - the checkpoint loads into ranker/core's Model, which ranks with it;
//  - config errors name the field.
#include "training/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "ranker/core/model.h"
#include "ranker/core/model_config.h"
#include "test_util.h"
#include "training/lexical_init.h"
#include "training/loss.h"
#include "training/optimizer.h"

namespace blockrank::training {
namespace {

const char* kTinyConfig = R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
  "vocab_size": 64, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
  "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
  "tie_word_embeddings": false})";

TrainConfig tiny_config(const blockrank::testing::TempDir& tmp, const std::string& out) {
  blockrank::testing::write_text(tmp.file("config.json"), kTinyConfig);
  TrainConfig c;
  c.model_config = tmp.file("config.json");
  c.output_dir = tmp.file(out);
  c.synthetic_train_examples = 2048;
  c.synthetic_eval_examples = 128;
  c.num_documents = 4;
  c.max_block_length = 16;
  c.aux_layer = 1;
  c.batch_size = 8;
  c.lr = 3e-3;
  c.warmup_steps = 10;
  c.aux_weight = 1.0;
  c.temperature = 0.05;
  c.log_interval = 10;
  c.eval_interval = 0;
  c.save_interval = 0;
  c.seed = 5;
  // 5% of negative-document tokens are other rare tokens: "has a rare token" alone gives P@1 about
  // 0.65, so passing the 0.8 bar needs the query-document match.
  c.synthetic_distractor_rate = 0.05;
  return c;
}

struct TrainRun {
  std::unique_ptr<TrainableModel> model;
  std::vector<StepStats> steps;
  std::vector<EvalStats> evals;
  TrainResult result;
};

Status run(const TrainConfig& c, const std::string& resume, int64_t stop_after, TrainRun* r) {
  BLOCKRANK_RETURN_IF_ERROR(create_model(c, &r->model));
  const int32_t vocab = static_cast<int32_t>(r->model->config().vocab_size);
  auto train_data = synthetic_source(c, vocab, c.synthetic_train_examples, c.seed);
  auto eval_data = synthetic_source(c, vocab, c.synthetic_eval_examples, c.seed + 1);
  TrainHooks hooks;
  hooks.on_step = [r](const StepStats& s) { r->steps.push_back(s); };
  hooks.on_eval = [r](const EvalStats& e) { r->evals.push_back(e); };
  hooks.stop_after_steps = stop_after;
  return train(c, *r->model, *train_data, eval_data.get(), resume, hooks, &r->result);
}

TEST(TrainerTest, LearnsSyntheticTask) {
  blockrank::testing::TempDir tmp;
  TrainConfig c = tiny_config(tmp, "out");
  c.max_steps = 150;
  c.eval_interval = 150;
  // Before training: chance-level ranking.
  std::unique_ptr<TrainableModel> fresh;
  ASSERT_OK(create_model(c, &fresh));
  auto eval_data = synthetic_source(c, 64, c.synthetic_eval_examples, c.seed + 1);
  EvalStats before;
  ASSERT_OK(evaluate(c, *fresh, *eval_data, &before));

  TrainRun r;
  ASSERT_OK(run(c, "", 0, &r));
  ASSERT_EQ(r.steps.size(), 15u);
  ASSERT_EQ(r.evals.size(), 1u);
  const StepStats& first = r.steps.front();
  const StepStats& last = r.steps.back();
  std::printf(
      "eval before: P@1 %.3f nDCG@10 %.3f aux %.3f | step %lld loss %.3f aux acc %.3f | "
      "step %lld loss %.3f aux acc %.3f | eval after: P@1 %.3f nDCG@10 %.3f aux %.3f\n",
      before.p1, before.ndcg10, before.aux_loss, static_cast<long long>(first.step), first.loss,
      first.aux_acc, static_cast<long long>(last.step), last.loss, last.aux_acc, r.evals[0].p1,
      r.evals[0].ndcg10, r.evals[0].aux_loss);
  EXPECT_LT(before.p1, 0.45);  // chance is 0.25 with 4 documents
  EXPECT_LT(last.loss, 0.5 * first.loss);
  EXPECT_GT(r.evals[0].p1, 0.8);
  EXPECT_GT(r.evals[0].ndcg10, before.ndcg10 + 0.2);
  EXPECT_GT(last.tokens_per_s, 0.0);
  // The log is one JSON object per logged step plus the evaluation.
  std::ifstream log(c.output_dir + "/log.jsonl");
  int lines = 0;
  for (std::string line; std::getline(log, line);) {
    ++lines;
  }
  EXPECT_EQ(lines, 16);

  // The final checkpoint is a model directory ranker/core loads and ranks with: its attention
  // inference gives the trainer's scores.
  std::unique_ptr<Model> inference;
  ASSERT_OK(Model::load(r.result.last_checkpoint, LoadOptions{}, &inference));
  EXPECT_EQ(inference->settings().scoring_layer, 1);
  int correct = 0;
  double max_diff = 0;
  for (int i = 0; i < 32; ++i) {
    TrainingExample e;
    ASSERT_OK(eval_data->get(i, &e));
    // Inference sees the prompt up to and including "[" (the signal row ends the sequence).
    std::vector<int64_t> ids(e.input_ids.begin(), e.input_ids.begin() + e.signal_row + 1);
    BlockLayout layout;
    layout.block_lengths.assign(e.block_lengths.begin(), e.block_lengths.end());
    layout.block_lengths.back() -= static_cast<int64_t>(e.input_ids.size()) - e.signal_row - 1;
    auto scores = inference->score_documents(ids, layout, 1, 2);
    ASSERT_OK(scores.status());
    Batch batch;
    ASSERT_OK(collate({&e}, CollateOptions{}, 64, at::kCPU, &batch));
    ForwardOptions fo;
    fo.lm = false;
    fo.aux_layer = 1;
    auto out = r.model->forward(batch, fo);
    ASSERT_OK(out.status());
    const at::Tensor mine = document_scores(out->signal_logits, batch)[0];
    for (size_t d = 0; d < scores->size(); ++d) {
      max_diff =
          std::max(max_diff, std::abs(mine[static_cast<int64_t>(d)].item<double>() - (*scores)[d]));
    }
    const auto top = std::max_element(scores->begin(), scores->end()) - scores->begin();
    correct += top == e.positives[0] ? 1 : 0;
  }
  std::printf("checkpoint in ranker/core Model: P@1 %d/32, max |Δscore| vs trainer %.2g\n", correct,
              max_diff);
  EXPECT_LT(max_diff, 1e-5);
  EXPECT_GT(correct, 20) << "inference P@1 on 32 held-out examples";
}

TEST(TrainerTest, ResumeEqualsUninterruptedRun) {
  blockrank::testing::TempDir tmp;
  TrainConfig c = tiny_config(tmp, "straight");
  c.save_dtype = "bfloat16";  // the model files are rounded; resuming must use the fp32 masters
  c.max_steps = 12;
  c.batch_size = 2;
  c.grad_accum = 2;  // accumulation on, so the resumed state includes it
  c.log_interval = 1;
  TrainRun straight;
  ASSERT_OK(run(c, "", 0, &straight));

  c.output_dir = tmp.file("interrupted");
  TrainRun first_half;
  ASSERT_OK(run(c, "", 6, &first_half));
  ASSERT_EQ(first_half.result.steps, 6);
  TrainRun second_half;
  ASSERT_OK(run(c, c.output_dir, 0, &second_half));  // the output dir: resumes from `latest`
  ASSERT_EQ(second_half.result.steps, 12);
  ASSERT_EQ(second_half.steps.size(), 6u);
  EXPECT_EQ(second_half.steps.front().step, 7);

  double max_diff = 0;
  const auto& a = straight.model->parameters();
  const auto& b = second_half.model->parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    max_diff = std::max(max_diff, (a[i].tensor - b[i].tensor).abs().max().item<double>());
  }
  std::printf("max |Δparam| straight vs resumed after 12 steps: %.3g\n", max_diff);
  EXPECT_LE(max_diff, 1e-6);
  for (size_t s = 0; s < 6; ++s) {
    EXPECT_NEAR(straight.steps[s + 6].loss, second_half.steps[s].loss, 1e-5);
    EXPECT_EQ(straight.steps[s + 6].lr, second_half.steps[s].lr);
  }
  // save_total_limit (2) pruned the older checkpoints.
  int checkpoints = 0;
  for (const auto& e : std::filesystem::directory_iterator(c.output_dir)) {
    checkpoints += e.path().filename().string().rfind("checkpoint-", 0) == 0 ? 1 : 0;
  }
  EXPECT_EQ(checkpoints, 2);
}

TEST(TrainerTest, ConfigErrorsNameTheField) {
  TrainConfig c;
  Status s = parse_train_config(R"({"learning_rate": 1})", "cfg.json", &c);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("learning_rate"), std::string::npos);
  s = parse_train_config(R"({"lr": "fast"})", "cfg.json", &c);
  EXPECT_NE(s.message().find("'lr'"), std::string::npos);
  ASSERT_OK(parse_train_config(
      R"({"model_dir": "m", "train_file": "t.jsonl", "output_dir": "o", "batch_size": 4})",
      "cfg.json", &c));
  EXPECT_EQ(c.batch_size, 4);
  EXPECT_EQ(c.num_documents, 30);
  ASSERT_OK(c.validate());
  c.model_config = "config.json";
  EXPECT_EQ(c.validate().code(), StatusCode::kInvalidArgument);
  c.model_config.clear();
  c.dtype = "float16";
  EXPECT_NE(c.validate().message().find("dtype"), std::string::npos);
  c.dtype.clear();
  c.init = "lexical";  // initialises a new model: not with model_dir
  EXPECT_NE(c.validate().message().find("'init'"), std::string::npos);
  c.init = "smart";
  EXPECT_NE(c.validate().message().find("'init'"), std::string::npos);
  c.init = "random";
  c.lm_weight = 0;
  c.aux_weight = 0;
  EXPECT_NE(c.validate().message().find("lm_weight"), std::string::npos);
}

// The lexical prior (training/lexical_init.h) ranks the synthetic task before any training step,
// where the same model from the plain random init is at chance; and blockrank.json carries the
// signal rows and block length. A 64-wide head (44 slow RoPE dimensions at theta 1e6 over this
// layout) gives the token match room above the noise.
TEST(TrainerTest, LexicalInitRanksBeforeTraining) {
  blockrank::testing::TempDir tmp;
  TrainConfig c = tiny_config(tmp, "out");
  blockrank::testing::write_text(c.model_config, R"({"architectures": ["LlamaForCausalLM"],
    "model_type": "llama", "vocab_size": 64, "hidden_size": 128, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
    "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": false})");
  c.signal_rows = 5;  // "[", "Answer" and the three query tokens
  auto eval_data = synthetic_source(c, 64, c.synthetic_eval_examples, c.seed + 1);
  EvalStats random_init, lexical;
  std::unique_ptr<TrainableModel> m;
  ASSERT_OK(create_model(c, &m));
  ASSERT_OK(evaluate(c, *m, *eval_data, &random_init));
  c.init = "lexical";
  ASSERT_OK(create_model(c, &m));
  ASSERT_OK(evaluate(c, *m, *eval_data, &lexical));
  std::printf("P@1 random init %.3f, lexical init %.3f (chance 0.25)\n", random_init.p1,
              lexical.p1);
  EXPECT_LT(random_init.p1, 0.45);
  EXPECT_GT(lexical.p1, 0.6);
  EXPECT_EQ(m->settings().signal_rows, 5);
  EXPECT_EQ(m->settings().max_block_length, 16);
  for (const NamedParameter& p : m->parameters()) {
    if (p.name == "model.layers.0.self_attn.o_proj.weight" ||
        p.name == "model.layers.0.mlp.down_proj.weight") {
      EXPECT_EQ(p.tensor.abs().max().item<float>(), 0.0f) << p.name;
    }
  }
  // The init refuses what it cannot build.
  LexicalInitOptions lo;
  lo.layer = 2;
  EXPECT_EQ(apply_lexical_init(lo, m.get()).code(), StatusCode::kInvalidArgument);
  lo.layer = 1;
  lo.block_length = 1 << 20;  // no RoPE pair is slow enough over a million positions
  EXPECT_NE(apply_lexical_init(lo, m.get()).message().find("rope_theta"), std::string::npos);
}

// The neutral-template part of the lexical init, checked on the weights: with RoPE applied at a
// query-row and a document position of the BlockRank layout, a token's signal row matches the same
// token's key at about match_logit, a neutral token's row goes to the anchor at about anchor_logit
// (above its own-token match), and an ordinary token's row does not see the anchor.
TEST(TrainerTest, LexicalInitNeutralRowsGoToTheAnchor) {
  const std::string cfg = R"({"model_type": "llama", "vocab_size": 64, "hidden_size": 128,
    "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
    "num_key_value_heads": 1, "rope_theta": 1000000.0, "tie_word_embeddings": true})";
  auto config = parse_model_config(cfg, "config.json");
  ASSERT_TRUE(config.is_ok());
  BlockRankSettings settings;
  settings.scoring_layer = 1;
  std::unique_ptr<TrainableModel> m;
  ASSERT_OK(TrainableModel::create_random(*config, cfg, settings, ModelOptions{}, 3, &m));
  LexicalInitOptions lo;
  lo.layer = 1;
  lo.block_length = 16;
  lo.neutral_tokens = {10, 11, 12};
  lo.anchor_token = 20;
  ASSERT_OK(apply_lexical_init(lo, m.get()));
  at::Tensor embed, qw, kw;
  for (const NamedParameter& p : m->parameters()) {
    if (p.name == "model.embed_tokens.weight")
      embed = p.tensor.to(at::kDouble);
    if (p.name == "model.layers.1.self_attn.q_proj.weight")
      qw = p.tensor.to(at::kDouble);
    if (p.name == "model.layers.1.self_attn.k_proj.weight")
      kw = p.tensor.to(at::kDouble);
  }
  const int64_t d = 64;
  auto rope = [&](at::Tensor x, double pos) {  // HF rotate_half RoPE of one head vector
    std::vector<double> c(d), s(d);
    for (int64_t i = 0; i < d / 2; ++i) {
      const double a = pos / std::pow(1e6, 2.0 * i / d);
      c[i] = c[i + d / 2] = std::cos(a);
      s[i] = s[i + d / 2] = std::sin(a);
    }
    at::Tensor rot = at::cat({-x.narrow(0, d / 2, d / 2), x.narrow(0, 0, d / 2)});
    return x * at::tensor(c, at::kDouble) + rot * at::tensor(s, at::kDouble);
  };
  auto norm = [&](int t) { return embed[t] / embed[t].pow(2).mean().sqrt(); };
  auto logit = [&](int query_token, int key_token) {
    at::Tensor q = rope(at::matmul(qw, norm(query_token)).narrow(0, 0, d), 16384 + 8);
    at::Tensor k = rope(at::matmul(kw, norm(key_token)), 16 + 5);
    return (q * k).sum().item<double>() / 8.0;
  };
  for (int t : {30, 41, 52}) {
    EXPECT_GT(logit(t, t), 4.0) << t;             // own token: about match_logit 8
    EXPECT_LT(std::abs(logit(t, 20)), 4.0) << t;  // the anchor is just another token
  }
  // Over many ordinary tokens the anchor logit is the plain token-mismatch noise (sd about
  // match_logit / sqrt(2 * slow pairs) = 8 / sqrt(2 * 22) = 1.2): their embeddings carry no u.
  double sq = 0;
  for (int t = 21; t < 64; ++t) {
    sq += logit(t, 20) * logit(t, 20);
  }
  const double rms = std::sqrt(sq / 43);
  std::printf("ordinary rows vs the anchor: rms logit %.2f\n", rms);
  EXPECT_LT(rms, 2.0);
  for (int n : {10, 11, 12}) {
    EXPECT_GT(logit(n, 20), 12.0) << n;  // about anchor_logit 20
    EXPECT_GT(logit(n, 20), logit(n, n) + 6.0) << n;
  }
}

// lm_weight 0 trains the aux loss alone: the LM-only weights (final norm, untied LM head) get no
// gradient and stay as initialised, and the ranking still improves.
TEST(TrainerTest, AuxOnlyTrainingLeavesLmWeights) {
  blockrank::testing::TempDir tmp;
  TrainConfig c = tiny_config(tmp, "out");
  c.lm_weight = 0;
  c.max_steps = 150;
  c.eval_interval = 150;
  std::unique_ptr<TrainableModel> fresh;
  ASSERT_OK(create_model(c, &fresh));
  at::Tensor head_before, norm_before;
  for (const NamedParameter& p : fresh->parameters()) {
    if (p.name == "lm_head.weight")
      head_before = p.tensor.clone();
    if (p.name == "model.norm.weight")
      norm_before = p.tensor.clone();
  }
  ASSERT_TRUE(head_before.defined());
  TrainRun r;
  ASSERT_OK(run(c, "", 0, &r));
  ASSERT_EQ(r.evals.size(), 1u);
  EXPECT_EQ(r.steps.back().lm_loss, 0.0);
  EXPECT_GT(r.evals[0].p1, 0.8);
  for (const NamedParameter& p : r.model->parameters()) {
    if (p.name == "lm_head.weight") {
      EXPECT_TRUE(at::equal(p.tensor, head_before));
    }
    if (p.name == "model.norm.weight") {
      EXPECT_TRUE(at::equal(p.tensor, norm_before));
    }
  }
}

// 'freeze' keeps the named parameters fixed and trains the rest; a prefix that names nothing is an
// error.
TEST(TrainerTest, FreezeKeepsParametersFixed) {
  blockrank::testing::TempDir tmp;
  TrainConfig c = tiny_config(tmp, "out");
  c.max_steps = 20;
  c.freeze = {"model.embed_tokens.", "model.layers.0."};
  std::unique_ptr<TrainableModel> fresh;
  ASSERT_OK(create_model(c, &fresh));
  std::map<std::string, at::Tensor> before;
  for (const NamedParameter& p : fresh->parameters()) {
    before[p.name] = p.tensor.clone();
  }
  TrainRun r;
  ASSERT_OK(run(c, "", 0, &r));
  int frozen = 0, moved = 0;
  for (const NamedParameter& p : r.model->parameters()) {
    const bool same = at::equal(p.tensor, before.at(p.name));
    if (p.name.rfind("model.embed_tokens.", 0) == 0 || p.name.rfind("model.layers.0.", 0) == 0) {
      EXPECT_TRUE(same) << p.name;
      ++frozen;
    } else if (!same) {
      ++moved;
    }
  }
  EXPECT_GT(frozen, 5);
  EXPECT_GT(moved, 5);
  c.freeze = {"model.layer.0."};
  c.output_dir = tmp.file("out2");
  TrainRun bad;
  const Status s = run(c, "", 0, &bad);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("model.layer.0."), std::string::npos) << s.message();
}

TEST(TrainerTest, AdamWDecaysTowardsTheReference) {
  for (const bool to_reference : {true, false}) {
    at::Tensor w = at::randn({4, 3}, at::kDouble);
    w.set_requires_grad(true);
    AdamWOptions o;
    o.weight_decay = 0.5;
    o.decay_to_reference = to_reference;
    AdamW opt({NamedParameter{"w", w}}, o);
    const at::Tensor start = w.detach().clone();
    opt.set_reference();
    {
      at::NoGradGuard no_grad;
      w.add_(1.0);  // training moved it away from the start
    }
    w.mutable_grad() = at::zeros_like(w);  // no gradient step: only the decay acts
    opt.step(0.1);
    const at::Tensor expected = to_reference ? start + 1.0 - 0.05 : (start + 1.0) * 0.95;
    EXPECT_TRUE(at::allclose(w.detach(), expected, 1e-12, 1e-12))
        << "to_reference " << to_reference;
  }
}

// Training with a strong pull towards the start stays near it; plain weight decay of the same
// strength shrinks the weights instead; without decay they drift further.
TEST(TrainerTest, WeightDecayToInitKeepsTheStart) {
  blockrank::testing::TempDir tmp;
  TrainConfig base = tiny_config(tmp, "out");
  base.max_steps = 20;
  std::unique_ptr<TrainableModel> fresh;
  ASSERT_OK(create_model(base, &fresh));
  std::map<std::string, at::Tensor> start;
  for (const NamedParameter& p : fresh->parameters()) {
    start[p.name] = p.tensor.clone();
  }
  // Mean |p - p0| and mean |p| over the matrices after training with `c`.
  auto measure = [&](TrainConfig c, const std::string& out, double* drift, double* size) {
    c.output_dir = tmp.file(out);
    TrainRun r;
    ASSERT_OK(run(c, "", 0, &r));
    double d = 0, m = 0;
    int64_t n = 0;
    for (const NamedParameter& p : r.model->parameters()) {
      if (p.tensor.dim() >= 2) {
        d += (p.tensor - start.at(p.name)).abs().sum().item<double>();
        m += p.tensor.abs().sum().item<double>();
        n += p.tensor.numel();
      }
    }
    *drift = d / static_cast<double>(n);
    *size = m / static_cast<double>(n);
  };
  TrainConfig pull = base, shrink = base, none = base;
  pull.weight_decay = shrink.weight_decay = 1.0 / base.lr;  // lr · wd = 1 at the peak
  pull.weight_decay_to_init = true;
  none.weight_decay = 0.0;
  double pull_drift = 0, pull_size = 0, shrink_drift = 0, shrink_size = 0, none_drift = 0,
         none_size = 0;
  measure(pull, "pull", &pull_drift, &pull_size);
  measure(shrink, "shrink", &shrink_drift, &shrink_size);
  measure(none, "none", &none_drift, &none_size);
  std::printf("drift: to init %.3e, to zero %.3e, none %.3e; size %.3e / %.3e / %.3e\n", pull_drift,
              shrink_drift, none_drift, pull_size, shrink_size, none_size);
  EXPECT_LT(pull_drift, 0.5 * none_drift);
  EXPECT_LT(shrink_size, 0.5 * pull_size);

  TrainConfig bad = base;
  bad.weight_decay = 0.0;
  bad.weight_decay_to_init = true;
  bad.output_dir = tmp.file("bad");
  TrainRun r;
  const Status s = run(bad, "", 0, &r);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("weight_decay_to_init"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace blockrank::training
