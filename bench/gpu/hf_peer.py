#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""HF transformers peer for gpu_rerank_bench (docs/GPU.md's method): full-attention prefill of the same
listwise prompt (64-token instruction + N docs x 128 + 32-token query) through a random-weight
Mistral-7B- or Qwen2.5-0.5B-shaped model built from a config, SDPA attention, bf16, all layers, no LM
head (the bare *Model), median of 5 after 2 warm-ups. Prints a Markdown table."""
import argparse
import statistics
import time

import torch
import transformers


def build(name):
    if name == "qwen":
        cfg = transformers.Qwen2Config(
            vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
            num_attention_heads=14, num_key_value_heads=2, rope_theta=1e6, tie_word_embeddings=True,
            max_position_embeddings=131072)
        cls = transformers.Qwen2Model
    else:
        cfg = transformers.MistralConfig(
            vocab_size=32768, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
            num_attention_heads=32, num_key_value_heads=8, head_dim=128, rope_theta=1e6,
            max_position_embeddings=131072, sliding_window=None)
        cls = transformers.MistralModel
    cfg._attn_implementation = "sdpa"
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = cls(cfg)  # random init straight on the GPU, in bf16
    torch.set_default_dtype(torch.float32)
    return model.eval(), cfg


def reinit_like_blockrank(model):
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.Linear):
                mod.weight.normal_(0.0, mod.in_features ** -0.5)
                if mod.bias is not None:
                    mod.bias.normal_(0.0, 0.02)
            elif isinstance(mod, torch.nn.Embedding):
                mod.weight.normal_(0.0, 1.0)
            elif hasattr(mod, "weight") and mod.weight is not None and mod.weight.dim() == 1:
                mod.weight.fill_(1.0)  # RMSNorm


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mistral")
    ap.add_argument("--docs", type=int, nargs="+", default=[20, 50, 100, 200, 500])
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--init", choices=["hf", "blockrank"], default="hf",
                    help="hf: transformers' own init (N(0, 0.02) matrices and embeddings); "
                         "blockrank: Model::create_random's (N(0, 1/fan_in) matrices, N(0, 1) "
                         "embeddings, N(0, 0.02) biases, unit norms), to see whether the weights' "
                         "values move the timing (tensor-core power depends on the data)")
    ap.add_argument("--energy", action="store_true",
                    help="also report joules per pass, mean power and SM clock over the timed "
                         "reps (NVML; bench/gpu/nvml_energy.py)")
    a = ap.parse_args()
    model, cfg = build(a.model)
    if a.init == "blockrank":
        reinit_like_blockrank(model)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, "
          f"attn={getattr(cfg, '_attn_implementation', '?')}, init={a.init}")
    print(f"\n| model | N | tokens | HF SDPA full prefill ms (median of {a.reps}) | min |")
    print("| --- | --- | --- | --- | --- |")
    for n in a.docs:
        t = 64 + n * 128 + 32
        ids = torch.randint(0, cfg.vocab_size, (1, t), device="cuda")
        ms = []
        meter = None
        if a.energy:
            from nvml_energy import GpuEnergyMeter
            meter = GpuEnergyMeter(torch.cuda.current_device())
        with torch.inference_mode():
            for rep in range(a.warmup + a.reps):
                torch.cuda.synchronize()
                if meter is not None and rep == a.warmup:
                    meter.start()
                t0 = time.perf_counter()
                model(input_ids=ids, use_cache=False)
                torch.cuda.synchronize()
                if rep >= a.warmup:
                    ms.append((time.perf_counter() - t0) * 1e3)
        print(f"| {a.model} | {n} | {t} | {statistics.median(ms):.1f} | {min(ms):.1f} |", flush=True)
        if meter is not None:
            j, sec, w, mhz = meter.stop()
            print(f"energy {a.model} N={n}: {j / a.reps:.1f} J per pass, {w:.0f} W mean, "
                  f"SM clock {mhz:.0f} MHz mean (NVML over {a.reps} timed passes, {sec:.2f} s)",
                  flush=True)


if __name__ == "__main__":
    main()
