"""Your own model, in your own loop, with gpuviz's parallelisms wrapped around it.

A plain PyTorch MLP (its first layer frozen, as in fine-tuning) trained with AdamW and
weight decay, the loop written as any PyTorch loop is: ``model(x)``, ``loss.backward()``,
``opt.step()``. ``method`` picks the wrapper: ``"ddp"`` (:class:`DataParallel`),
``"zero1"`` / ``"zero2"`` (:class:`ShardedOptimizer` beside it) or ``"fsdp"``
(:func:`fully_shard`, each Linear a unit); ``"all"`` runs the four one after the other,
each step's ``step_end`` naming its method. Every collective the wrappers make is traced.

    gpuviz run gpuviz.workloads.own_model:train --nproc 2 --arg method=fsdp

>>> import gpuviz
>>> run = gpuviz.launch("gpuviz.workloads.own_model:train", nproc=2)   # doctest: +SKIP
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gpuviz.parallel import DataParallel, ShardedOptimizer, fully_shard
from gpuviz.run import trace
from gpuviz.workloads.mlp import make_mlp, synthetic_regression

METHODS = ("ddp", "zero1", "zero2", "fsdp")


def wrap(model: nn.Module, method: str):
    """``(module to call, optimizer, what to call after backward or None)`` for ``method``."""
    if method == "ddp":
        net = DataParallel(model, bucket_size_mb=0.05)
        return net, torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.1), \
            net.finish_gradient_synchronization
    if method == "zero1":
        net = DataParallel(model, bucket_size_mb=0.05)
        opt = ShardedOptimizer(net.parameters(), torch.optim.AdamW, lr=1e-3, weight_decay=0.1)
        return net, opt, net.finish_gradient_synchronization
    if method == "zero2":
        net = DataParallel(model, sync_gradients=False)
        opt = ShardedOptimizer(net.parameters(), torch.optim.AdamW, reduce_gradients="reduce_scatter",
                               lr=1e-3, weight_decay=0.1)
        return net, opt, None
    if method == "fsdp":
        net = fully_shard(model, units=nn.Linear)
        return net, torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.1), None
    raise ValueError(f"method={method!r}: use one of {', '.join(METHODS)} or 'all'")


def train(method: str = "all", steps: int = 6, batch: int = 64, dim: int = 64, hidden: int = 256,
          layers: int = 3) -> dict:
    """Train with ``method`` (or every method); returns each method's last loss on this rank."""
    import torch.distributed as dist

    methods = METHODS if method == "all" else (method,)
    if method != "all" and method not in METHODS:
        raise ValueError(f"method={method!r}: use one of {', '.join(METHODS)} or 'all'")
    rank, world = dist.get_rank(), dist.get_world_size()
    x_all, y_all = synthetic_regression(batch * steps, dim, seed=1)
    trace.set_total_steps(steps * len(methods))
    last = {}
    for m in methods:
        model = make_mlp(dim, hidden, layers)
        model[0].requires_grad_(False)                       # a frozen layer, as in fine-tuning
        net, opt, after_backward = wrap(model, m)
        for step in range(steps):
            lo = step * batch + rank * (batch // world)
            x, y = x_all[lo:lo + batch // world], y_all[lo:lo + batch // world]
            with trace.span("forward"):
                loss = F.mse_loss(net(x), y)
            with trace.span("backward"):
                loss.backward()
            if after_backward is not None:
                with trace.span("wait for gradients", cat="comm"):
                    after_backward()
            with trace.span("optimizer step", cat="optimizer"):
                opt.step()
                opt.zero_grad(set_to_none=True)
            trace.step(method=m, loss=float(loss.detach()))
        last[m] = float(loss.detach())
    return last


def losses(run):
    """Rank 0's loss at each step of each method, one column per method (a DataFrame).

    >>> losses(gpuviz.launch("gpuviz.workloads.own_model:train", nproc=2))   # doctest: +SKIP
    """
    import pandas as pd

    ev = run.events[(run.events["name"] == "step_end") & (run.events["rank"] == run.ranks[0])]
    rows = [{"method": a["method"], "loss": a["loss"]} for a in ev["args"] if "method" in a]
    df = pd.DataFrame(rows)
    df["step"] = df.groupby("method").cumcount()
    return df.pivot(index="step", columns="method", values="loss")[[m for m in METHODS if m in set(df["method"])]]


def last_step_of_each(run) -> list[int]:
    """The run's step index of each method's last step, in method order."""
    ev = run.events[(run.events["name"] == "step_end") & (run.events["rank"] == run.ranks[0])]
    last = {a["method"]: int(s) for s, a in zip(ev["step"], ev["args"], strict=True) if "method" in a}
    return [last[m] for m in METHODS if m in last]
