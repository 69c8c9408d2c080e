#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes a tiny random-weight Mistral-shaped BlockRank model (config.json, model.safetensors,
blockrank.json) with the llama2 reference tokenizer from .cache/tokenizers, for load tests and
smoke tests of the serving path. Its rankings are meaningless; its cost is that of the real code path.
Usage: make_tiny_model.py OUT_DIR [TOKENIZER_JSON] [HIDDEN] [LAYERS]
Pure Python (no numpy/torch needed)."""
import json, math, os, random, shutil, struct, sys

out = sys.argv[1]
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
tok = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, ".cache/tokenizers/llama2/tokenizer.json")
hidden = int(sys.argv[3]) if len(sys.argv) > 3 else 64
layers = int(sys.argv[4]) if len(sys.argv) > 4 else 2
if not os.path.exists(tok):
    sys.exit(f"no tokenizer at {tok} (run scripts/tokenizer-reference/setup.sh)")
vocab = 32000
heads, kv_heads = 4, 2
head_dim = hidden // heads
inter = hidden * 2
os.makedirs(out, exist_ok=True)
shutil.copy(tok, os.path.join(out, "tokenizer.json"))
json.dump({"model_type": "mistral", "architectures": ["MistralForCausalLM"], "vocab_size": vocab,
           "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
           "num_attention_heads": heads, "num_key_value_heads": kv_heads, "head_dim": head_dim,
           "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": True,
           "sliding_window": None, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"},
          open(os.path.join(out, "config.json"), "w"), indent=1)
json.dump({"scoring_layer": layers - 1, "signal_rows": 2, "prompt_template": "mistral",
           "max_block_length": 128}, open(os.path.join(out, "blockrank.json"), "w"), indent=1)
rng = random.Random(1234)
tensors = []
def mat(name, rows, cols, scale=None):
    s = scale if scale is not None else 1.0 / math.sqrt(cols)
    tensors.append((name, [rows, cols], struct.pack(f"<{rows * cols}f", *(rng.gauss(0, s) for _ in range(rows * cols)))))
def ones(name, n):
    tensors.append((name, [n], struct.pack(f"<{n}f", *([1.0] * n))))
mat("model.embed_tokens.weight", vocab, hidden, 1.0)
ones("model.norm.weight", hidden)
for l in range(layers):
    p = f"model.layers.{l}."
    ones(p + "input_layernorm.weight", hidden)
    ones(p + "post_attention_layernorm.weight", hidden)
    mat(p + "self_attn.q_proj.weight", heads * head_dim, hidden)
    mat(p + "self_attn.k_proj.weight", kv_heads * head_dim, hidden)
    mat(p + "self_attn.v_proj.weight", kv_heads * head_dim, hidden)
    mat(p + "self_attn.o_proj.weight", hidden, heads * head_dim)
    mat(p + "mlp.gate_proj.weight", inter, hidden)
    mat(p + "mlp.up_proj.weight", inter, hidden)
    mat(p + "mlp.down_proj.weight", hidden, inter)
header, offset = {}, 0
for name, shape, data in tensors:
    header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(data)]}
    offset += len(data)
h = json.dumps(header).encode()
h += b" " * ((8 - len(h) % 8) % 8)
with open(os.path.join(out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)))
    f.write(h)
    for _, _, data in tensors:
        f.write(data)
print(f"wrote {out}: hidden {hidden}, {layers} layers, vocab {vocab}, {offset / 1e6:.1f} MB")
