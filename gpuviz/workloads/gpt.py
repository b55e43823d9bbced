"""A small GPT (decoder-only transformer) and a deterministic token dataset made in the package.

The model follows nanoGPT (github.com/karpathy/nanoGPT, ``model.py``) with the parts a
parallelism needs kept separate and named: ``q``, ``k``, ``v`` and ``proj`` in attention
(so tensor parallelism splits heads), ``fc`` and ``proj`` in the MLP (Megatron-LM's
column- then row-parallel pair), and a ``blocks`` list (so a pipeline cuts it into
stages). There is no dropout and the head is not tied to the embedding, so every
parallel version computes exactly what this module computes.

The data is text from a fixed random "language": a first-order Markov chain over
``vocab`` tokens whose transitions favour a few successors. The best possible loss is the
chain's entropy rate (:meth:`TokenData.entropy`), a floor the learner can compare with.

>>> cfg = GPTConfig()
>>> model = GPT(cfg)
>>> f"{model.num_params():,}"
'867,072'
>>> data = TokenData(cfg.vocab, cfg.seq_len)
>>> x, y = data.batch(step=0, size=2)
>>> tuple(x.shape), bool((x[:, 1:] == y[:, :-1]).all())
((2, 64), True)
>>> tuple(model(x).shape)
(2, 64, 256)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class GPTConfig:
    """Sizes of the model (defaults: 0.87 M parameters, a step takes tens of ms on a CPU)."""

    vocab: int = 256
    """Number of distinct tokens."""
    seq_len: int = 64
    """Tokens per sequence (the context length)."""
    dim: int = 128
    """Width of the residual stream (d_model)."""
    heads: int = 4
    """Attention heads; ``dim`` must be a multiple of it."""
    layers: int = 4
    """Transformer blocks."""
    mlp_ratio: int = 4
    """The MLP's hidden width is ``mlp_ratio * dim``."""

    def __post_init__(self):
        for name in ("vocab", "seq_len", "dim", "heads", "layers", "mlp_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GPTConfig {name}={value!r}: must be an integer >= 1")
        if self.dim % self.heads:
            raise ValueError(f"GPTConfig dim={self.dim} is not a multiple of heads={self.heads}")


class Attention(nn.Module):
    """Causal multi-head self-attention (Vaswani et al. 2017)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape

        def split(z):  # (b, t, heads*hd) -> (b, heads, t, hd); heads from the tensor's width
            return z.view(b, t, -1, self.head_dim).transpose(1, 2)

        y = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)),
                                           is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, -1))

    @property
    def head_dim(self) -> int:
        return self.proj.in_features // self.heads


class MLP(nn.Module):
    """``fc`` (dim -> hidden), GELU, ``proj`` (hidden -> dim)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc, self.proj = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))``."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(cfg.dim), Attention(cfg.dim, cfg.heads)
        self.ln2, self.mlp = nn.LayerNorm(cfg.dim), MLP(cfg.dim, cfg.mlp_ratio * cfg.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Token and position embeddings, ``layers`` blocks, a final LayerNorm and the head.

    ``seed`` fixes the initial weights, so every rank (and a single process) starts from
    the same model. ``embed``, ``blocks`` and ``final`` are the three pieces a pipeline
    places on its first, middle and last stages.
    """

    def __init__(self, cfg: GPTConfig = GPTConfig(), seed: int = 0):
        super().__init__()
        self.cfg = cfg
        torch.manual_seed(seed)
        self.tok = nn.Embedding(cfg.vocab, cfg.dim)
        self.pos = nn.Embedding(cfg.seq_len, cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.vocab, bias=False)
        for name, p in self.named_parameters():  # GPT-2's initialisation, as in nanoGPT
            if p.dim() == 2:
                std = 0.02 / (2 * cfg.layers) ** 0.5 if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, mean=0.0, std=std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        """Tokens (batch, seq) to the residual stream (batch, seq, dim)."""
        pos = torch.arange(idx.shape[1], device=idx.device)
        return self.tok(idx) + self.pos(pos)

    def final(self, x: torch.Tensor) -> torch.Tensor:
        """Residual stream to logits (batch, seq, vocab)."""
        return self.head(self.ln_f(x))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.embed(idx)
        for block in self.blocks:
            x = block(x)
        return self.final(x)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over every position of the batch."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


class TokenData:
    """Sequences from a fixed random Markov chain; ``batch(step, size)`` is the same everywhere.

    Every rank (and a single process) asks for the *global* batch of a step and gets the
    same tensors, then takes its own slice: no files, no downloads, no sampler state.
    Each token has ``branching`` likely successors (a sharp random distribution), so the
    loss falls quickly from ln(vocab) towards :meth:`entropy`.

    >>> data = TokenData(vocab=16, seq_len=8)
    >>> bool((data.batch(3, 4)[0] == TokenData(16, 8).batch(3, 4)[0]).all())
    True
    """

    def __init__(self, vocab: int = 256, seq_len: int = 64, seed: int = 0, branching: int = 4):
        if vocab < 2 or seq_len < 1:
            raise ValueError(f"TokenData vocab={vocab}, seq_len={seq_len}: need vocab >= 2, seq_len >= 1")
        self.vocab, self.seq_len, self.seed = vocab, seq_len, seed
        g = torch.Generator().manual_seed(seed)
        logits = torch.full((vocab, vocab), -4.0)
        favoured = torch.stack([torch.randperm(vocab, generator=g)[:branching] for _ in range(vocab)])
        logits.scatter_(1, favoured, 4.0 * torch.rand(vocab, branching, generator=g))
        self.transitions = logits.softmax(-1)

    def batch(self, step: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and next-token targets, both ``(size, seq_len)`` int64, for ``step``."""
        if size < 1:
            raise ValueError(f"size={size}: a batch needs at least one sequence")
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step + 1)
        seq = torch.empty(size, self.seq_len + 1, dtype=torch.long)
        seq[:, 0] = torch.randint(self.vocab, (size,), generator=g)
        for t in range(self.seq_len):
            seq[:, t + 1] = torch.multinomial(self.transitions[seq[:, t]], 1, generator=g).squeeze(1)
        return seq[:, :-1].contiguous(), seq[:, 1:].contiguous()

    def entropy(self) -> float:
        """The chain's entropy rate in nats: the lowest loss any model can reach."""
        p = self.transitions
        stationary = torch.ones(self.vocab) / self.vocab
        for _ in range(200):
            stationary = stationary @ p
        return float(-(stationary[:, None] * p * p.clamp_min(1e-30).log()).sum())
