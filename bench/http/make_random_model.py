#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes a random-weight Mistral-architecture BlockRank model of a chosen size in bf16 (config.json,
model.safetensors, blockrank.json, tokenizer.json), with torch + safetensors: the GPU twin of
make_tiny_model.py for serving benchmarks where the model must cost what a real one does. The
default shape is Qwen2.5-0.5B's (hidden 896, 14 / 2 heads of 64, FFN 4,864) with its l* = 15 and
16 layers (the layers past l* never run), on the llama2 reference tokenizer (vocabulary 32,000).
Its rankings are meaningless.
Usage: make_random_model.py OUT_DIR [--tokenizer JSON] [--hidden 896] [--layers 16] [--heads 14]
       [--kv-heads 2] [--ffn 4864]"""
import argparse
import json
import os
import shutil

import torch
from safetensors.torch import save_file


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--tokenizer", default=os.path.join(root, ".cache/tokenizers/llama2/tokenizer.json"))
    ap.add_argument("--hidden", type=int, default=896)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--heads", type=int, default=14)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ffn", type=int, default=4864)
    a = ap.parse_args()
    vocab, d = 32000, a.hidden // a.heads
    os.makedirs(a.out, exist_ok=True)
    shutil.copy(a.tokenizer, os.path.join(a.out, "tokenizer.json"))
    json.dump({"model_type": "mistral", "architectures": ["MistralForCausalLM"], "vocab_size": vocab,
               "hidden_size": a.hidden, "intermediate_size": a.ffn, "num_hidden_layers": a.layers,
               "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads, "head_dim": d,
               "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": True,
               "sliding_window": None, "bos_token_id": 1, "eos_token_id": 2,
               "torch_dtype": "bfloat16"}, open(os.path.join(a.out, "config.json"), "w"), indent=1)
    json.dump({"scoring_layer": a.layers - 1, "signal_rows": 2, "prompt_template": "mistral",
               "max_block_length": 128}, open(os.path.join(a.out, "blockrank.json"), "w"), indent=1)
    g = torch.Generator().manual_seed(1234)

    def mat(rows, cols, std=None):
        return (torch.randn(rows, cols, generator=g) * (std or cols ** -0.5)).to(torch.bfloat16)

    t = {"model.embed_tokens.weight": mat(vocab, a.hidden, 1.0),
         "model.norm.weight": torch.ones(a.hidden, dtype=torch.bfloat16)}
    for l in range(a.layers):
        p = f"model.layers.{l}."
        t[p + "input_layernorm.weight"] = torch.ones(a.hidden, dtype=torch.bfloat16)
        t[p + "post_attention_layernorm.weight"] = torch.ones(a.hidden, dtype=torch.bfloat16)
        t[p + "self_attn.q_proj.weight"] = mat(a.heads * d, a.hidden)
        t[p + "self_attn.k_proj.weight"] = mat(a.kv_heads * d, a.hidden)
        t[p + "self_attn.v_proj.weight"] = mat(a.kv_heads * d, a.hidden)
        t[p + "self_attn.o_proj.weight"] = mat(a.hidden, a.heads * d)
        t[p + "mlp.gate_proj.weight"] = mat(a.ffn, a.hidden)
        t[p + "mlp.up_proj.weight"] = mat(a.ffn, a.hidden)
        t[p + "mlp.down_proj.weight"] = mat(a.hidden, a.ffn)
    save_file(t, os.path.join(a.out, "model.safetensors"))


if __name__ == "__main__":
    main()
