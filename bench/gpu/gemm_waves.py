# SPDX-License-Identifier: Apache-2.0
"""Is cuBLAS's time for the pass's narrow GEMMs quantised by waves of output tiles?

At the Mistral-7B shape N = 100 the pass multiplies T = 12,896 rows. The O and down projections
(N = 4,096 outputs) and Q|K|V (6,144) are cuBLAS GEMMs; if their kernels walk 128 x 256 output
tiles, 12,896 rows are 101 row tiles, i.e. 1,616 (2,424) tiles on 132 SMs: 12.24 (18.36) waves,
the last one mostly idle. This times, inside a layer-like sequence (Q|K|V, O, gate|up, down, so
the GPU is at the clock it holds in the pass), (1) each GEMM over a sweep of row counts, and
(2) the full GEMM against the same GEMM split into a whole number of waves plus the remaining rows,
the remainder run after it or beside it on a second stream. Tool for bench/gpu/NOTES.md, not part
of the product; run on the GPU machine: python3 bench/gpu/gemm_waves.py [T]
"""
import statistics
import sys

import torch

T = int(sys.argv[1]) if len(sys.argv) > 1 else 12896
dev = "cuda"
torch.manual_seed(0)
bf = torch.bfloat16
# name: (K, N, residual (beta = 1) like the pass's O and down GEMMs)
SHAPES = {"qkv": (4096, 6144, False), "o": (4096, 4096, True), "down": (14336, 4096, True)}
EXTRA = 1024
W = {n: torch.randn(nout, k, device=dev, dtype=bf) * 0.02 for n, (k, nout, _) in SHAPES.items()}
A = {n: torch.randn(T + EXTRA, k, device=dev, dtype=bf) for n, (k, nout, _) in SHAPES.items()}
Y = {n: torch.randn(T + EXTRA, nout, device=dev, dtype=bf) for n, (k, nout, _) in SHAPES.items()}
GU = torch.randn(28672, 4096, device=dev, dtype=bf) * 0.02
XA = torch.randn(T, 4096, device=dev, dtype=bf)
GUO = torch.empty(T, 28672, device=dev, dtype=bf)
side = torch.cuda.Stream()


def gemm(n, r0, r1, stream=None):
    k, nout, resid = SHAPES[n]
    a = A[n][r0:r1]
    with torch.cuda.stream(stream) if stream is not None else torch.cuda.stream(torch.cuda.current_stream()):
        if resid:
            Y[n][r0:r1].addmm_(a, W[n].t())
        else:
            torch.mm(a, W[n].t(), out=Y[n][r0:r1])


def variant(n, kind, m1):
    if kind == "full":
        gemm(n, 0, T)
    elif kind == "seq":
        gemm(n, 0, m1)
        gemm(n, m1, T)
    else:  # par: the remainder on a second stream beside the whole waves
        main = torch.cuda.current_stream()
        side.wait_stream(main)
        gemm(n, m1, T, side)
        gemm(n, 0, m1)
        main.wait_stream(side)


def timed(fn):
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    fn()
    e.record()
    return s, e


def layer_like(cells):
    """One 'layer': each cell timed, with the gate|up GEMM between them as in the pass."""
    ev = []
    for c in cells:
        ev.append((c[0], timed(c[1])))
        torch.mm(XA, GU.t(), out=GUO)
    return ev


# Warm up to the clock the GPU holds under sustained GEMMs (~3 s).
for _ in range(150):
    for n in SHAPES:
        gemm(n, 0, T)
    torch.mm(XA, GU.t(), out=GUO)
torch.cuda.synchronize()

# (1) Row sweep.
rows = list(range(T - 768, T + 257, 64))
res = {}
for rep in range(7):
    order = rows if rep % 2 == 0 else rows[::-1]
    for m in order:
        ev = layer_like([((n, m), (lambda n=n, m=m: gemm(n, 0, m))) for n in SHAPES])
        torch.cuda.synchronize()
        for key, (s, e) in ev:
            res.setdefault(key, []).append(s.elapsed_time(e))
print(f"T = {T}: median ms of 7 per GEMM by rows (row tiles of 128 in brackets)")
print("| rows | " + " | ".join(SHAPES) + " |")
print("| --- |" + " --- |" * len(SHAPES))
for m in rows:
    print(f"| {m} ({(m + 127) // 128}) | " +
          " | ".join(f"{statistics.median(res[(n, m)]):.4f}" for n in SHAPES) + " |")

# (2) Split into whole waves + remainder.
cands = [T // 128 * 128 - 128 * i for i in (0, 1, 2)]
kinds = [("full", 0)] + [(k, m1) for m1 in cands for k in ("seq", "par") if 0 < m1 < T]
res2 = {}
for rep in range(9):
    order = kinds if rep % 2 == 0 else kinds[::-1]
    for kind, m1 in order:
        ev = layer_like([((n, kind, m1), (lambda n=n, kind=kind, m1=m1: variant(n, kind, m1)))
                         for n in SHAPES])
        torch.cuda.synchronize()
        for key, (s, e) in ev:
            res2.setdefault(key, []).append(s.elapsed_time(e))
print(f"\nT = {T}: full GEMM vs whole rows [0, m1) + the rest after (seq) or beside (par); median ms of 9")
print("| variant | " + " | ".join(SHAPES) + " | sum |")
print("| --- |" + " --- |" * (len(SHAPES) + 1))
for kind, m1 in kinds:
    meds = [statistics.median(res2[(n, kind, m1)]) for n in SHAPES]
    print(f"| {kind} {m1 if m1 else ''} | " + " | ".join(f"{v:.4f}" for v in meds) +
          f" | {sum(meds):.4f} |")

# The kernels cuBLAS picks (their names carry the tile shape).
from torch.profiler import ProfilerActivity, profile
with profile(activities=[ProfilerActivity.CUDA]) as prof:
    for n in SHAPES:
        gemm(n, 0, T)
    torch.mm(XA, GU.t(), out=GUO)
    torch.cuda.synchronize()
for evt in prof.events():
    if evt.device_type == torch.autograd.DeviceType.CUDA:
        print("kernel:", evt.name)
