#!/usr/bin/env python3
"""Writes the committed seed corpus of FuzzParseHeader (go test fuzz v1 files)."""
import json, os, struct

def golit(b: bytes) -> str:
    out = []
    for c in b:
        ch = chr(c)
        if ch in '"\\':
            out.append('\\' + ch)
        elif 32 <= c < 127:
            out.append(ch)
        else:
            out.append('\\x%02x' % c)
    return '[]byte("' + ''.join(out) + '")'

def st(hdr, data):
    h = hdr if isinstance(hdr, bytes) else json.dumps(hdr, separators=(',', ':')).encode()
    return struct.pack('<Q', len(h)) + h + data

seeds = {
    'valid_f32': st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b'\0' * 8),
    'valid_meta_bf16': st({"__metadata__": {"format": "pt"}, "w": {"dtype": "BF16", "shape": [1, 2], "data_offsets": [0, 4]}}, b'\x80\x3f\x00\xc0'),
    'valid_two_f16': st({"x": {"dtype": "F16", "shape": [1], "data_offsets": [2, 4]}, "y": {"dtype": "F16", "shape": [], "data_offsets": [0, 2]}}, b'\x00\x3c\x00\xc0'),
    'padded': st(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}   ', b'\0' * 4),
    'overlap': st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b'\0' * 8),
    'gap': st({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b'\0' * 8),
    'bad_dtype': st({"a": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 1]}}, b'\0'),
    'size_mismatch': st({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b'\0' * 8),
    'huge_len': struct.pack('<Q', 1 << 62) + b'{}',
    'short': b'\x02\x00\x00',
    'empty_obj': st(b'{}', b''),
}
d = os.path.join(os.path.dirname(__file__), '..', 'fuzz', 'FuzzParseHeader')
os.makedirs(d, exist_ok=True)
for name, b in seeds.items():
    with open(os.path.join(d, name), 'w') as f:
        f.write('go test fuzz v1\n' + golit(b) + '\n')
