#!/usr/bin/env python3
"""Golden ids for llama2.c tokenizer.bin files: a direct port of encode() in
karpathy/llama2.c run.c (O(n^2) greedy merge, exactly as the C code does it).

Usage: python3 llama2c_golden.py <hub mirror dir> > ../llama2c_golden.json

The mirror is ../shared/hf from the repository root (DARWINLM_HUB_MIRROR). Inputs are bytes, so the
output stores each text base64-encoded ("b64") next to a readable copy.
"""
import base64
import json
import struct
import sys

TOKENIZERS = {
    "stories260K/tok512.bin": "models/karpathy/tinyllamas/stories260K/tok512.bin",
    "llama2-tokenizer/tokenizer.bin": "models/meta-llama/llama2-tokenizer/tokenizer.bin",
}

TEXTS = [
    "",
    "Hello world",
    "I believe the meaning of life is",
    "Simply put, the theory of relativity states that ",
    "   three leading spaces",
    "trailing spaces   ",
    "multiple   spaces  between    words",
    "line one\nline two\n\nline four\r\nend",
    "tab\tseparated\t\tvalues",
    "12345 and 3.14159",
    "don't we'll I'm they've she'd it's",
    "Café crème brûlée à la carte, naïve résumé, Ünïcödé",
    "中文分词测试：你好，世界！",
    "日本語のテキストと한국어 텍스트",
    "Emoji: 😀 🚀 👍🏽 ❤️ 👨‍👩‍👧",
    "combining: e\u0301 a\u0308 n\u0303 \u0915\u094d\u0937",
    "non\u00a0breaking\u00a0space",
    "control \x01\x02\x7f bytes",
    "Pneumonoultramicroscopicsilicovolcanoconiosis",
    "def f(x):\n    return x ** 2  # comment",
    " ",
    "\n",
    "<s> and </s> are plain text here",
    "Once upon a time, there was a little girl named Lily. She loved to play "
    "outside in the park. One day, she saw a big, red ball under a tree. "
    "\"Can I play with you?\" asked Lily. The ball did not answer, but Lily "
    "smiled and kicked it high into the sky.\n\nLily's mom called her home. "
    "\"Time for dinner!\" she said. Lily ran back, happy and tired. The end.",
]
# Invalid UTF-8: stray continuation bytes (run.c groups at most 4), a lone lead byte.
RAW = [b"\x80\x80\x80\x80\x80x", b"ab\xffcd", b"\xe4\xb8", b"\xf0\x9f\x98\x80\x80\x80"]


def read_bin(path):
    data = open(path, "rb").read()
    (max_len,) = struct.unpack_from("<i", data, 0)
    off, vocab, scores = 4, [], []
    while off < len(data):
        score, n = struct.unpack_from("<fi", data, off)
        off += 8
        vocab.append(data[off:off + n])
        scores.append(score)
        off += n
    return vocab, scores


def encode(vocab, scores, text):
    # str_lookup: bsearch over the sorted vocab; the files have no duplicates.
    lookup = {}
    for i, v in enumerate(vocab):
        lookup.setdefault(v, i)
    tokens = []
    if text:
        tokens.append(lookup[b" "])  # add_dummy_prefix
    buf = b""
    for i, c in enumerate(text):
        if (c & 0xC0) != 0x80:
            buf = b""
        buf += bytes([c])
        nxt = text[i + 1] if i + 1 < len(text) else 0
        if (nxt & 0xC0) == 0x80 and len(buf) < 4:
            continue
        if buf in lookup:
            tokens.append(lookup[buf])
        else:
            tokens.extend(b + 3 for b in buf)  # byte fallback: <0x00> is id 3
        buf = b""
    while True:
        best_score, best_id, best_idx = -1e10, -1, -1
        for i in range(len(tokens) - 1):
            tid = lookup.get(vocab[tokens[i]] + vocab[tokens[i + 1]], -1)
            if tid != -1 and scores[tid] > best_score:
                best_score, best_id, best_idx = scores[tid], tid, i
        if best_idx == -1:
            break
        tokens[best_idx:best_idx + 2] = [best_id]
    return tokens


def main():
    mirror = sys.argv[1]
    out = {}
    inputs = [t.encode("utf-8") for t in TEXTS] + RAW
    for name, rel in TOKENIZERS.items():
        vocab, scores = read_bin(f"{mirror}/{rel}")
        out[name] = [
            {"text": b.decode("utf-8", "replace"), "b64": base64.b64encode(b).decode(),
             "ids": encode(vocab, scores, b)}
            for b in inputs
        ]
    json.dump(out, sys.stdout, ensure_ascii=False, indent=0)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
