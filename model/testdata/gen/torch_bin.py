#!/usr/bin/python3
"""Writes the PyTorch-checkpoint test data of package torchbin and model's
LoadHF (model/testdata/torchbin) and the seed corpus of FuzzTorchBin
(torchbin/testdata/fuzz/FuzzTorchBin).

Run with the system Python that has torch 1.13 (not the python3 on PATH):
    /usr/bin/python3 model/testdata/gen/torch_bin.py

For each dtype (f32, f16, bf16) a tiny random Llama state dict in Hugging Face
naming is saved with torch.save as pytorch_model.bin, beside its config.json
and an independent twin, twin.safetensors, written here byte by byte with
numpy from the same tensors' raw bits (no torch serialization involved).
`sharded` splits the bf16 dict (twin: bf16/twin.safetensors) over two shards with an index, as
transformers' save_pretrained does (plain dicts per shard). The other files
are small cases for the reader: views of one storage, a non-contiguous tensor
and a pickle naming a global outside the allow-list."""
import collections, json, os, struct, sys

import numpy as np
import torch

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.normpath(os.path.join(here, '..', 'torchbin'))
fuzzdir = os.path.normpath(os.path.join(here, '..', '..', '..', 'torchbin', 'testdata', 'fuzz', 'FuzzTorchBin'))
os.makedirs(out, exist_ok=True)
os.makedirs(fuzzdir, exist_ok=True)

CFG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
    "vocab_size": 48, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
    "attention_bias": False, "mlp_bias": False, "bos_token_id": 1, "eos_token_id": 2,
}


def state_dict():
    g = torch.Generator().manual_seed(1234)
    H, I, V, D = CFG["hidden_size"], CFG["intermediate_size"], CFG["vocab_size"], 4
    kv = CFG["num_key_value_heads"] * D
    sd = collections.OrderedDict()
    r = lambda *s: torch.randn(*s, generator=g) * 0.3
    sd["model.embed_tokens.weight"] = r(V, H)
    for i in range(CFG["num_hidden_layers"]):
        p = "model.layers.%d." % i
        sd[p + "self_attn.q_proj.weight"] = r(H, H)
        sd[p + "self_attn.k_proj.weight"] = r(kv, H)
        sd[p + "self_attn.v_proj.weight"] = r(kv, H)
        sd[p + "self_attn.o_proj.weight"] = r(H, H)
        # a buffer older transformers versions saved; the loader ignores it
        sd[p + "self_attn.rotary_emb.inv_freq"] = 1.0 / (10000 ** (torch.arange(0, D, 2).float() / D))
        sd[p + "mlp.gate_proj.weight"] = r(I, H)
        sd[p + "mlp.up_proj.weight"] = r(I, H)
        sd[p + "mlp.down_proj.weight"] = r(H, I)
        sd[p + "input_layernorm.weight"] = 1 + r(H)
        sd[p + "post_attention_layernorm.weight"] = 1 + r(H)
    sd["model.norm.weight"] = 1 + r(H)
    sd["lm_head.weight"] = r(V, H)
    return sd


ST = {torch.float32: ("F32", torch.int32), torch.float16: ("F16", torch.int16), torch.bfloat16: ("BF16", torch.int16),
      torch.int64: ("I64", torch.int64)}


def write_twin(path, sd):
    """A safetensors file written by hand from each tensor's raw bits."""
    header, blobs, pos = {}, [], 0
    for k, t in sd.items():
        name, itype = ST[t.dtype]
        raw = t.contiguous().view(itype).numpy().astype(np.dtype(itype.__repr__().split('.')[1]).newbyteorder('<')).tobytes()
        header[k] = {"dtype": name, "shape": list(t.shape), "data_offsets": [pos, pos + len(raw)]}
        blobs.append(raw)
        pos += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def save_model(sub, dtype, shards=1):
    d = os.path.join(out, sub)
    os.makedirs(d, exist_ok=True)
    sd = collections.OrderedDict((k, v.to(dtype) if v.is_floating_point() and "inv_freq" not in k else v)
                                 for k, v in state_dict().items())
    cfg = dict(CFG, torch_dtype={torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}[dtype])
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    if shards == 1:
        torch.save(sd, os.path.join(d, "pytorch_model.bin"))
    else:
        keys = list(sd)
        cut = len(keys) // 2
        wm = {}
        for s, part in enumerate([keys[:cut], keys[cut:]]):
            fn = "pytorch_model-%05d-of-%05d.bin" % (s + 1, 2)
            torch.save({k: sd[k] for k in part}, os.path.join(d, fn))  # a plain dict, as save_pretrained
            wm.update({k: fn for k in part})
        size = sum(t.numel() * t.element_size() for t in sd.values())
        with open(os.path.join(d, "pytorch_model.bin.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": size}, "weight_map": wm}, f, indent=2)
    if shards == 1:  # the sharded dict is bf16's: the test compares it with bf16/twin.safetensors
        write_twin(os.path.join(d, "twin.safetensors"), sd)


save_model("f32", torch.float32)
save_model("f16", torch.float16)
save_model("bf16", torch.bfloat16)
save_model("sharded", torch.bfloat16, shards=2)

# Views of one storage: offsets into it, a 2-D view, a scalar, an int64 tensor.
base = torch.arange(12, dtype=torch.float32)
views = collections.OrderedDict()
views["all"] = base.view(3, 4)
views["row1"] = base.view(3, 4)[1]         # offset 4
views["mid"] = base[2:6]                   # offset 2
views["col"] = base.view(12, 1)[5:8]       # offset 5, shape (3,1), stride (1,1)
views["scalar"] = base[7]                  # offset 7, shape ()
views["ids"] = torch.tensor([3, -1, 7], dtype=torch.int64)
views["half"] = torch.tensor([0.5, -2.0, 65504.0], dtype=torch.float16)
torch.save(views, os.path.join(out, "views.bin"))
# A non-contiguous tensor.
torch.save({"ok": torch.ones(2), "t": torch.arange(6, dtype=torch.float32).view(2, 3).t()}, os.path.join(out, "noncontig.bin"))
# A global outside the allow-list (collections.Counter).
torch.save({"w": torch.ones(2), "extra": collections.Counter("ab")}, os.path.join(out, "badglobal.bin"))
# A parameter saved as such (torch._utils._rebuild_parameter).
torch.save({"p": torch.nn.Parameter(torch.tensor([1.5, 2.5]))}, os.path.join(out, "param.bin"))
# The legacy (pre-1.6) format.
torch.save({"w": torch.ones(2)}, os.path.join(out, "legacy.bin"), _use_new_zipfile_serialization=False)


def golit(b):
    o = []
    for c in b:
        ch = chr(c)
        if ch in '"\\':
            o.append('\\' + ch)
        elif 32 <= c < 127:
            o.append(ch)
        else:
            o.append('\\x%02x' % c)
    return '[]byte("' + ''.join(o) + '")'


seed = open(os.path.join(out, "views.bin"), "rb").read()
cases = {"valid": seed, "trunc-half": seed[:len(seed) // 2], "trunc-tail": seed[:-10], "trunc-head": seed[:100],
         "param": open(os.path.join(out, "param.bin"), "rb").read()}
for n, b in cases.items():
    with open(os.path.join(fuzzdir, n), "w") as f:
        f.write("go test fuzz v1\n" + golit(b) + "\n")
print("wrote", out, "and", fuzzdir)
