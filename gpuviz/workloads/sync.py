"""Synchronisation workloads: ranks that wait for each other, and three ways to sync less.

``jittered_steps`` does a little real compute, then waits for the others (a traced
barrier) and all-reduces a small tensor, every step: with random delays injected by
:mod:`gpuviz.sync.inject`, the waits measure the order statistics of
:mod:`gpuviz.sync.stragglers`.

``train`` trains the MLP of :mod:`gpuviz.workloads.mlp` with one of three
synchronisation schemes; every step is one micro-batch of ``batch`` samples (split
over the ranks), so every mode computes the same per step and differs only in how often
it communicates:

- ``sync``: all-reduce the gradients every step (plain data parallelism);
- ``accumulate``: add up gradients over ``k`` micro-batches, then all-reduce and step
  once (one update of ``k x batch`` samples: k times fewer messages and fewer updates);
- ``local_sgd``: every rank steps on its own gradients and the parameters are averaged
  every ``H`` steps (Stich 2019, "Local SGD Converges Fast and Communicates Little",
  ICLR; Lin et al. 2020, "Don't Use Large Mini-Batches, Use Local SGD", ICLR).

``compare`` runs several modes one after another in one job (saving a start-up each).

    gpuviz run gpuviz.workloads.sync:train --nproc 2
    torchrun --standalone --nproc-per-node 2 -m gpuviz.run.worker gpuviz.workloads.sync:compare --run-dir runs/sync

>>> import gpuviz
>>> from gpuviz.sync import inject
>>> run = gpuviz.launch("gpuviz.workloads.sync:jittered_steps", nproc=4, args={"steps": 50},
...                     inject=[inject.jitter("exponential", mean_s=0.01)])   # doctest: +SKIP
>>> run = gpuviz.launch("gpuviz.workloads.sync:train", nproc=2,
...                     args={"mode": "local_sgd", "H": 4})                 # doctest: +SKIP
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import os

import torch
import torch.distributed as dist
from torch import nn

from gpuviz.run import trace
from gpuviz.workloads.mlp import make_mlp, synthetic_regression

MODES = ("sync", "accumulate", "local_sgd")


def _int(v, name: str, low: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ValueError(f"{name}={v!r}: must be an integer >= {low}")
    return v


def jittered_steps(steps: int = 150, size: int = 96, warmup: int = 2, numel: int = 1024,
                   groups: list[int] | None = None) -> None:
    """Each step: a ``size`` x ``size`` matmul (``compute``), a barrier (``wait for
    others``, idle) and an all-reduce of ``numel`` floats (comm). The first ``warmup``
    steps are tagged ``warmup=True`` in their ``step_end``, for the analysis to skip.
    The delays come from the injection, not from here.

    ``groups=[2, 4, 8]`` measures several rank counts in one job: the ``steps`` run once
    per size n, on the process subgroup of ranks 0..n-1, while the other ranks sit the
    steps out (they still count them, so step numbers agree, and still sleep their
    injected delays, which costs no core); every ``step_end`` carries ``ranks=n`` and
    ``member``. A barrier of every rank separates the sizes.
    """
    _int(steps, "steps")
    _int(size, "size")
    _int(warmup, "warmup", 0)
    _int(numel, "numel")
    world, rank = dist.get_world_size(), dist.get_rank()
    if groups is None:
        sizes = [world]
    else:
        sizes = list(groups) if isinstance(groups, (list, tuple)) else [groups]
        if not sizes or any(isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= world
                            for n in sizes):
            raise ValueError(f"groups={groups!r}: give rank counts from 2 to the job's {world} ranks")
    # Every rank must create every subgroup, in the same order, before any is used.
    subgroups = {n: dist.new_group(list(range(n))) for n in sorted(set(sizes)) if n < world}
    trace.set_total_steps(steps * len(sizes))
    g = torch.Generator().manual_seed(rank)
    a, w = torch.randn(size, size, generator=g), torch.randn(size, size, generator=g) / size**0.5
    buf = torch.ones(numel)
    for n in sizes:
        group, member = subgroups.get(n), rank < n
        tags = {} if groups is None else {"ranks": n, "member": member}
        if groups is not None:
            dist.barrier()                          # the sizes do not overlap
        for step in range(steps):
            if member:
                with trace.span("compute"):
                    a = torch.tanh(a @ w)
                with trace.span("wait for others", cat="idle"):
                    dist.barrier(group=group)
                with trace.span("all_reduce", cat="comm", bytes=numel * buf.element_size(), world=n):
                    dist.all_reduce(buf, group=group)
                buf.fill_(1.0)
            trace.step(warmup=step < warmup, **tags)


# -- relaxed synchronisation ---------------------------------------------------------------------

def sync_period(mode: str, k: int = 4, H: int = 4) -> int:  # noqa: N803 - H as in the papers
    """Steps between two communications of ``mode``, or a ValueError naming the argument.

    >>> sync_period("sync"), sync_period("accumulate", k=8), sync_period("local_sgd", H=2)
    (1, 8, 2)
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: use one of {', '.join(map(repr, MODES))}")
    k, H = _int(k, "k"), _int(H, "H")  # noqa: N806
    return {"sync": 1, "accumulate": k, "local_sgd": H}[mode]


def default_eval_every(period: int) -> int:
    """Evaluate on sync steps, about every 4 steps: the smallest multiple of ``period`` >= 4."""
    return period * math.ceil(4 / period)


def _data(steps: int, batch: int, dim: int, eval_size: int, seed: int):
    x, y = synthetic_regression(batch * steps + eval_size, dim, seed)
    return x[:batch * steps], y[:batch * steps], x[batch * steps:], y[batch * steps:]


def _flat_all_reduce_mean(tensors, name: str) -> None:
    """Average ``tensors`` over ranks in one flat all-reduce (a traced wait, then comm)."""
    flat = torch.cat([t.reshape(-1) for t in tensors])
    trace.all_reduce(flat, name=name)
    flat /= dist.get_world_size()
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()


def train(mode: str = "sync", steps: int = 160, k: int = 4, H: int = 4, batch: int = 64,  # noqa: N803
          dim: int = 64, hidden: int = 512, layers: int = 3, lr: float = 0.05,
          eval_every: int | None = None, eval_size: int = 256, seed: int = 0,
          check: bool = False) -> list[float]:
    """Train the MLP with ``mode`` (``sync``, ``accumulate`` every ``k`` micro-batches, or
    ``local_sgd`` averaging every ``H`` steps), plain SGD at ``lr``; return the held-out
    losses.

    The loss every mode records is comparable: after every ``eval_every`` steps (a
    multiple of the sync period, so every rank holds the same, averaged model) each rank
    evaluates it on the same held-out batch of ``eval_size`` samples (the last ones
    generated, never trained on), in a span ``evaluate`` (compute, ``eval=True``), and
    ``trace.step`` gets ``loss=`` it (None on other steps), ``train_loss=`` this rank's
    micro-batch loss, ``mode``, ``synced``, ``period``, and ``initial_loss`` (the model
    before training) on the first step. Steps are traced as ``forward``, ``backward``,
    then on steps that communicate ``wait for others`` (idle) and ``all_reduce grads`` /
    ``all_reduce params`` (comm), and ``optimizer step``. ``check=True`` also replays the
    same training in one process (:func:`simulate`) and writes the largest parameter
    difference to ``sync_check_{mode}_rank{R}.json`` in the run directory.
    """
    kw = dict(steps=steps, k=k, H=H, batch=batch, dim=dim, hidden=hidden, layers=layers, lr=lr,
              eval_size=eval_size, seed=seed)
    every = _check_train(mode, eval_every, **kw)
    trace.set_total_steps(steps)
    return _train(mode, every, check, **kw)


def compare(modes=MODES, steps: int = 160, k: int = 4, H: int = 4, eval_every: int | None = None,  # noqa: N803
            check: bool = False, **kwargs) -> None:
    """Run :func:`train` for each of ``modes`` one after another (same model, data and
    steps); ``eval_every`` defaults to one that suits every mode (lcm of the periods, >= 4).
    Step numbers keep counting across modes; each ``step_end`` names its ``mode``.
    """
    modes = [modes] if isinstance(modes, str) else list(modes)
    if not modes:
        raise ValueError(f"modes={modes!r}: give at least one of {MODES}")
    if eval_every is None:
        eval_every = default_eval_every(math.lcm(*(sync_period(m, k, H) for m in modes)))
    kw = {n: p.default for n, p in inspect.signature(train).parameters.items()
          if n not in ("mode", "eval_every", "check")} | {"steps": steps, "k": k, "H": H}
    unknown = sorted(set(kwargs) - set(kw))
    if unknown:
        raise ValueError(f"{unknown[0]}= is not an argument of compare; it takes modes, eval_every, "
                         f"check, {', '.join(kw)}")
    kw.update(kwargs)
    every = [_check_train(m, eval_every, **kw) for m in modes]     # every mode, before any runs
    trace.set_total_steps(steps * len(modes))
    for m, e in zip(modes, every, strict=True):
        _train(m, e, check, **kw)


def _check_train(mode, eval_every, *, steps, k, H, batch, dim, hidden, layers, eval_size,  # noqa: N803
                 **_) -> int:
    """Check a run's arguments; return its ``eval_every``."""
    period = sync_period(mode, k, H)
    for v, name in ((steps, "steps"), (batch, "batch"), (dim, "dim"), (hidden, "hidden"),
                    (layers, "layers"), (eval_size, "eval_size")):
        _int(v, name)
    every = default_eval_every(period) if eval_every is None else _int(eval_every, "eval_every")
    if every % period:
        raise ValueError(f"eval_every={every}: must be a multiple of the sync period "
                         f"({period} for mode={mode!r}), so that every rank holds the averaged model")
    world = dist.get_world_size()
    if batch % world:
        raise ValueError(f"batch={batch}: must split evenly over the {world} ranks")
    return every


def _train(mode, eval_every, check, *, steps, k, H, batch, dim, hidden, layers, lr, eval_size,  # noqa: N803
           seed) -> list[float]:
    period = sync_period(mode, k, H)
    world, rank = dist.get_world_size(), dist.get_rank()
    local = batch // world
    x_all, y_all, x_eval, y_eval = _data(steps, batch, dim, eval_size, seed)
    model = make_mlp(dim, hidden, layers, seed)
    start = copy.deepcopy(model.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    params = list(model.parameters())
    with torch.no_grad():
        initial = nn.functional.mse_loss(model(x_eval), y_eval).item()
    dist.barrier()                  # every mode starts together (compare runs them in a row)
    t = trace.get_tracer()
    if t is not None:
        t.instant("relaxed sync start", mode=mode)
    losses = []
    for step in range(steps):
        lo = step * batch + rank * local
        x, y = x_all[lo:lo + local], y_all[lo:lo + local]
        with trace.span("forward"):
            loss = nn.functional.mse_loss(model(x), y)
        with trace.span("backward"):
            (loss / k if mode == "accumulate" else loss).backward()
        synced = (step + 1) % period == 0
        if mode in ("sync", "accumulate") and synced:
            _flat_all_reduce_mean([p.grad for p in params], "all_reduce grads")
        if mode == "local_sgd" or synced:
            with trace.span("optimizer step", cat="optimizer"):
                opt.step()
                opt.zero_grad(set_to_none=True)
        if mode == "local_sgd" and synced:
            with torch.no_grad():
                _flat_all_reduce_mean([p.data for p in params], "all_reduce params")
        held_out = None
        if (step + 1) % eval_every == 0:
            with trace.span("evaluate", eval=True), torch.no_grad():
                held_out = nn.functional.mse_loss(model(x_eval), y_eval).item()
            losses.append(held_out)
        extra = {"initial_loss": initial} if step == 0 else {}
        trace.step(loss=held_out, train_loss=loss.item(), mode=mode, synced=synced, period=period,
                   **extra)
    if rank == 0:
        print(f"{mode}: held-out loss {initial:.4f} -> {losses[-1] if losses else initial:.4f} "
              f"in {steps} steps on {world} ranks")
    if check:
        _write_check(mode, model, start, world, rank, steps=steps, k=k, H=H, batch=batch,
                     dim=dim, hidden=hidden, layers=layers, lr=lr, seed=seed, eval_size=eval_size)
    return losses


# -- the same algorithms in one process: the reference the check compares with --------------------

def simulate(mode: str, world: int, steps: int, k: int = 4, H: int = 4, batch: int = 64,  # noqa: N803
             dim: int = 64, hidden: int = 512, layers: int = 3, lr: float = 0.05, seed: int = 0,
             eval_size: int = 256) -> nn.Module:
    """Train as :func:`train` would on ``world`` ranks, in one process and without any
    collective; return the final model (rank 0's, which all ranks share after a sync).

    ``sync`` and ``accumulate`` are plain SGD on one model, each update on the mean loss of
    the whole global batch (``k`` of them for ``accumulate``): what averaging gradients over
    ranks must equal. ``local_sgd`` keeps one model per rank, steps each on its own slice
    and averages their parameters every ``H`` steps.

    >>> m = simulate("accumulate", world=2, steps=4, k=2, batch=8, dim=4, hidden=8, layers=1)
    >>> sum(p.numel() for p in m.parameters())
    49
    """
    period = sync_period(mode, k, H)
    x_all, y_all, _, _ = _data(steps, batch, dim, eval_size, seed)
    if mode != "local_sgd":
        model = make_mlp(dim, hidden, layers, seed)
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        for u in range(steps // period):
            rows = slice(u * period * batch, (u + 1) * period * batch)
            nn.functional.mse_loss(model(x_all[rows]), y_all[rows]).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return model
    local = batch // world
    models = [make_mlp(dim, hidden, layers, seed) for _ in range(world)]
    opts = [torch.optim.SGD(m.parameters(), lr=lr) for m in models]
    for step in range(steps):
        for r, (m, o) in enumerate(zip(models, opts, strict=True)):
            lo = step * batch + r * local
            nn.functional.mse_loss(m(x_all[lo:lo + local]), y_all[lo:lo + local]).backward()
            o.step()
            o.zero_grad(set_to_none=True)
        if (step + 1) % period == 0:
            with torch.no_grad():
                for ps in zip(*(m.parameters() for m in models), strict=True):
                    mean = torch.stack(ps).mean(0)
                    for p in ps:
                        p.copy_(mean)
    return models[0]


def _write_check(mode, model, start, world, rank, **kw) -> None:
    ref = simulate(mode, world, **kw)
    with torch.no_grad():
        diff = max(float((a - b).abs().max()) for a, b in zip(model.parameters(), ref.parameters(),
                                                              strict=True))
        moved = max(float((p - start[n]).abs().max()) for n, p in model.named_parameters())
    run_dir = os.environ.get("GPUVIZ_RUN_DIR", ".")
    with open(os.path.join(run_dir, f"sync_check_{mode}_rank{rank}.json"), "w", encoding="utf-8") as f:
        json.dump({"mode": mode, "rank": rank, "world": world, "max_abs_diff": diff,
                   "max_change": moved, **kw}, f)
