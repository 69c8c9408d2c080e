#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The installed Xapian plugin as a consumer sees it: `cmake --install` of the build into a scratch
# prefix; the package layout (headers, library, CMake package, pkg-config file); public headers
# that include only the standard library, Xapian and each other; a library that exports only the
# public API; examples/xapian_search configured out of tree with find_package(BlockRank), built,
# and run on the sample corpus (the plain search and the reranked one must list the same ten
# documents); and a pkg-config consumer compiled and run. The reranking part needs the reference
# tokenizer in .cache/tokenizers for the tiny random model, and reports SKIP without it.
# Usage: installed_example_test.sh SOURCE_DIR BUILD_DIR WORK_DIR
set -euo pipefail
src=$1
build=$2
work=$3
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
run_logged() {  # run_logged LOG CMD...: quiet unless it fails
  local log=$1
  shift
  "$@" > "$log" 2>&1 || { cat "$log"; fail "$*"; }
}
rm -rf "$work"
mkdir -p "$work"
prefix=$work/prefix

echo "== cmake --install into $prefix"
run_logged "$work/install.log" cmake --install "$build" --prefix "$prefix"
lib=$(find "$prefix" -name 'libblockrank_xapian.so' | head -n 1)
config=$(find "$prefix" -name BlockRankConfig.cmake | head -n 1)
pc=$(find "$prefix" -name blockrank-xapian.pc | head -n 1)
[ -n "$lib" ] || fail "no libblockrank_xapian.so under $prefix"
[ -n "$config" ] || fail "no BlockRankConfig.cmake under $prefix"
[ -n "$pc" ] || fail "no blockrank-xapian.pc under $prefix"
for h in xapian_reranker.h status.h fusion.h; do
  [ -f "$prefix/include/blockrank/$h" ] || fail "no include/blockrank/$h"
done

echo "== public headers include only <std>, <xapian.h> and blockrank/*.h"
bad=$(grep -h '^#include' "$prefix/include/blockrank/"*.h |
  grep -v -E '^#include (<[a-z_]+>|<xapian\.h>|"blockrank/[a-z_]+\.h")$' || true)
[ -z "$bad" ] || fail "public headers include: $bad"

echo "== exported symbols: the public API only"
api='blockrank::(Status::|status_code_name|internal::assert_fail|FusionOptions::|parse_fusion|fusion_name|fuse_scores|extract_text_from_data|make_value_slot_extractor|XapianRerankerOptions::|XapianReranker::)'
nm -DC --defined-only "$lib" | cut -d' ' -f3- > "$work/exported.txt"
others=$(grep -v -E "^$api" "$work/exported.txt" || true)
[ -z "$others" ] || fail "libblockrank_xapian exports more than the API: $(echo "$others" | head -n 5)"
grep -q 'blockrank::XapianReranker::open' "$work/exported.txt" || fail "XapianReranker::open not exported"
echo "$(wc -l < "$work/exported.txt") symbols, all blockrank:: API"

echo "== examples/xapian_search against the installed package"
run_logged "$work/example-configure.log" cmake -S "$src/examples/xapian_search" -B "$work/example" \
  -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix"
run_logged "$work/example-build.log" cmake --build "$work/example"
# The README shows the real difference between the two programs.
(cd "$src/examples/xapian_search" && diff -u search.cc search_rerank.cc | tail -n +3) > "$work/example.diff" || true
python3 - "$src/examples/xapian_search/README.md" "$work/example.diff" <<'PY' || fail "examples/xapian_search/README.md: the diff is out of date (diff -u search.cc search_rerank.cc)"
import sys
readme, diff = (open(p).read() for p in sys.argv[1:3])
sys.exit(0 if diff.strip() and diff in readme else 1)
PY

echo "== pkg-config consumer"
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$pc")
pkg-config --cflags --libs blockrank-xapian
cat > "$work/consumer.cc" <<'CC'
#include <iostream>

#include <blockrank/xapian_reranker.h>

int main() {
  std::unique_ptr<blockrank::XapianReranker> reranker;
  const blockrank::Status st = blockrank::XapianReranker::open("/nonexistent-model", {}, &reranker);
  const blockrank::StatusOr<blockrank::FusionOptions> fusion =
      blockrank::parse_fusion("interpolate:0.3");
  std::cout << "open: " << st.to_string() << "\nfusion: " << blockrank::fusion_name(*fusion)
            << "\nin place: " << blockrank::XapianReranker::supports_in_place() << '\n';
  return !st.is_ok() && fusion.is_ok() ? 0 : 1;
}
CC
# shellcheck disable=SC2046  # word splitting of the flags is intended
run_logged "$work/consumer-build.log" c++ -o "$work/consumer" "$work/consumer.cc" \
  $(pkg-config --cflags blockrank-xapian) $(pkg-config --libs blockrank-xapian)
LD_LIBRARY_PATH=$(dirname "$lib") "$work/consumer" || fail "the pkg-config consumer"

echo "== index the sample corpus (index.cc) and search it (search.cc)"
python3 -c 'import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line)
    print(d["title"] + ".\n" + d["text"] + "\n")' "$src/examples/sample-corpus/corpus.jsonl" |
  "$work/example/index" "$work/db"
query=(how do plants make sugar from light)
"$work/example/search" "$work/db" "${query[@]}" > "$work/search.out" || { cat "$work/search.out"; fail "search"; }
grep -q '^Matches 1-10:' "$work/search.out" || { cat "$work/search.out"; fail "search found fewer than 10"; }

tok=$src/.cache/tokenizers/llama2/tokenizer.json
if [ ! -f "$tok" ]; then
  echo "SKIP: installed, built and searched; reranking needs $tok (scripts/tokenizer-reference/setup.sh)"
  exit 0
fi
echo "== search_rerank with a tiny random model"
python3 "$src/bench/http/make_tiny_model.py" "$work/model" "$tok" > /dev/null
"$work/example/search_rerank" "$work/model" "$work/db" "${query[@]}" > "$work/rerank.out" ||
  { cat "$work/rerank.out"; fail "search_rerank"; }
plain=$(grep -oE 'docid=[0-9]+' "$work/search.out" | sort)
reranked=$(grep -oE 'docid=[0-9]+' "$work/rerank.out" | sort)
[ "$(echo "$reranked" | wc -l)" -eq 10 ] || { cat "$work/rerank.out"; fail "search_rerank listed fewer than 10"; }
[ "$plain" = "$reranked" ] || fail "search and search_rerank list different documents"
head -n 8 "$work/rerank.out"
echo "PASS"
