"""PyTorch eager reference for `npm run bench -- engine`: the same Llama-style causal LM
training step (RMSNorm, RoPE, causal attention, SwiGLU, untied LM head, AdamW), timed on the
same machine in the same run. Optional: the benchmark runs it only when `import torch` works.
Prints one JSON line: {"torch_step_ms": ..., "torch_threads": ...}."""
import json
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F

cfg = json.loads(sys.argv[1])
threads = int(cfg.get("threads", 2))
torch.set_num_threads(threads)
torch.manual_seed(0)
V, D, L, H, T, B, FF = (cfg[k] for k in ("vocab", "d", "layers", "heads", "seq", "batch", "ffn"))
Dh = D // H


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.n1 = torch.nn.Parameter(torch.ones(D))
        self.n2 = torch.nn.Parameter(torch.ones(D))
        self.qkv = torch.nn.Linear(D, 3 * D, bias=False)
        self.o = torch.nn.Linear(D, D, bias=False)
        self.gate = torch.nn.Linear(D, FF, bias=False)
        self.up = torch.nn.Linear(D, FF, bias=False)
        self.down = torch.nn.Linear(FF, D, bias=False)

    def forward(self, x, cos, sin, mask):
        h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.n1
        q, k, v = self.qkv(h).view(B, T, 3, H, Dh).permute(2, 0, 3, 1, 4)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(Dh) + mask
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D)
        x = x + self.o(y)
        h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.n2
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


def rope(x, cos, sin):
    x1, x2 = x[..., : Dh // 2], x[..., Dh // 2 :]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)


class LM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(V, D)
        self.blocks = torch.nn.ModuleList([Block() for _ in range(L)])
        self.norm = torch.nn.Parameter(torch.ones(D))
        self.head = torch.nn.Linear(D, V, bias=False)

    def forward(self, ids, cos, sin, mask):
        x = self.embed(ids)
        for b in self.blocks:
            x = b(x, cos, sin, mask)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.norm
        return self.head(x)


model = LM()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
inv = 1.0 / (10000 ** (torch.arange(0, Dh // 2).float() / (Dh // 2)))
ang = torch.arange(T).float()[:, None] * inv[None, :]
cos, sin = ang.cos(), ang.sin()
mask = torch.full((T, T), -1e9).triu(1)
ids = torch.randint(0, V, (B, T))
labels = torch.randint(0, V, (B, T))


def step():
    opt.zero_grad(set_to_none=True)
    logits = model(ids, cos, sin, mask)
    loss = F.cross_entropy(logits.view(-1, V), labels.view(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.item()


for _ in range(int(cfg.get("warmup", 2))):
    step()
times = []
for _ in range(int(cfg.get("steps", 5))):
    t0 = time.perf_counter()
    step()
    times.append((time.perf_counter() - t0) * 1000)
print(json.dumps({"torch_step_ms": round(statistics.median(times), 1), "torch_threads": threads, "torch": torch.__version__}))
