#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Tokenizer throughput, C++ vs the JavaScript reference, on one core (taskset -c CORE), over the
# real-text part of the reference set (bench_strings.jsonl: arguana, vaswani, cran, msmarco-dl19;
# see scripts/tokenizer-reference). Prints a
# Markdown table with tokens/s and the C++/JS ratio per vocabulary, and the exact command.
#
#   bench/tokenizer/run_bench.sh [BUILD_DIR=build-tok] [WARM_PASSES=5] [CORE=0]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/../.." && pwd)"
build="${1:-build-tok}"
passes="${2:-5}"
core="${3:-0}"
[[ "${build}" = /* ]] || build="${repo}/${build}"
cache="${BLOCKRANK_CACHE:-${repo}/.cache}/tokenizers"
strings="${cache}/reference/bench_strings.jsonl"
bench="${build}/bench/tokenizer/tokenizer_bench"
[[ -f "${strings}" ]] || { echo "run_bench.sh: run scripts/tokenizer-reference/setup.sh first" >&2; exit 1; }
[[ -x "${bench}" ]] || { echo "run_bench.sh: build it: ninja -C ${build} tokenizer_bench" >&2; exit 1; }

echo "command: bench/tokenizer/run_bench.sh ${1:-build-tok} ${passes} ${core}"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); node $(node --version)"
echo
echo "Rates are tokens per CPU second of the process (wall-clock rates in brackets)."
echo
echo "| vocabulary | strings | tokens | C++ cold | C++ warm | JS cold | JS warm | ratio cold | ratio warm | load s C++ / JS |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for name in qwen3 llama3 llama2; do
  cpp="$(taskset -c "${core}" "${bench}" "${cache}/${name}/tokenizer.json" "${strings}" "${passes}")"
  js="$(taskset -c "${core}" node "${here}/bench_js.js" "${cache}" "${name}" "${strings}" "${passes}")"
  python3 - "${name}" "${cpp}" "${js}" <<'PY'
import json, sys
name, c, j = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
assert c["tokens"] == j["tokens"], f"token counts differ: {c['tokens']} vs {j['tokens']}"
def f(r, kind):
    return f"{r[kind + '_tokens_per_cpu_s']/1e6:.2f}M ({r[kind + '_tokens_per_wall_s']/1e6:.2f}M)"
ratio = lambda kind: c[kind + "_tokens_per_cpu_s"] / j[kind + "_tokens_per_cpu_s"]
print(f"| {name} | {c['strings']} | {c['tokens']} | {f(c, 'cold')} | {f(c, 'warm')} | {f(j, 'cold')} "
      f"| {f(j, 'warm')} | {ratio('cold'):.1f}x | {ratio('warm'):.1f}x | {c['load_s']:.2f} / {j['load_s']:.2f} |")
PY
done
