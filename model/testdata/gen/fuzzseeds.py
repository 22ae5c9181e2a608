#!/usr/bin/env python3
"""Writes the committed seed corpora of FuzzParseConfig and FuzzLlama2cHeader
(go test fuzz v1 files) from the mirror's config.json files and hand-made
llama2.c headers. Run from this folder: python3 fuzzseeds.py [mirror]."""
import os, struct, sys

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

here = os.path.dirname(os.path.abspath(__file__))
mirror = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, '../../../../shared/hf')
fz = os.path.join(here, '..', 'fuzz')

cfgdir = os.path.join(fz, 'FuzzParseConfig')
os.makedirs(cfgdir, exist_ok=True)
for repo in ['meta-llama/Llama-2-7b-hf', 'meta-llama/Llama-3.1-8B', 'Qwen/Qwen2.5-14B-Instruct',
             'HuggingFaceTB/SmolLM2-135M', 'raincandy-u/TinyStories-656K', 'openai-community/gpt2']:
    b = open(os.path.join(mirror, 'models', repo, 'config.json'), 'rb').read()
    with open(os.path.join(cfgdir, repo.split('/')[1]), 'w') as f:
        f.write('go test fuzz v1\n' + golit(b) + '\n')
extra = {
    'pruned': b'{"architectures":["LlamaForCausalLM"],"hidden_size":64,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"intermediate_size":96,"vocab_size":100,"eos_token_id":[2,3],"darwinlm_layer_widths":[{"heads":2,"kv_heads":1,"intermediate":10},{"heads":0,"kv_heads":0,"intermediate":0}]}',
    'yarn': b'{"architectures":["LlamaForCausalLM"],"hidden_size":64,"num_hidden_layers":1,"num_attention_heads":4,"intermediate_size":96,"vocab_size":100,"rope_scaling":{"rope_type":"yarn","factor":4}}',
    'headdim': b'{"model_type":"llama","hidden_size":66,"head_dim":32,"num_hidden_layers":1,"num_attention_heads":4,"intermediate_size":96,"vocab_size":100}',
}
for k, b in extra.items():
    with open(os.path.join(cfgdir, k), 'w') as f:
        f.write('go test fuzz v1\n' + golit(b) + '\n')

def nfloats(dim, hid, L, nh, nkv, V, seq):
    kv = dim * nkv // nh
    hs = dim // nh
    n = abs(V) * dim + L * dim + L * dim * dim + 2 * L * dim * kv + L * dim * dim + L * dim + 3 * L * dim * hid + dim + seq * hs
    if V < 0:
        n += -V * dim
    return n

l2dir = os.path.join(fz, 'FuzzLlama2cHeader')
os.makedirs(l2dir, exist_ok=True)
heads = {
    'stories260K': (64, 172, 5, 8, 4, 512, 512),
    'stories15M': (288, 768, 6, 6, 6, 32000, 256),
    'unshared': (16, 24, 2, 4, 2, -10, 8),
    'odd_heads': (16, 24, 2, 3, 3, 10, 8),
}
for k, h in heads.items():
    size = 28 + 4 * nfloats(*h)
    with open(os.path.join(l2dir, k), 'w') as f:
        f.write('go test fuzz v1\n' + golit(struct.pack('<7i', *h)) + '\nint64(%d)\n' % size)
with open(os.path.join(l2dir, 'truncated'), 'w') as f:
    h = heads['stories260K']
    f.write('go test fuzz v1\n' + golit(struct.pack('<7i', *h)) + '\nint64(%d)\n' % (28 + 4 * nfloats(*h) - 4))
