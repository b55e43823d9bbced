"""Jobs that run a learner's own code on real ranks, for :mod:`gpuviz.checks`.

``gradient_sync`` trains a small GPT with data parallelism whose gradient exchange is
the learner's function ``sync_gradients(model)``, beside the single-process reference,
and writes what it found to ``exercise_rank{r}.json`` in the run directory.

>>> from gpuviz import checks
>>> checks.gradient_sync("my_sync.py")   # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import torch.distributed as dist

from gpuviz.parallel.strategy import SingleProcess, adam, local_batch
from gpuviz.run import trace
from gpuviz.workloads.gpt import GPT, GPTConfig, TokenData, lm_loss

#: The exercise's model: small, so the check takes seconds.
CONFIG = GPTConfig(vocab=64, seq_len=16, dim=32, heads=2, layers=2)


def load_function(path: str, name: str):
    """``name`` from the Python file at ``path`` (the learner's ``%%writefile``)."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"path={path!r}: no such file (write it with %%writefile first)")
    spec = importlib.util.spec_from_file_location(file.stem, file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ValueError(f"{path} defines no function {name}(model)")
    return fn


def gradient_sync(path: str, steps: int = 3, batch: int = 8) -> None:
    """Data parallel training with the learner's ``sync_gradients(model)`` after backward.

    Each rank computes gradients on its slice of the batch, calls the learner's function,
    and takes the Adam step; the reference trains the whole batch in one process. The
    result file holds the largest parameter difference, and the gradients seen just
    after the learner's function on this rank compared with the correct average and sum.
    """
    sync = load_function(path, "sync_gradients")
    rank, world = dist.get_rank(), dist.get_world_size()
    data = TokenData(CONFIG.vocab, CONFIG.seq_len)
    model, ref = GPT(CONFIG, seed=0), SingleProcess(GPT(CONFIG, seed=0))
    opt = adam(model.parameters())
    trace.set_total_steps(steps)
    found = {"rank": rank, "world": world, "grad_vs_mean": [], "grad_vs_sum": [],
             "grads_missing": False}
    for step in range(steps):
        x, y = data.batch(step, batch)
        xs, ys = local_batch(x, y, rank, world)
        with trace.span("forward"):
            loss = lm_loss(model(xs), ys)
        with trace.span("backward"):
            loss.backward()
        local = [p.grad.detach().clone() for p in model.parameters()]
        with trace.span("sync_gradients (yours)", cat="comm"):
            sync(model)
        if any(p.grad is None for p in model.parameters()):
            found["grads_missing"] = True
            break
        summed = [g.clone() for g in local]
        for g in summed:
            dist.all_reduce(g)
        got = [p.grad for p in model.parameters()]
        found["grad_vs_mean"].append(max(float((a - s / world).abs().max()) for a, s in zip(got, summed, strict=True)))
        found["grad_vs_sum"].append(max(float((a - s).abs().max()) for a, s in zip(got, summed, strict=True)))
        with trace.span("optimizer step", cat="optimizer"):
            opt.step()
            opt.zero_grad(set_to_none=True)
        ref.train_step(x, y)
        trace.step(loss=loss.item())
    theirs = ref.full_parameters()
    found["param_diff"] = max(float((p.detach() - theirs[n]).abs().max())
                              for n, p in model.named_parameters())
    out = Path(os.environ.get("GPUVIZ_RUN_DIR", ".")) / f"exercise_rank{rank}.json"
    out.write_text(json.dumps(found), encoding="utf-8")
