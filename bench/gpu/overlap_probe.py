# SPDX-License-Identifier: Apache-2.0
"""Under the H200's power cap, does work beside the GEMMs come for free?

The pass is ~96% GEMM at the software power cap; the rest (attention, norms, RoPE, ~7 ms of the
Mistral N = 100 pass) runs between GEMMs at lower power. Documents attend only to the instruction
and to themselves, so the pass's rows can be cut into two micro-batches (instruction + first half
of the documents; second half + query block) whose layers run on two streams: one half's attention
and norms then run beside the other half's GEMMs. This times a layer-like sequence (RMSNorm,
Q|K|V, an attention stand-in, O + residual, RMSNorm, gate|up, SiLU * up, down + residual) over
20 layers four ways: the GEMMs alone and the whole sequence, each on one stream over all rows and
split into two halves on two streams (the second half's attention waiting for the first half's
Q|K|V of the same layer, as the query block's would). Tool for bench/gpu/NOTES.md, not part of
the product; run on the GPU machine: python3 bench/gpu/overlap_probe.py [T] [rounds]
"""
import statistics
import sys

import torch
import torch.nn.functional as F

T = int(sys.argv[1]) if len(sys.argv) > 1 else 12896
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
LAYERS = 20
dev = "cuda"
bf = torch.bfloat16
torch.manual_seed(0)
D, F_, HQ, HKV, HD = 4096, 14336, 32, 8, 128
W_qkv = torch.randn(6144, D, device=dev, dtype=bf) * 0.02
W_o = torch.randn(D, D, device=dev, dtype=bf) * 0.02
W_gu = torch.randn(2 * F_, D, device=dev, dtype=bf) * 0.02
W_d = torch.randn(D, F_, device=dev, dtype=bf) * 0.02
g1 = torch.ones(D, device=dev, dtype=bf)
X = torch.randn(T, D, device=dev, dtype=bf)
half = T // 2
streams = [torch.cuda.Stream(), torch.cuda.Stream()]


class Rows:
    """Buffers of one row range (all rows, or one micro-batch)."""

    def __init__(self, r0, r1):
        n = r1 - r0
        self.x = X[r0:r1]
        self.xn = torch.randn(n, D, device=dev, dtype=bf)
        self.qkv = torch.randn(n, 6144, device=dev, dtype=bf)
        self.att = torch.randn(n, D, device=dev, dtype=bf)
        self.gu = torch.randn(n, 2 * F_, device=dev, dtype=bf)
        # Attention stand-in: 128-token documents attending to 192 keys (instruction + own).
        docs = max(1, n // 128)
        self.q = torch.randn(docs, HQ, 128, HD, device=dev, dtype=bf)
        self.k = torch.randn(docs, HQ, 192, HD, device=dev, dtype=bf)
        self.v = torch.randn(docs, HQ, 192, HD, device=dev, dtype=bf)
        self.n = n
        self.docs = docs


def layer_step(r, part, gemm_only):
    """One stage group of a layer for rows r: part 0 = norm + Q|K|V, 1 = attention, 2 = the rest."""
    if part == 0:
        if not gemm_only:
            torch.mul(F.rms_norm(r.x, (D,), g1, 1e-5), 1.0, out=r.xn)
        torch.matmul(r.xn, W_qkv.t(), out=r.qkv)
    elif part == 1:
        if not gemm_only:
            o = F.scaled_dot_product_attention(r.q, r.k, r.v)
            r.att.view(-1)[: o.numel()].copy_(o.reshape(-1)[: r.att.numel()])
    else:
        r.x.addmm_(r.att, W_o.t())
        if not gemm_only:
            torch.mul(F.rms_norm(r.x, (D,), g1, 1e-5), 1.0, out=r.xn)
        torch.matmul(r.xn, W_gu.t(), out=r.gu)
        a = r.gu[:, :F_]
        if not gemm_only:
            a = F.silu(r.gu[:, :F_]) * r.gu[:, F_:]
        r.x.addmm_(a, W_d.t())


ALL = Rows(0, T)
HALVES = [Rows(0, half), Rows(half, T)]


def run(split, gemm_only):
    main = torch.cuda.current_stream()
    if not split:
        for _ in range(LAYERS):
            for p in range(3):
                layer_step(ALL, p, gemm_only)
        return
    for s in streams:
        s.wait_stream(main)
    for _ in range(LAYERS):
        qkv_done = torch.cuda.Event()
        for i, (r, s) in enumerate(zip(HALVES, streams)):
            with torch.cuda.stream(s):
                layer_step(r, 0, gemm_only)
                if i == 0:
                    qkv_done.record(s)
                else:
                    s.wait_event(qkv_done)  # the query block reads the first half's K/V
                layer_step(r, 1, gemm_only)
                layer_step(r, 2, gemm_only)
    for s in streams:
        main.wait_stream(s)


def time_ms(fn):
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    fn()
    b.record()
    b.synchronize()
    return a.elapsed_time(b)


def attention_alone():
    return time_ms(lambda: [layer_step(ALL, 1, False) for _ in range(LAYERS)])


CASES = [("one stream, GEMMs only", False, True), ("one stream, all", False, False),
         ("two halves, GEMMs only", True, True), ("two halves, all", True, False)]
res = {c[0]: [] for c in CASES}
for _ in range(2):
    for _, split, go in CASES:
        run(split, go)
torch.cuda.synchronize()
print(f"T = {T}, {LAYERS} layers; attention stand-in alone: {attention_alone():.2f} ms")
for rnd in range(ROUNDS):
    order = CASES if rnd % 2 == 0 else CASES[::-1]
    for name, split, go in order:
        res[name].append(statistics.median(time_ms(lambda: run(split, go)) for _ in range(5)))
for name, v in res.items():
    print(f"{name:28s} " + " / ".join(f"{x:7.2f}" for x in v) + " ms")
one_all, one_g = statistics.median(res[CASES[1][0]]), statistics.median(res[CASES[0][0]])
two_all, two_g = statistics.median(res[CASES[3][0]]), statistics.median(res[CASES[2][0]])
print(f"non-GEMM time: one stream {one_all - one_g:.2f} ms, two halves {two_all - two_g:.2f} ms; "
      f"two halves, all vs one stream, all: {two_all - one_all:+.2f} ms")
