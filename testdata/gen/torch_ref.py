#!/usr/bin/env python3
"""Independent PyTorch reference for the forward pass of the two tiny real
checkpoints in the hub mirror. It parses the files itself (safetensors header
with json + numpy, llama2.c .bin with numpy), runs a textbook Llama in torch
float64, and writes per-position logits summaries to
testdata/golden/torch_logits.json. The Go test model/torch_golden_test.go
compares model.Forward with them.

Run from the repository root:
    DARWINLM_HUB_MIRROR=../shared/hf /usr/bin/python3 testdata/gen/torch_ref.py
"""
import json, os, struct
import numpy as np
import torch

torch.set_default_dtype(torch.float64)
HUB = os.environ.get("DARWINLM_HUB_MIRROR", "../shared/hf")
TOKENS = [1, 20, 300, 45, 7, 1000, 33, 512, 2, 90, 411, 5, 66, 250, 3, 17]


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        assert v["dtype"] == "F32", v["dtype"]
        a, b = v["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(data[a:b], dtype="<f4").reshape(v["shape"]).astype(np.float64))
    return out, hdr.get("__metadata__", {})


def rms(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rope(x, pos, theta, interleaved):
    # x: [T, H, d]
    d = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, d, 2) / d)
    ang = pos[:, None] * inv[None, :]  # [T, d/2]
    c, s = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
    if interleaved:
        x0, x1 = x[..., 0::2], x[..., 1::2]
        y = torch.empty_like(x)
        y[..., 0::2] = x0 * c - x1 * s
        y[..., 1::2] = x1 * c + x0 * s
        return y
    x0, x1 = x[..., : d // 2], x[..., d // 2 :]
    return torch.cat([x0 * c - x1 * s, x1 * c + x0 * s], -1)


def llama(W, cfg, toks, interleaved):
    H, nh, nkv, L = cfg["hidden"], cfg["heads"], cfg["kv"], cfg["layers"]
    d = H // nh
    T = len(toks)
    x = W["embed"][toks]
    pos = torch.arange(T, dtype=torch.float64)
    mask = torch.full((T, T), float("-inf")).triu(1)
    for l in range(L):
        xn = rms(x, W[f"attn_norm{l}"], cfg["eps"])
        q = (xn @ W[f"wq{l}"].T).view(T, nh, d)
        k = (xn @ W[f"wk{l}"].T).view(T, nkv, d)
        v = (xn @ W[f"wv{l}"].T).view(T, nkv, d)
        q, k = rope(q, pos, cfg["theta"], interleaved), rope(k, pos, cfg["theta"], interleaved)
        rep = nh // nkv
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        att = torch.einsum("thd,shd->hts", q, k) / d ** 0.5 + mask
        att = torch.softmax(att, -1)
        o = torch.einsum("hts,shd->thd", att, v).reshape(T, nh * d)
        x = x + o @ W[f"wo{l}"].T
        xn = rms(x, W[f"mlp_norm{l}"], cfg["eps"])
        g, u = xn @ W[f"wg{l}"].T, xn @ W[f"wu{l}"].T
        x = x + (torch.nn.functional.silu(g) * u) @ W[f"wd{l}"].T
    x = rms(x, W["norm"], cfg["eps"])
    return x @ W["head"].T


def load_656k():
    """TinyStories-656K's weights (float64, keys as llama() reads them) and config."""
    d = os.path.join(HUB, "models/raincandy-u/TinyStories-656K")
    cfg = json.load(open(os.path.join(d, "config.json")))
    t, meta = load_safetensors(os.path.join(d, "model.safetensors"))
    W = {"head": t["lm_head.weight"], "norm": t["model.norm.weight"]}
    W["embed"] = t.get("model.embed_tokens.weight", t["lm_head.weight"])  # tied: stored once
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        W[f"attn_norm{l}"] = t[p + "input_layernorm.weight"]
        W[f"mlp_norm{l}"] = t[p + "post_attention_layernorm.weight"]
        for k, n in [("wq", "self_attn.q_proj"), ("wk", "self_attn.k_proj"), ("wv", "self_attn.v_proj"), ("wo", "self_attn.o_proj"),
                     ("wg", "mlp.gate_proj"), ("wu", "mlp.up_proj"), ("wd", "mlp.down_proj")]:
            W[f"{k}{l}"] = t[p + n + ".weight"]
    c = dict(hidden=cfg["hidden_size"], heads=cfg["num_attention_heads"], kv=cfg["num_key_value_heads"],
             layers=cfg["num_hidden_layers"], eps=cfg["rms_norm_eps"], theta=cfg["rope_theta"], interleaved=False)
    return W, c


def load_260k():
    """stories260K's weights (llama2.c .bin, interleaved rope) and config."""
    p = os.path.join(HUB, "models/karpathy/tinyllamas/stories260K/stories260K.bin")
    raw = open(p, "rb").read()
    dim, hid, L, nh, nkv, vocab, seq = struct.unpack("<7i", raw[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    a = torch.from_numpy(np.frombuffer(raw[28:], dtype="<f4").astype(np.float64))
    off = 0

    def take(*shape):
        nonlocal off
        n = int(np.prod(shape))
        r = a[off : off + n].reshape(shape)
        off += n
        return r

    d = dim // nh
    W = {"embed": take(vocab, dim)}
    an = take(L, dim); wq = take(L, dim, dim); wk = take(L, nkv * d, dim); wv = take(L, nkv * d, dim); wo = take(L, dim, dim)
    fn = take(L, dim); w1 = take(L, hid, dim); w2 = take(L, dim, hid); w3 = take(L, hid, dim)
    W["norm"] = take(dim)
    take(seq * d // 2); take(seq * d // 2)
    W["head"] = W["embed"] if shared else take(vocab, dim)
    for l in range(L):
        W[f"attn_norm{l}"], W[f"wq{l}"], W[f"wk{l}"], W[f"wv{l}"], W[f"wo{l}"] = an[l], wq[l], wk[l], wv[l], wo[l]
        W[f"mlp_norm{l}"], W[f"wg{l}"], W[f"wd{l}"], W[f"wu{l}"] = fn[l], w1[l], w2[l], w3[l]
    c = dict(hidden=dim, heads=nh, kv=nkv, layers=L, eps=1e-5, theta=10000.0, interleaved=True)
    return W, c


def tinystories656k():
    W, c = load_656k()
    return llama(W, c, TOKENS, interleaved=c["interleaved"])


def stories260k():
    W, c = load_260k()
    toks = [t % W["embed"].shape[0] for t in TOKENS]
    return llama(W, c, toks, interleaved=c["interleaved"]), toks


def summary(logits):
    lse = torch.logsumexp(logits, -1)
    return {"first64": logits[:, :64].tolist(), "logsumexp": lse.tolist(), "argmax": logits.argmax(-1).tolist()}


def main():
    out = {"generator": "testdata/gen/torch_ref.py (torch %s, float64)" % torch.__version__}
    out["hf:raincandy-u/TinyStories-656K"] = dict(tokens=TOKENS, **summary(tinystories656k()))
    lg, toks = stories260k()
    out["hf:karpathy/tinyllamas/stories260K/stories260K.bin"] = dict(tokens=toks, **summary(lg))
    os.makedirs("testdata/golden", exist_ok=True)
    with open("testdata/golden/torch_logits.json", "w") as f:
        json.dump(out, f)
    print("wrote testdata/golden/torch_logits.json")


if __name__ == "__main__":
    main()
