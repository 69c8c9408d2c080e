#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""HF transformers + PyTorch peer for `blockrank train` (bench/training/run_h200_train.sh): training
steps of a random-weight Qwen2.5-0.5B-shaped Qwen2ForCausalLM on one BlockRank sequence of the same
shape as the synthetic task our trainer runs there (instruction + query, N documents x L tokens, query
block + completion "[" id "]" EOS), with what upstream's trainer does per step:
  - fp32 master weights, bf16 autocast (HF Trainer bf16=True), torch.optim.AdamW, clip 1.0;
  - loss = LM cross-entropy on the completion (HF's labels path: full [T, V] logits) + 0.1 * the
    multi-positive InfoNCE (tau 0.05) on layer l*'s signal-row attention logits over document tokens
    (BLOCKRANK.md 3.2), recomputed from a hook on layer l*'s attention input (q/k projections + RoPE);
  - attention: --attn blockrank = SDPA with the dense 4-D BlockRank boolean mask [1, 1, T, T] and
    BlockRank positions (2.1/2.2; what upstream's sdpa_blockrank computes, without its block
    decomposition), --attn causal = plain causal SDPA (flash), positions 0..T-1 (a lower bound: the
    cheapest attention a dense trainer could use; not the BlockRank model).
Prints tokens/s (real tokens / median step time) and the peak allocated memory
(torch.cuda.max_memory_allocated), the same allocator statistic our trainer reports."""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F
import transformers
from transformers.models.qwen2 import modeling_qwen2


def build_sequence(n_docs, doc_len, instr_len, vocab, device):
    """Token ids, block lengths and label/signal positions (same shape as training/synthetic.cc)."""
    g = torch.Generator().manual_seed(0)
    blocks = [instr_len + 3] + [doc_len] * n_docs + [2 + 3 + 1 + 4]
    t = sum(blocks)
    ids = torch.randint(100, vocab, (t,), generator=g)
    positive = 7
    labels = torch.full((t,), -100)
    labels[t - 4:] = ids[t - 4:]
    signal = t - 4  # the "[" token
    return ids.to(device), blocks, labels.to(device), signal, positive


def blockrank_mask_and_positions(blocks, device, offset=16384):
    t = sum(blocks)
    vis = torch.zeros(t, t, dtype=torch.bool)
    pos = torch.zeros(t, dtype=torch.long)
    start, l0, m = 0, blocks[0], len(blocks)
    for b, n in enumerate(blocks):
        vis[start:start + n, start:start + n] = torch.ones(n, n, dtype=torch.bool).tril()
        if 0 < b < m - 1:
            vis[start:start + n, :l0] = True
            pos[start:start + n] = torch.arange(l0, l0 + n)
        elif b == m - 1:
            vis[start:start + n, :start] = True
            pos[start:start + n] = torch.arange(offset, offset + n)
        else:
            pos[:n] = torch.arange(n)
        start += n
    return vis.view(1, 1, t, t).to(device), pos.view(1, t).to(device)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--attn", choices=["blockrank", "causal"], default="blockrank")
    ap.add_argument("--docs", type=int, default=30)
    ap.add_argument("--doc-tokens", type=int, default=160)
    ap.add_argument("--instruction-tokens", type=int, default=70)
    ap.add_argument("--layer", type=int, default=15, help="l* (Qwen2.5-0.5B: 15 of 24)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()

    cfg = transformers.Qwen2Config(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, rope_theta=1e6, tie_word_embeddings=True,
        max_position_embeddings=32768)
    cfg._attn_implementation = "sdpa"
    with torch.device("cuda"):
        model = transformers.Qwen2ForCausalLM(cfg)  # fp32 masters
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.0)
    ids, blocks, labels, signal, positive = build_sequence(
        a.docs, a.doc_tokens, a.instruction_tokens, cfg.vocab_size, "cuda")
    t = ids.numel()
    if a.attn == "blockrank":
        mask, pos = blockrank_mask_and_positions(blocks, "cuda")
    else:
        mask, pos = None, torch.arange(t, device="cuda").view(1, t)
    d0, d1 = blocks[0], t - blocks[-1]  # document token columns
    owner = torch.repeat_interleave(torch.arange(a.docs, device="cuda"),
                                    torch.tensor(blocks[1:-1], device="cuda"))

    captured = {}

    def hook(module, args, kwargs):
        captured["h"] = kwargs["hidden_states"]
        captured["pe"] = kwargs["position_embeddings"]

    attn = model.model.layers[a.layer].self_attn
    attn.register_forward_pre_hook(hook, with_kwargs=True)
    hd = cfg.hidden_size // cfg.num_attention_heads

    def aux_loss():
        h = captured["h"][0]  # [T, hidden]
        cos, sin = captured["pe"]
        q = attn.q_proj(h[signal - 1:signal + 1]).view(1, 2, -1, hd).transpose(1, 2)
        k = attn.k_proj(h[d0:d1]).view(1, d1 - d0, -1, hd).transpose(1, 2)
        q, _ = modeling_qwen2.apply_rotary_pos_emb(q, q, cos[:, signal - 1:signal + 1],
                                                   sin[:, signal - 1:signal + 1])
        _, k = modeling_qwen2.apply_rotary_pos_emb(k, k, cos[:, d0:d1], sin[:, d0:d1])
        k = modeling_qwen2.repeat_kv(k, cfg.num_attention_heads // cfg.num_key_value_heads)
        s = (q.float() @ k.float().transpose(-1, -2)) / hd ** 0.5  # [1, Hq, 2, T_docs]
        p = s.softmax(-1).mean((0, 1, 2))
        scores = torch.zeros(a.docs, device="cuda").index_add(0, owner, p) / 0.05
        return torch.logsumexp(scores, 0) - scores[positive]

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(input_ids=ids.view(1, t), attention_mask=mask, position_ids=pos,
                        labels=labels.view(1, t), use_cache=False)
            loss = out.loss + 0.1 * aux_loss()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    print(f"transformers {transformers.__version__}, torch {torch.__version__}, "
          f"attn={a.attn} (sdpa), T={t} tokens ({a.docs} docs x {a.doc_tokens}), "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters")
    times = []
    for i in range(a.warmup + a.steps):
        if i == a.warmup:
            torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = step()
        torch.cuda.synchronize()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
        print(f"step {i}: loss {loss.item():.4f} {(time.perf_counter() - t0) * 1e3:.1f} ms",
              flush=True)
    med = statistics.median(times)
    print(f"| HF transformers {a.attn} | {t} | {med * 1e3:.1f} ms | {t / med:.0f} tok/s | "
          f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB peak allocated |")


if __name__ == "__main__":
    main()
