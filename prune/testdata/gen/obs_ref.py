#!/usr/bin/env python3
"""Independent PyTorch implementation of the DarwinLM reference's greedy
structured OBS pass (src/fast_obc_struct.py as described in
../shared/reference/paper-notes.md b.3), run on the two tiny checkpoints of
the hub mirror. It parses the checkpoints with testdata/gen/torch_ref.py's loaders
(independent of the Go readers), runs a textbook float64 Llama over the committed
calibration windows (prune/testdata/calib_*.u16: the first 16384 tokens of the
mirror's TinyStories validation prefix, sampler "first", windows of 256; the
Go test checks that prune.SampleSequences still yields exactly these tokens),
accumulates H = (2/n_seq) sum x x^T of the o_proj and down_proj inputs of the
dense model, and prunes both matrices of every layer with the reference's
steps: dead inputs, relative damping 1e-2, zero columns, cholesky_inverse,
then greedy removal (MLP: single columns with the rank-1 downdate; attention:
head_dim column groups with block inverses and the diagonal reset of removed
columns). Levels are --levels 10 (level l removes round(l*U/10) units); the
greedy part stops before the last level, which removes everything.

Everything is float64 (the reference runs float32 on a GPU): the point is to
check our pass's decisions, and float64 makes near-ties reproducible.

Writes prune/testdata/obs_ref.json with, per module in model order, the
removal order and the accumulated error (sum of eps/2) per level 0..9.

Run from the repository root:
    DARWINLM_HUB_MIRROR=../shared/hf /usr/bin/python3 prune/testdata/gen/obs_ref.py
"""
import json, math, os, sys
import numpy as np
import torch

# The checkpoint loaders, RMSNorm and RoPE of the forward-pass reference.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "testdata", "gen"))
from torch_ref import load_260k, load_656k, rms, rope

torch.set_default_dtype(torch.float64)
SEQ_LEN = 256
LEVELS = 10
REL_DAMP = 1e-2


def hessians(W, cfg, windows):
    """Dense forward over every window; per layer H_o and H_down."""
    H, nh, nkv, L = cfg["hidden"], cfg["heads"], cfg["kv"], cfg["layers"]
    d = H // nh
    inter = W["wg0"].shape[0]
    Ho = [torch.zeros(H, H) for _ in range(L)]
    Hd = [torch.zeros(inter, inter) for _ in range(L)]
    for toks in windows:
        T = len(toks)
        x = W["embed"][toks]
        pos = torch.arange(T, dtype=torch.float64)
        mask = torch.full((T, T), float("-inf")).triu(1)
        for l in range(L):
            xn = rms(x, W[f"attn_norm{l}"], cfg["eps"])
            q = (xn @ W[f"wq{l}"].T).view(T, nh, d)
            k = (xn @ W[f"wk{l}"].T).view(T, nkv, d)
            v = (xn @ W[f"wv{l}"].T).view(T, nkv, d)
            q, k = rope(q, pos, cfg["theta"], cfg["interleaved"]), rope(k, pos, cfg["theta"], cfg["interleaved"])
            rep = nh // nkv
            k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
            att = torch.softmax(torch.einsum("thd,shd->hts", q, k) / d ** 0.5 + mask, -1)
            o = torch.einsum("hts,shd->thd", att, v).reshape(T, nh * d)
            Ho[l] += o.T @ o
            x = x + o @ W[f"wo{l}"].T
            xn = rms(x, W[f"mlp_norm{l}"], cfg["eps"])
            a = torch.nn.functional.silu(xn @ W[f"wg{l}"].T) * (xn @ W[f"wu{l}"].T)
            Hd[l] += a.T @ a
            x = x + a @ W[f"wd{l}"].T
    n = len(windows)
    return [h * 2 / n for h in Ho], [h * 2 / n for h in Hd]


def prepare(W, H):
    W, H = W.clone(), H.clone()
    n = H.shape[0]
    dead = torch.nonzero(torch.diag(H) == 0).flatten()
    H[dead, dead] = 1
    H += REL_DAMP * torch.diag(H).mean() * torch.eye(n)
    W[:, dead] = 0
    zero = torch.nonzero((W == 0).all(0)).flatten()
    H[zero, :] = 0
    H[:, zero] = 0
    H[zero, zero] = 1
    Hinv = torch.cholesky_inverse(torch.linalg.cholesky(H))
    return W, Hinv


def schedule(units):
    return [int(math.floor(l * units / LEVELS + 0.5)) for l in range(LEVELS)] + [units]


def prune_columns(W, H, sched):
    W, Hinv = prepare(W, H)
    n = W.shape[1]
    removed = torch.zeros(n, dtype=torch.bool)
    order, errs, err = [], [0.0], 0.0
    for lvl in range(1, LEVELS):
        while len(order) < sched[lvl]:
            scores = (W ** 2).sum(0) / torch.diag(Hinv)
            scores[removed] = float("inf")
            j = int(torch.argmin(scores))
            err += float(scores[j]) / 2
            W -= torch.outer(W[:, j], Hinv[j, :]) / Hinv[j, j]
            removed[j] = True
            W[:, removed] = 0
            r = Hinv[j, :] / torch.sqrt(Hinv[j, j])
            Hinv -= torch.outer(r, r)
            order.append(j)
        errs.append(err)
    return order, errs


def block_inv(B):
    try:
        return torch.cholesky_inverse(torch.linalg.cholesky(B))
    except RuntimeError:
        return torch.linalg.pinv(B, hermitian=True)


def prune_heads(W, H, sched, d):
    W, Hinv = prepare(W, H)
    nh = W.shape[1] // d
    removed = torch.zeros(nh, dtype=torch.bool)
    cols_removed = torch.zeros(W.shape[1], dtype=torch.bool)
    order, errs, err = [], [0.0], 0.0
    for lvl in range(1, LEVELS):
        while len(order) < sched[lvl]:
            scores = torch.full((nh,), float("inf"))
            invs = []
            for g in range(nh):
                s = slice(g * d, (g + 1) * d)
                Binv = block_inv(Hinv[s, s])
                invs.append(Binv)
                if not removed[g]:
                    scores[g] = float(((W[:, s] @ Binv) * W[:, s]).sum())
            g = int(torch.argmin(scores))
            err += float(scores[g]) / 2
            s = slice(g * d, (g + 1) * d)
            Binv = invs[g]
            W -= W[:, s] @ Binv @ Hinv[s, :]
            removed[g] = True
            cols_removed[s] = True
            W[:, cols_removed] = 0
            Hinv -= Hinv[:, s] @ Binv @ Hinv[s, :]
            idx = torch.nonzero(cols_removed).flatten()
            Hinv[idx, idx] = 1
            order.append(g)
        errs.append(err)
    return order, errs


def run(key, loader):
    W, cfg = loader()
    raw = np.fromfile(f"prune/testdata/calib_{key}.u16", dtype="<u2").astype(np.int64)
    windows = [torch.from_numpy(raw[i:i + SEQ_LEN]) for i in range(0, len(raw), SEQ_LEN)]
    Ho, Hd = hessians(W, cfg, windows)
    d = cfg["hidden"] // cfg["heads"]
    mods = []
    for l in range(cfg["layers"]):
        o, e = prune_heads(W[f"wo{l}"], Ho[l], schedule(cfg["heads"]), d)
        mods.append(dict(name=f"model.layers.{l}.self_attn.o_proj", order=o, errors=e))
        inter = W[f"wd{l}"].shape[1]
        o, e = prune_columns(W[f"wd{l}"], Hd[l], schedule(inter))
        mods.append(dict(name=f"model.layers.{l}.mlp.down_proj", order=o, errors=e))
    return dict(modules=mods)


out = {"generator": "prune/testdata/gen/obs_ref.py (torch %s, float64)" % torch.__version__, "models": {}}
out["models"]["656k"] = run("656k", load_656k)
out["models"]["260k"] = run("260k", load_260k)
with open("prune/testdata/obs_ref.json", "w") as f:
    json.dump(out, f)
print("wrote prune/testdata/obs_ref.json")
