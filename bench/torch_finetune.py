#!/usr/bin/env python3
"""PyTorch CPU eager baseline for darwinlm's fine-tuning throughput.

The reference's training-aware selection fine-tunes every candidate with
torch.optim.AdamW(lr=1e-5, weight_decay=0.01), batch = one sequence, one step
per sequence. This script does exactly that in fp32 on a Llama written out
here (HF LlamaForCausalLM semantics: RMSNorm, rotate_half RoPE, GQA, SwiGLU,
tied head), with the weights of a Hugging Face checkpoint folder read
directly from model.safetensors, and reports tokens/s.

    /usr/bin/python3 bench/torch_finetune.py \
        --model $DARWINLM_HUB_MIRROR/models/raincandy-u/TinyStories-656K \
        --seq-len 128 --steps 200 --threads 2

The sequences are the Go benchmark's (bench/train_test.go pseudoSeqs), so
the first loss printed here equals the Go one (same model, same tokens).
Needs torch (Debian: python3-torch) and numpy.
"""
import os

# OpenMP threads that spin while waiting collapse (20x slower) when other
# processes share the cores; passive waiting is what a shared machine needs.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import math
import os
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        blob = f.read()
    dt = {"F32": np.float32, "F16": np.float16, "BF16": None}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        if info["dtype"] == "BF16":
            u = np.frombuffer(blob[a:b], dtype=np.uint16).astype(np.uint32) << 16
            arr = u.view(np.float32)
        else:
            arr = np.frombuffer(blob[a:b], dtype=dt[info["dtype"]]).astype(np.float32)
        out[name] = torch.from_numpy(arr.reshape(info["shape"]).copy())
    return out


class Llama(torch.nn.Module):
    def __init__(self, cfg, w):
        super().__init__()
        self.H = cfg["hidden_size"]
        self.nh = cfg["num_attention_heads"]
        self.nkv = cfg.get("num_key_value_heads", self.nh)
        self.d = cfg.get("head_dim", self.H // self.nh)
        self.eps = cfg["rms_norm_eps"]
        self.theta = cfg.get("rope_theta", 10000.0)
        P = torch.nn.Parameter
        self.tied = cfg.get("tie_word_embeddings", False)
        # A tied checkpoint may store only one of the two names.
        self.embed = P(w.get("model.embed_tokens.weight", w.get("lm_head.weight")))
        if not self.tied:
            self.head = P(w["lm_head.weight"])
        self.norm = P(w["model.norm.weight"])
        self.layers = torch.nn.ModuleList()
        for i in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            m = torch.nn.Module()
            for short, name in [("an", "input_layernorm"), ("wq", "self_attn.q_proj"), ("wk", "self_attn.k_proj"),
                                ("wv", "self_attn.v_proj"), ("wo", "self_attn.o_proj"), ("mn", "post_attention_layernorm"),
                                ("wg", "mlp.gate_proj"), ("wu", "mlp.up_proj"), ("wd", "mlp.down_proj")]:
                setattr(m, short, P(w[p + name + ".weight"]))
            self.layers.append(m)

    def rms(self, x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    def forward(self, ids):
        T = ids.shape[1]
        x = F.embedding(ids, self.embed)
        inv = 1.0 / (self.theta ** (torch.arange(0, self.d, 2, dtype=torch.float32) / self.d))
        ang = torch.outer(torch.arange(T, dtype=torch.float32), inv)
        emb = torch.cat([ang, ang], -1)
        cos, sin = emb.cos(), emb.sin()

        def rope(t):
            t1, t2 = t[..., : self.d // 2], t[..., self.d // 2:]
            return t * cos + torch.cat([-t2, t1], -1) * sin

        mask = torch.full((T, T), float("-inf")).triu(1)
        for l in self.layers:
            h = self.rms(x, l.an)
            q = F.linear(h, l.wq).view(1, T, self.nh, self.d).transpose(1, 2)
            k = F.linear(h, l.wk).view(1, T, self.nkv, self.d).transpose(1, 2)
            v = F.linear(h, l.wv).view(1, T, self.nkv, self.d).transpose(1, 2)
            q, k = rope(q), rope(k)
            rep = self.nh // self.nkv
            k = k.repeat_interleave(rep, 1)
            v = v.repeat_interleave(rep, 1)
            s = q @ k.transpose(-1, -2) / math.sqrt(self.d) + mask
            a = (s.softmax(-1) @ v).transpose(1, 2).reshape(1, T, self.nh * self.d)
            x = x + F.linear(a, l.wo)
            h = self.rms(x, l.mn)
            x = x + F.linear(F.silu(F.linear(h, l.wg)) * F.linear(h, l.wu), l.wd)
        x = self.rms(x, self.norm)
        return F.linear(x, self.embed if self.tied else self.head)


def pseudo_seq(i, T, vocab):
    # bench/train_test.go pseudoSeqs
    return [(i * 7919 + j * 104729 + j * j * 31) % vocab for j in range(T)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="Hugging Face checkpoint folder (config.json, model.safetensors)")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--steps", type=int, default=200, help="timed steps (after --warmup)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1, help="timed repetitions (one tokens/s figure each)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = json.load(open(os.path.join(a.model, "config.json")))
    model = Llama(cfg, read_safetensors(os.path.join(a.model, "model.safetensors")))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    V = cfg["vocab_size"]
    T = a.seq_len

    def step(i):
        ids = torch.tensor([pseudo_seq(i, T, V)])
        logits = model(ids)
        loss = F.cross_entropy(logits[0, :-1], ids[0, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    first = step(0)
    for i in range(1, a.warmup):
        step(i)
    for r in range(a.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(a.steps):
            step(i)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        # tokens per CPU-second of this process: comparable across runs when
        # other processes take a varying share of the cores.
        print(json.dumps({"impl": "torch-" + torch.__version__, "threads": a.threads, "seq_len": T,
                          "steps": a.steps, "first_loss": first, "tokens_per_s": round(a.steps * T / dt, 1),
                          "cpu_util": round(dc / dt, 3), "tokens_per_cpu_s": round(a.steps * T / dc, 1)}), flush=True)


if __name__ == "__main__":
    main()
