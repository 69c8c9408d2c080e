#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The GEMM floor of one rerank pass, measured: the four linear layers (QKV, O, gate|up, down) of
layers 0..l*-1 at the pass's row count, with distinct random bf16 weights per layer, back to back
on one stream as the fused loop issues them (torch.matmul -> cuBLAS, the same library
Model::score_documents calls). Prints ms per pass (median of --reps after --warmup, then a
sustained run of --sustain passes) and TFLOP/s, so the rerank benchmark's time can be split into
"GEMMs at the clocks this GPU holds under load" and the rest (bench/gpu/NOTES.md).
Usage: python3 bench/gpu/gemm_floor.py [--model mistral|qwen] [--docs 100]"""
import argparse
import statistics

import torch

SHAPES = {  # hidden, q heads, kv heads, head dim, ffn, l*
    "mistral": (4096, 32, 8, 128, 14336, 20),
    "qwen": (896, 14, 2, 64, 4864, 15),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mistral")
    ap.add_argument("--docs", type=int, default=100)
    ap.add_argument("--doc-len", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--sustain", type=int, default=30)
    a = ap.parse_args()
    hidden, hq, hkv, d, ffn, layers = SHAPES[a.model]
    t = 64 + a.docs * a.doc_len + 32
    dev, dt = "cuda", torch.bfloat16
    g = torch.Generator(device=dev).manual_seed(1)
    w = []
    for _ in range(layers):
        w.append([torch.randn(n, k, device=dev, dtype=dt, generator=g) * 0.02
                  for n, k in ((hq * d + 2 * hkv * d, hidden), (hidden, hq * d),
                               (2 * ffn, hidden), (hidden, ffn))])
    x = torch.randn(t, hidden, device=dev, dtype=dt)
    act = torch.randn(t, ffn, device=dev, dtype=dt)
    attn = torch.randn(t, hq * d, device=dev, dtype=dt)
    flops = 2.0 * t * layers * sum(n * k for n, k in (wi.shape for wi in w[0]))

    def one_pass():
        for qkv, o, gu, down in w:
            torch.matmul(x, qkv.t())
            torch.matmul(attn, o.t())
            torch.matmul(x, gu.t())
            torch.matmul(act, down.t())

    def timed(n):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(n):
            one_pass()
        e.record()
        e.synchronize()
        return s.elapsed_time(e) / n

    for _ in range(a.warmup):
        one_pass()
    ms = [timed(1) for _ in range(a.reps)]
    med = statistics.median(ms)
    from nvml_energy import GpuEnergyMeter
    meter = GpuEnergyMeter(torch.cuda.current_device())
    meter.start()
    sus = timed(a.sustain)
    joules, _, watts, mhz = meter.stop()
    print(f"{a.model} N={a.docs}: {t} rows x {layers} layers, {flops / 1e12:.1f} TFLOP of GEMMs")
    print(f"  per pass: median {med:.1f} ms ({flops / med / 1e9:.0f} TFLOP/s), min {min(ms):.1f} ms")
    print(f"  sustained over {a.sustain} passes: {sus:.1f} ms/pass ({flops / sus / 1e9:.0f} TFLOP/s)")
    if meter.ok:
        print(f"  energy, sustained: {joules / a.sustain:.1f} J per pass, {watts:.0f} W mean, "
              f"SM clock {mhz:.0f} MHz mean (NVML)")


if __name__ == "__main__":
    main()
