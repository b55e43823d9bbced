"""Tensor parallelism from scratch: Megatron-LM's column- and row-parallel layers.

From Shoeybi et al. (2019), "Megatron-LM: Training Multi-Billion Parameter Language
Models Using Model Parallelism" (arXiv:1909.08053), Section 3 and Figure 3. Every rank
holds a slice of each weight matrix of a transformer block and sees the whole batch:

- MLP: ``fc``'s weight is split by output rows (:class:`ColumnParallelLinear`), so each
  rank computes its own slice of the hidden units and applies GELU to it alone; ``proj``'s
  weight is split by input columns (:class:`RowParallelLinear`), so each rank turns its
  slice into a partial sum of the output, and one all-reduce adds them up.
- Attention: ``q``, ``k``, ``v`` column-parallel, so each rank owns ``heads / N`` whole
  heads and attends with them alone; ``proj`` row-parallel, one all-reduce again.

Two conjugate operators move data in and out of the parallel region (the paper's ``f``
and ``g``): :class:`f` is the identity forward and an all-reduce of the gradient
backward; :class:`g` all-reduces forward and is the identity backward. A block therefore
costs two all-reduces forward and two backward (the paper's Figure 4), each of
``batch x seq x dim`` values. The embeddings, LayerNorms and head stay whole on every
rank (the paper also splits the embedding by vocabulary; not here, simplest first).

:class:`TensorParallel` follows the contract of :mod:`gpuviz.parallel.strategy` and needs
a process group; ``tests/scripts/verify_tensor.py`` checks it against the single-process
reference and torch's own ``parallelize_module`` on 2 and 4 ranks::

    gpuviz.launch("tests/scripts/verify_tensor.py", nproc=4)

The layers alone need no process group: the column slices, side by side, are the whole
layer's output.

>>> lin = nn.Linear(8, 6)
>>> parts = [ColumnParallelLinear(lin, rank=r, world=2) for r in range(2)]
>>> x = torch.randn(3, 8)
>>> torch.allclose(torch.cat([p(x) for p in parts], dim=-1), lin(x))
True
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from gpuviz.parallel.ring import members
from gpuviz.parallel.strategy import LR, SingleProcess
from gpuviz.run import trace
from gpuviz.workloads.gpt import MLP, Attention


def _all_reduce(x: torch.Tensor, group, name: str) -> torch.Tensor:
    """Sum a copy of ``x`` over ``group``, traced as a ``comm`` span with its bytes."""
    out = x.contiguous().clone()   # never change a tensor autograd may still use
    with trace.span(name, cat="comm", bytes=out.numel() * out.element_size()):
        dist.all_reduce(out, group=group)
    return out


class f(torch.autograd.Function):  # noqa: N801 - the paper's name
    """The paper's ``f``: copy into the tensor-parallel region. Identity forward; backward,
    the all-reduce of the input's gradient, since each rank's slice of the layer sent back
    only its share of it. ``f.apply(x, group)``."""

    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return x

    @staticmethod
    def backward(ctx, grad):
        return _all_reduce(grad, ctx.group, "all_reduce (f backward)"), None


class g(torch.autograd.Function):  # noqa: N801 - the paper's name
    """The paper's ``g``: reduce out of the tensor-parallel region. Forward, the all-reduce
    of the ranks' partial sums; backward, the identity (every rank's partial sum entered
    the total with weight 1, so each gets the whole gradient). ``g.apply(x, group)``."""

    @staticmethod
    def forward(ctx, x, group):
        return _all_reduce(x, group, "all_reduce (g forward)")

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def _check_split(what: str, size: int, world: int, rank: int, owner: str) -> None:
    if isinstance(world, bool) or not isinstance(world, int) or world < 1:
        raise ValueError(f"{owner}: world size={world!r} must be an integer >= 1")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world:
        raise ValueError(f"{owner}: rank={rank!r} must be an integer from 0 to {world - 1}")
    if size % world:
        allowed = ", ".join(str(d) for d in range(1, size + 1) if size % d == 0)
        raise ValueError(f"{owner}: {what}={size} cannot be split evenly over world size "
                         f"{world}; the world size must divide {what}: one of {allowed}")


class ColumnParallelLinear(nn.Module):
    """``linear`` with its weight split by output rows: this rank keeps rows
    ``rank * out/world`` to ``(rank+1) * out/world`` (and that slice of the bias) and
    computes that slice of the outputs. No communication: its input must be the same on
    every rank (after :class:`f`), and its output stays split.
    """

    split = {"weight": 0, "bias": 0}   # the dimension each parameter is cut along

    def __init__(self, linear: nn.Linear, rank: int, world: int):
        super().__init__()
        _check_split("out_features", linear.out_features, world, rank, "ColumnParallelLinear")
        rows = linear.out_features // world
        part = slice(rank * rows, (rank + 1) * rows)
        self.weight = nn.Parameter(linear.weight.detach()[part].clone())
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach()[part].clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class RowParallelLinear(nn.Module):
    """``linear`` with its weight split by input columns: this rank multiplies its slice
    of the input (the output of a :class:`ColumnParallelLinear`) by its columns, giving a
    partial sum of the whole output; :class:`g` adds the partial sums over ``group``. The
    bias is whole on every rank and added once, after the sum.

    >>> lin = nn.Linear(8, 3)
    >>> parts = [RowParallelLinear(lin, rank=r, world=2) for r in range(2)]
    >>> x = torch.randn(5, 8)
    >>> partial = [F.linear(xr, p.weight) for xr, p in zip(x.chunk(2, -1), parts, strict=True)]
    >>> torch.allclose(sum(partial) + parts[0].bias, lin(x), atol=1e-6)
    True
    """

    split = {"weight": 1}              # the bias is replicated

    def __init__(self, linear: nn.Linear, rank: int, world: int, group=None):
        super().__init__()
        _check_split("in_features", linear.in_features, world, rank, "RowParallelLinear")
        cols = linear.in_features // world
        self.group = group
        self.weight = nn.Parameter(linear.weight.detach()[:, rank * cols:(rank + 1) * cols].clone())
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = g.apply(F.linear(x, self.weight), self.group)
        return out if self.bias is None else out + self.bias


class TensorParallelMLP(nn.Module):
    """The GPT's :class:`~gpuviz.workloads.gpt.MLP` split over ``world`` ranks: ``f``,
    ``fc`` column-parallel, GELU on this rank's hidden units, ``proj`` row-parallel (``g``).
    One all-reduce forward (``g``), one backward (``f``)."""

    def __init__(self, mlp: MLP, rank: int, world: int, group=None):
        super().__init__()
        _check_split("hidden width", mlp.fc.out_features, world, rank, "TensorParallelMLP")
        self.group = group
        self.fc = ColumnParallelLinear(mlp.fc, rank, world)
        self.proj = RowParallelLinear(mlp.proj, rank, world, group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(f.apply(x, self.group))))


class TensorParallelAttention(nn.Module):
    """The GPT's :class:`~gpuviz.workloads.gpt.Attention` split by heads: ``q``, ``k``, ``v``
    column-parallel, so this rank owns heads ``rank * heads/world`` onwards, whole, and
    attends with them alone; ``proj`` row-parallel. One ``f`` serves ``q``, ``k`` and ``v``
    (Megatron fuses them into one matrix), so again one all-reduce forward, one backward."""

    def __init__(self, attn: Attention, rank: int, world: int, group=None):
        super().__init__()
        _check_split("heads", attn.heads, world, rank, "TensorParallelAttention")
        self.group, self.heads, self.head_dim = group, attn.heads // world, attn.head_dim
        self.q, self.k, self.v = (ColumnParallelLinear(lin, rank, world)
                                  for lin in (attn.q, attn.k, attn.v))
        self.proj = RowParallelLinear(attn.proj, rank, world, group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        x = f.apply(x, self.group)

        def split(z):  # (b, t, local heads * hd) -> (b, local heads, t, hd)
            return z.view(b, t, self.heads, self.head_dim).transpose(1, 2)

        y = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)),
                                           is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))


class TensorParallel(SingleProcess):
    """Megatron-LM tensor parallelism of the GPT over ``group`` (default: every rank).

    Replaces every block's ``attn`` and ``mlp`` in place with their tensor-parallel
    versions, built from the model's own weights; the embeddings, LayerNorms and head stay
    whole. Those need no gradient all-reduce: every rank sees the whole global batch, and
    after ``g`` the residual stream is the same on every rank, forward and backward, so
    their gradients are already identical. Parameter names stay those of the model, so
    :meth:`full_parameters` gathers each shard back under its own name. A step is then the
    single process's step (:class:`~gpuviz.parallel.strategy.SingleProcess`): the
    communication happens inside the parallel layers.

    On one rank it computes what the reference computes, up to rounding:

    >>> import torch.distributed as dist
    >>> from gpuviz.parallel.strategy import SingleProcess
    >>> from gpuviz.workloads.gpt import GPT, GPTConfig, TokenData
    >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    >>> cfg = GPTConfig(layers=2, dim=32, seq_len=16, vocab=32)
    >>> tp, ref = TensorParallel(GPT(cfg)), SingleProcess(GPT(cfg))
    >>> x, y = TokenData(cfg.vocab, cfg.seq_len).batch(0, 8)
    >>> abs(tp.train_step(x, y) - ref.train_step(x, y)) < 1e-6
    True
    >>> type(tp.model.blocks[0].mlp).__name__, tuple(tp.full_parameters()["blocks.0.mlp.fc.weight"].shape)
    ('TensorParallelMLP', (128, 32))
    >>> dist.destroy_process_group()
    """

    name = "tp"

    def __init__(self, model: nn.Module, group=None, lr: float = LR):
        blocks = getattr(model, "blocks", None)
        if blocks is None or not all(hasattr(b, "attn") and hasattr(b, "mlp") for b in blocks):
            raise ValueError("model: needs a `blocks` list whose blocks have `attn` and `mlp` "
                             "(gpuviz.workloads.gpt.GPT)")
        self.group, self.rank, self.world = members(group)
        # Build every replacement before swapping any, so bad sizes leave the model whole.
        parallel = [(TensorParallelAttention(b.attn, self.rank, self.world, self.group),
                     TensorParallelMLP(b.mlp, self.rank, self.world, self.group)) for b in blocks]
        for block, (attn, mlp) in zip(blocks, parallel, strict=True):
            block.attn, block.mlp = attn, mlp
        super().__init__(model, lr)   # the same logits, so the same loss, on every rank

    def sharded(self) -> dict[str, int]:
        """Name -> the dimension that parameter is split along, for every split parameter."""
        return {f"{m}.{p}": dim for m, mod in self.model.named_modules()
                if isinstance(mod, ColumnParallelLinear | RowParallelLinear)
                for p, dim in mod.split.items() if getattr(mod, p) is not None}

    def full_parameters(self) -> dict[str, torch.Tensor]:
        """Every parameter whole, under the model's names: each shard all-gathered from the
        ranks of the group and concatenated along its split dimension (a collective)."""
        split, full = self.sharded(), {}
        params = dict(self.model.named_parameters())
        nbytes = sum(params[n].numel() * params[n].element_size() for n in split)
        with trace.span("all_gather (full parameters)", cat="comm", bytes=nbytes):
            for name, p in params.items():
                if name in split:
                    parts = [torch.empty_like(p) for _ in range(self.world)]
                    dist.all_gather(parts, p.detach().contiguous(), group=self.group)
                    full[name] = torch.cat(parts, dim=split[name])
                else:
                    full[name] = p.detach().clone()
        return full

