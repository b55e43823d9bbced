"""The parallelism lab's workload: the small GPT trained under any strategy, on every rank.

Every rank builds the same :class:`~gpuviz.workloads.gpt.GPT` (one ``seed``), wraps it in
the named strategy (:mod:`gpuviz.parallel`; each follows the contract of
:mod:`gpuviz.parallel.strategy`) and trains it on the global batch of each step
(:class:`~gpuviz.workloads.gpt.TokenData`, a ``load batch`` data span). Every step's
``step_end`` carries ``strategy``, ``loss``, ``warmup``, ``tokens`` and the strategy's
``memory()`` (bytes by kind on this rank), so :mod:`gpuviz.parallel.scaling` reads everything
back from the trace.

:func:`sweep` runs several configurations one after the other in one job (a job costs
10-20 s to start on a small CPU), each on the first ``ranks`` ranks of the job: the
others wait (an ``idle`` span) and emit the same steps tagged ``member=False``, so step
numbers stay aligned across ranks.

    gpuviz run gpuviz.workloads.parallelism:train --nproc 2
    torchrun --standalone --nproc-per-node 4 -m gpuviz.run.worker gpuviz.workloads.parallelism:train \\
        --run-dir runs/zero3 --kwargs '{"strategy": "zero3"}'

>>> import gpuviz
>>> run = gpuviz.launch("gpuviz.workloads.parallelism:train", nproc=2,
...                     args={"strategy": "ddp", "steps": 3})                # doctest: +SKIP
>>> check_config({"strategy": "gpipe", "micro_batches": 4}, world=2)["micro_batches"]
4
"""

from __future__ import annotations

import dataclasses
import importlib
import math

#: Every strategy by name: (module, class, fixed keyword arguments).
STRATEGIES = {
    "single": ("gpuviz.parallel.strategy", "SingleProcess", {}),
    "naive_dp": ("gpuviz.parallel.data", "NaiveDataParallel", {}),
    "ddp": ("gpuviz.parallel.data", "BucketDataParallel", {}),
    "zero1": ("gpuviz.parallel.zero", "ZeRO", {"stage": 1}),
    "zero2": ("gpuviz.parallel.zero", "ZeRO", {"stage": 2}),
    "zero3": ("gpuviz.parallel.zero", "ZeRO", {"stage": 3}),
    "tp": ("gpuviz.parallel.tensor", "TensorParallel", {}),
    "gpipe": ("gpuviz.parallel.pipeline", "Pipeline", {"schedule": "gpipe"}),
    "1f1b": ("gpuviz.parallel.pipeline", "Pipeline", {"schedule": "1f1b"}),
}
#: Strategies that split the batch over the ranks (the global batch must divide evenly).
SPLITS_BATCH = ("naive_dp", "ddp", "zero1", "zero2", "zero3")
PIPELINES = ("gpipe", "1f1b")
#: What a configuration of :func:`sweep` may set, and its default.
DEFAULTS = {"strategy": "ddp", "ranks": None, "steps": 8, "batch": 16, "micro_batches": 4,
            "bucket_mb": 1.0, "warmup": 1, "tag": "", "precision": "fp32"}
#: Precisions a configuration may train in: bf16 runs forward and backward under
#: ``torch.autocast`` (matrix products in bfloat16, weights and optimizer in float32).
PRECISIONS = ("fp32", "bf16")
#: Strategies that can train under bf16 autocast (the others send activations of a fixed dtype).
AUTOCAST_STRATEGIES = ("single", *SPLITS_BATCH)


def check_config(config: dict, world: int, model=None) -> dict:
    """One configuration with defaults filled in and checked for ``world`` ranks (a
    ``ranks`` of None means all of them) and, if given, the ``model``'s GPTConfig, or a
    ValueError naming what is wrong.

    >>> check_config({"strategy": "ddp", "batch": 6}, world=4)
    Traceback (most recent call last):
    ValueError: batch=6 cannot be split over ranks=4 by ddp: give a multiple of 4
    """
    if not isinstance(config, dict):
        raise ValueError(f"config={config!r}: give a dict with keys from {sorted(DEFAULTS)}")
    if unknown := sorted(set(config) - set(DEFAULTS)):
        raise ValueError(f"config keys {unknown} are unknown; allowed: {sorted(DEFAULTS)}")
    c = {**DEFAULTS, **config}
    if c["strategy"] not in STRATEGIES:
        raise ValueError(f"strategy={c['strategy']!r}: use one of {', '.join(STRATEGIES)}")
    c["ranks"] = world if c["ranks"] is None else c["ranks"]
    for key, lo in (("ranks", 1), ("steps", 1), ("batch", 1), ("micro_batches", 1), ("warmup", 0)):
        v = c[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{key}={v!r}: must be an integer >= {lo}")
    if c["ranks"] > world:
        raise ValueError(f"ranks={c['ranks']}: the job has only {world} ranks")
    b = c["bucket_mb"]
    if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b <= 0:
        raise ValueError(f"bucket_mb={b!r}: give the bucket size in MiB, a number > 0")
    if c["precision"] not in PRECISIONS:
        raise ValueError(f"precision={c['precision']!r}: use one of {', '.join(map(repr, PRECISIONS))}")
    if c["precision"] != "fp32" and c["strategy"] not in AUTOCAST_STRATEGIES:
        raise ValueError(f"precision={c['precision']!r} with strategy={c['strategy']!r}: bf16 is "
                         f"available for {', '.join(AUTOCAST_STRATEGIES)}")
    if not isinstance(c["tag"], str):
        raise ValueError(f"tag={c['tag']!r}: give a string (e.g. 'strong' or 'weak')")
    s, n = c["strategy"], c["ranks"]
    if s in SPLITS_BATCH and c["batch"] % n:
        raise ValueError(f"batch={c['batch']} cannot be split over ranks={n} by {s}: "
                         f"give a multiple of {n}")
    if s in PIPELINES and c["batch"] % c["micro_batches"]:
        raise ValueError(f"batch={c['batch']} cannot be cut into micro_batches="
                         f"{c['micro_batches']} equal micro-batches: give a multiple of it")
    if s in PIPELINES and c["micro_batches"] < n:
        raise ValueError(f"micro_batches={c['micro_batches']} is fewer than the {n} pipeline "
                         f"stages (ranks): give micro_batches >= {n}")
    if model is not None and s in PIPELINES and model.layers % n:
        raise ValueError(f"model layers={model.layers} cannot be split into {n} pipeline stages: "
                         f"give a multiple of {n}")
    if model is not None and s == "tp" and (model.heads % n or model.mlp_ratio * model.dim % n):
        raise ValueError(f"model heads={model.heads} (and the MLP width) cannot be split over "
                         f"ranks={n} by tp: give heads and mlp_ratio * dim that are multiples of {n}")
    return c


def model_config(model: dict | None):
    """``model`` (a dict of :class:`~gpuviz.workloads.gpt.GPTConfig` fields) as a GPTConfig.

    >>> model_config({"layers": 2}).layers
    2
    """
    from gpuviz.workloads.gpt import GPTConfig

    fields = [f.name for f in dataclasses.fields(GPTConfig)]
    if model is None:
        return GPTConfig()
    if not isinstance(model, dict) or set(model) - set(fields):
        raise ValueError(f"model={model!r}: give a dict of GPTConfig fields ({', '.join(fields)})")
    return GPTConfig(**model)


def make_strategy(name: str, model, *, group=None, micro_batches: int = 4, bucket_mb: float = 1.0,
                  lr: float | None = None):
    """The strategy ``name`` wrapped around ``model`` (imported when first asked for).

    >>> from gpuviz.workloads.gpt import GPT, GPTConfig
    >>> make_strategy("single", GPT(GPTConfig(layers=1, dim=16, vocab=8))).name
    'single'
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy={name!r}: use one of {', '.join(STRATEGIES)}")
    module, cls, kwargs = STRATEGIES[name]
    try:
        factory = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"strategy={name!r} needs {module}.{cls}, which this installation "
                         f"does not have ({e})") from None
    kwargs = dict(kwargs)
    if lr is not None:
        kwargs["lr"] = lr
    if name != "single":
        kwargs["group"] = group
    if name == "ddp":
        kwargs["bucket_mb"] = bucket_mb
    if name in PIPELINES:
        kwargs["micro_batches"] = micro_batches
    return factory(model, **kwargs)


def train(strategy: str = "ddp", steps: int = 8, batch: int = 16, micro_batches: int = 4,
          bucket_mb: float = 1.0, warmup: int = 1, seed: int = 0, model: dict | None = None,
          ) -> list[float]:
    """Train the GPT under ``strategy`` on every rank of the job; return the global losses.

    Args:
        strategy: one of :data:`STRATEGIES`. ``single`` on more than one rank: every rank
            trains the whole batch alone (no communication), the baseline for scaling.
        steps: measured steps; warmup: steps before them, tagged ``warmup=True``.
        batch: global batch (sequences) of a step, split by the data-parallel strategies.
        micro_batches: for ``gpipe`` and ``1f1b``; bucket_mb: gradient bucket for ``ddp``.
        seed: the model's initial weights; model: GPTConfig fields, e.g. ``{"layers": 2}``.
    """
    config = {"strategy": strategy, "steps": steps, "batch": batch,
              "micro_batches": micro_batches, "bucket_mb": bucket_mb, "warmup": warmup}
    return sweep([config], seed=seed, model=model)[0]


def sweep(configs: list[dict], seed: int = 0, model: dict | None = None, lr: float | None = None,
          ) -> list[list[float]]:
    """Run each configuration in turn (keys of :data:`DEFAULTS`); return each one's losses
    (empty on ranks outside its ``ranks``).

    Each configuration starts with a setup step (``setup=True``: a barrier, then building
    the strategy from a fresh model, so every configuration starts from the same weights
    and sees the same batches), then ``warmup + steps`` training steps. Every step's
    ``step_end`` carries ``config`` (its index), ``strategy``, ``tag``, ``ranks``,
    ``batch``, ``micro_batches``, ``bucket_mb``, ``member``, ``setup``, ``warmup``; a
    member's training steps also ``loss``, ``tokens`` (trained in the step, all ranks
    together), ``n_params`` and ``memory``.

    >>> gpuviz.launch("gpuviz.workloads.parallelism:sweep", nproc=2, args={"configs": [
    ...     {"strategy": "gpipe", "micro_batches": m} for m in (1, 2, 4)]})   # doctest: +SKIP
    """
    import torch
    import torch.distributed as dist

    from gpuviz.run import trace
    from gpuviz.workloads.gpt import GPT, TokenData

    world, rank = dist.get_world_size(), dist.get_rank()
    if not isinstance(configs, (list, tuple)) or not configs:
        raise ValueError(f"configs={configs!r}: give a non-empty list of dicts")
    cfg = model_config(model)
    configs = [check_config(c, world, cfg) for c in configs]
    data = TokenData(cfg.vocab, cfg.seq_len)
    # Every rank must create every group, in the same order, before any is used.
    groups = {n: dist.new_group(list(range(n))) for n in sorted({c["ranks"] for c in configs})
              if n < world}
    trace.set_total_steps(sum(1 + c["warmup"] + c["steps"] for c in configs))
    out = []
    for index, c in enumerate(configs):
        tags = {"config": index, **{k: c[k] for k in ("strategy", "tag", "ranks", "batch",
                                                       "micro_batches", "bucket_mb", "precision")}}
        member = rank < c["ranks"]
        with trace.span("wait for others", cat="idle"):
            dist.barrier()
        if member:
            with trace.span(f"build {c['strategy']}", cat="compute"):
                net = GPT(cfg, seed)
                n_params = net.num_params()   # before a strategy shards or splits it
                strategy = make_strategy(c["strategy"], net, group=groups.get(c["ranks"]),
                                         micro_batches=c["micro_batches"],
                                         bucket_mb=c["bucket_mb"], lr=lr)
        trace.step(**tags, member=member, setup=True, warmup=True)
        losses: list[float] = []
        copies = c["ranks"] if c["strategy"] == "single" else 1   # each rank trains alone
        for i in range(c["warmup"] + c["steps"]):
            if not member:              # nothing to do: keep the step numbers aligned
                trace.step(**tags, member=False, setup=False, warmup=i < c["warmup"])
                continue
            with trace.span("load batch", cat="data"):
                x, y = data.batch(i, c["batch"])
            with torch.autocast(x.device.type, dtype=torch.bfloat16,
                                enabled=c["precision"] == "bf16"):
                loss = strategy.train_step(x, y)
            losses.append(loss)
            trace.step(**tags, member=True, setup=False, warmup=i < c["warmup"], loss=loss,
                       tokens=copies * x.numel(), n_params=n_params,
                       memory=strategy.memory())
        if member and rank == 0:
            print(f"config {index}: {c['strategy']} on {c['ranks']} ranks, batch {c['batch']}: "
                  f"loss {losses[0]:.3f} -> {losses[-1]:.3f}")
        out.append(losses)
        if member:
            del strategy, net
    with trace.span("wait for others", cat="idle"):
        dist.barrier()
    return out
