// Golden ids for the mirror's tokenizer.json files, from Hugging Face's own
// JavaScript port of `tokenizers` (@huggingface/tokenizers 0.2.0, pinned in
// package.json), the same oracle that wrote the mirror's golden_ids.jsonl.
// These strings add what golden_ids.jsonl lacks: special tokens inside text,
// combining marks, control characters, long digit and whitespace runs.
//
//   npm install && node hf_golden.mjs <hub mirror dir> > ../hf_golden.json
import { Tokenizer } from "@huggingface/tokenizers";
import { readFileSync } from "node:fs";

const mirror = process.argv[2];
const models = [
  "openai-community/gpt2",
  "HuggingFaceTB/SmolLM2-135M",
  "meta-llama/Llama-2-7b-hf",
  "raincandy-u/TinyStories-656K",
];
const texts = [
  "hello <|endoftext|> world",
  "<|endoftext|><|endoftext|>",
  "<|im_start|>user\nhi there<|im_end|>\n",
  "<s>Hello</s> world",
  "a <unk> b",
  "<|start_story|>Once upon a time<|end_story|>",
  "Once <|end_story|>",
  "e\u0301 a\u0308 n\u0303 \u0915\u094d\u0937 Zalgo: Z\u0351\u0360\u0362a\u0335l\u0338g\u034eo",
  "control \u0001\u0002\u007f and nul \u0000 bytes",
  "0000000000 1234567 3.141592653589793 ١٢٣ ½",
  "  \n\n  \t \u3000 x \u2003\u2003y",
  "\n\n\n",
  "     ",
  "x",
  " ",
  "Ελληνικά, русский, עברית, العربية, हिन्दी, ไทย",
  "🇺🇳🏳️‍🌈 👩🏾‍💻 \u{1F9D1}\u200D\u{1F384}",
  "'s 'S 'll 'LL I'M you'RE",
  "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.\n\nOne day, she saw a big, red ball under a tree. \"Can I play with you?\" asked Lily.",
];

// Variants of TinyStories-656K's tokenizer.json exercising components the
// mirror's files do not use; golden_test.go applies the same edits. The JS
// port ignores Metaspace's "split" (Rust splits on the replacement), so the
// variants use split: false and the Go tests check splitting separately.
const ms = (scheme, split) => ({ type: "Metaspace", replacement: "\u2581", prepend_scheme: scheme, split });
const variants = {
  "metaspace-first": { normalizer: null, pre_tokenizer: ms("first", false), decoder: ms("first", false) },
  "metaspace-always": { normalizer: null, pre_tokenizer: ms("always", false), decoder: ms("always", false) },
  "split-digits-punct": {
    pre_tokenizer: { type: "Sequence", pretokenizers: [
      { type: "Split", pattern: { Regex: "[,.!?]" }, behavior: "MergedWithPrevious", invert: false },
      { type: "Digits", individual_digits: false },
    ] },
  },
};

const out = {};
const run = (name, json, config) => {
  const tok = new Tokenizer(json, config);
  out[name] = texts.map((text) => {
    const ids = tok.encode(text, { add_special_tokens: false }).ids;
    return {
      text, ids,
      ids_special: tok.encode(text).ids,
      decoded: tok.decode(ids, { skip_special_tokens: true, clean_up_tokenization_spaces: false }),
    };
  });
};
for (const m of models) {
  const dir = `${mirror}/models/${m}`;
  run(m, JSON.parse(readFileSync(`${dir}/tokenizer.json`, "utf8")),
    JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, "utf8")));
}
const tsDir = `${mirror}/models/raincandy-u/TinyStories-656K`;
for (const [name, edit] of Object.entries(variants)) {
  run(`variant:${name}`, { ...JSON.parse(readFileSync(`${tsDir}/tokenizer.json`, "utf8")), ...edit },
    JSON.parse(readFileSync(`${tsDir}/tokenizer_config.json`, "utf8")));
}
console.log(JSON.stringify({ variants, golden: out }, null, 0));
