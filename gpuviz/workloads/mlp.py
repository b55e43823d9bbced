"""A small MLP trained with data parallelism on a deterministic synthetic dataset.

Every rank trains on its own shard of the same generated data and averages gradients
with the others, traced step by step (data, forward, backward, comm, optimizer). With
``checkpoint_every=k`` it saves model and optimizer every k steps and, started again in
the same run directory (an elastic restart), resumes from the last save
(:mod:`gpuviz.sync.checkpoint`); step k's data is the same in every attempt.

    gpuviz run gpuviz.workloads.mlp:train --nproc 4
    torchrun --standalone --nproc-per-node 4 -m gpuviz.run.worker gpuviz.workloads.mlp:train --run-dir runs/mlp

>>> import gpuviz
>>> run = gpuviz.launch("gpuviz.workloads.mlp:train", nproc=2, args={"steps": 3})  # doctest: +SKIP
>>> from gpuviz.sync.inject import fail_at
>>> run = gpuviz.launch("gpuviz.workloads.mlp:train", nproc=2, max_restarts=1,
...                     args={"steps": 8, "checkpoint_every": 2},
...                     inject=[fail_at(1, 5)])                               # doctest: +SKIP
>>> run.meta["restarts"]                                                      # doctest: +SKIP
1
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from gpuviz.run import native_buckets, trace
from gpuviz.sync import checkpoint


def synthetic_regression(n: int, dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` inputs and targets from a random teacher network, both drawn from ``seed``.

    The same ``(n, dim, seed)`` always gives the same data; the teacher's weights are drawn
    after the inputs, so a different ``n`` also gives a different teacher.

    >>> x, y = synthetic_regression(8, 4)
    >>> tuple(x.shape), tuple(y.shape)
    ((8, 4), (8, 1))
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    w1 = torch.randn(dim, dim, generator=g) / dim**0.5
    w2 = torch.randn(dim, 1, generator=g) / dim**0.5
    return x, torch.tanh(x @ w1) @ w2


def make_mlp(dim: int, hidden: int, layers: int, seed: int = 0) -> nn.Sequential:
    """An MLP ``dim -> hidden x layers -> 1``, initialised the same on every rank."""
    torch.manual_seed(seed)
    mods: list[nn.Module] = []
    width = dim
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.GELU()]
        width = hidden
    mods.append(nn.Linear(width, 1))
    return nn.Sequential(*mods)


def _check(steps: int, batch: int, world: int, checkpoint_every: int = 0) -> None:
    if steps < 1:
        raise ValueError(f"steps={steps}: must be >= 1")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 0:
        raise ValueError(f"checkpoint_every={checkpoint_every!r}: a number of steps >= 1, or 0 for none")
    if batch < world:
        raise ValueError(f"batch={batch} is smaller than the {world} ranks: each rank needs >= 1 sample")


def train(steps: int = 20, batch: int = 256, dim: int = 64, hidden: int = 256, layers: int = 4,
          lr: float = 0.05, ddp: bool = False, bucket_cap_mb: float = 25.0, seed: int = 0,
          traced: bool = True, momentum: float = 0.0, checkpoint_every: int = 0) -> list[float]:
    """Train the MLP for ``steps`` steps on every rank; return this rank's losses.

    ``batch`` is the global batch, split evenly over ranks. ``ddp=False`` averages
    gradients with one flat all-reduce after backward (a wait, then the transfer);
    ``ddp=True`` uses DistributedDataParallel, whose buckets all-reduce during backward
    (traced by :func:`gpuviz.run.trace.ddp_comm_hook`, or in compiled code: see
    :mod:`gpuviz.run.native_buckets`). The optimizer is SGD with ``momentum``.

    ``checkpoint_every=k`` (> 0) saves model and optimizer after every k-th step and, first
    of all, resumes from the latest checkpoint of the run directory if there is one (then
    only the steps from there on run, and their losses are returned).
    """
    world, rank = dist.get_world_size(), dist.get_rank()
    _check(steps, batch, world, checkpoint_every)
    local = batch // world
    x_all, y_all = synthetic_regression(batch * steps, dim, seed)
    model: nn.Module = make_mlp(dim, hidden, layers, seed)
    if ddp:
        model = (native_buckets.ddp(model, bucket_cap_mb=bucket_cap_mb) if traced else
                 nn.parallel.DistributedDataParallel(model, bucket_cap_mb=bucket_cap_mb))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    trace.set_total_steps(steps)
    first = 0
    if checkpoint_every:
        first = checkpoint.load_latest(model, opt) or 0
    losses = []
    for step in range(first, steps):
        with trace.span("load batch", cat="data"):
            lo = step * batch + rank * local
            x, y = x_all[lo:lo + local], y_all[lo:lo + local]
        with trace.span("forward"):
            loss = nn.functional.mse_loss(model(x), y)
        trace.backward(loss, model if ddp else None)
        if not ddp:
            trace.all_reduce_grads(model)
        with trace.span("optimizer step", cat="optimizer"):
            opt.step()
            opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if rank == 0 and (step % max(1, steps // 5) == 0 or step == steps - 1):
            print(f"step {step:4d}  loss {losses[-1]:.4f}")
        if checkpoint_every and (step + 1) % checkpoint_every == 0:
            checkpoint.save(step + 1, model, opt)  # inside the step: it is part of its time
        trace.step(loss=losses[-1])
    return losses
