"""Search every layout of a training run for the fastest that fits, and say why it wins.

:func:`search` evaluates every (dp, tp, pp, cp, ep, virtual pipeline stages, micro-batch,
ZeRO stage, recomputation) combination for a GPU count at once with
:func:`gpuviz.plan.terms.step_terms` (numpy arrays, no Python loop over layouts), so
16,384 GPUs take well under a second. Layouts
that do not fit in memory stay in the table, marked ``fits=False``. All modelled.

>>> best = search("llama3-70b", gpus=256, global_batch=512, gpu="H100 SXM")
>>> bool(best["fits"].iloc[0]), best.attrs["reason"].split(":")[0]
(True, 'dp=...')
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

import gpuviz.plan.terms as terms
from gpuviz.plan.config import Config, hardware, step_kwargs
from gpuviz.plan.terms import RECOMPUTE, TIME_TERMS
from gpuviz.plan.transformer import MODELLED, transformer

#: Virtual pipeline stages the search tries (1: plain 1F1B; 2 and 4: interleaved).
VIRTUAL_STAGES = (1, 2, 4)

_TERM_WORDS = {"compute": "compute", "tp_comm": "tensor- and context-parallel communication",
               "pp_comm": "pipeline sends", "zero3_comm": "ZeRO-3 gathers",
               "ep_comm": "expert all-to-alls",
               "bubble": "pipeline bubble", "dp_comm": "exposed gradient sync",
               "optimizer": "optimizer step", "overhead": "overhead"}


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _counts(values, name: str = "virtual_stages") -> tuple[int, ...]:
    vs = (values,) if isinstance(values, (int, np.integer)) else tuple(values)
    if not vs or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in vs):
        raise ValueError(f"{name}={values!r}: give an integer >= 1 or a sequence of "
                         "them, e.g. (1, 2, 4)")
    return tuple(sorted({int(v) for v in vs}))


def layouts(model, gpus: int, global_batch: int, gpus_per_node: int = 8, zero=(0, 1, 2, 3),
            recompute=RECOMPUTE, micro_batches=None, virtual_stages=VIRTUAL_STAGES,
            schedule: str = "1f1b", context_parallel=(1,), expert_parallel=None) -> pd.DataFrame:
    """Every valid layout: tp divides the heads and stays inside a server (tp <= gpus per
    node), pp <= layers, dp = gpus / (tp pp), and the global batch splits into whole
    micro-batches (powers of 2 by default) on every replica.

    ``virtual_stages`` (v) > 1, the interleaved 1F1B schedule (Narayanan et al. 2021,
    Section 2.2.2), only where Megatron-LM can run it (its README, "interleaved pipelining
    schedule", https://github.com/NVIDIA/Megatron-LM): pp > 1, the schedule is "1f1b",
    the micro-batches per replica are a multiple of pp, and the layers of the busiest stage,
    ceil(layers / pp) as the model counts them, split into v chunks of whole layers, none
    of the pp v chunks empty (pp v <= layers). ``context_parallel``: the cp sizes to try
    (each must divide the sequence; default 1 alone). ``expert_parallel``: the ep sizes to
    try for a mixture of experts, each kept where it divides the experts and tp x cp x dp
    (default: every power of 2 up to the experts; a dense model: 1 alone).

    >>> t = layouts("gpt3-175b", gpus=8, global_batch=8, zero=(0,), recompute=("none",))
    >>> t[["dp", "tp", "pp"]].drop_duplicates().shape[0]
    10
    >>> sorted(set(t.loc[t["pp"] == 1, "virtual_stages"])), sorted(set(t["virtual_stages"]))
    ([1], [1, 2, 4])
    """
    spec = transformer(model)
    vs = _counts(virtual_stages)
    cps = _counts(context_parallel, "context_parallel")
    eps = (_counts(expert_parallel, "expert_parallel") if expert_parallel is not None
           else tuple(2**k for k in range(spec.experts.bit_length())) if spec.moe else (1,))
    if not spec.moe and eps != (1,):
        raise ValueError(f"expert_parallel={expert_parallel!r}: the model {spec.name} has no "
                         "experts; leave it out or give (1,)")
    rows = []
    for tp, cp in itertools.product(_divisors(gpus), cps):
        if spec.heads % tp or tp > gpus_per_node or (gpus // tp) % cp or spec.seq % cp:
            continue
        for pp in _divisors(gpus // (tp * cp)):
            if pp > spec.layers:
                continue
            dp = gpus // (tp * pp * cp)
            if global_batch % dp:
                continue
            per = global_batch // dp
            stage_layers = -(-spec.layers // pp)
            for m in (micro_batches or [2**k for k in range(12)]):
                if m > per or per % m:
                    continue
                rows += [(dp, tp, pp, cp, ep, m, v) for v in vs if v == 1 or (
                    pp > 1 and schedule == "1f1b" and (per // m) % pp == 0 and stage_layers % v == 0
                    and pp * v <= spec.layers)
                    for ep in eps if ep == 1 or (spec.experts % ep == 0 and (tp * cp * dp) % ep == 0)]
    cols = ["dp", "tp", "pp", "cp", "ep", "micro_batch", "virtual_stages"]
    if not rows:
        return pd.DataFrame(columns=[*cols, "zero", "recompute"])
    base = pd.DataFrame(rows, columns=cols)
    extra = pd.DataFrame(list(itertools.product(zero, recompute)), columns=["zero", "recompute"])
    return base.merge(extra, how="cross")


def search(model, gpus: int, global_batch: int, gpu="H100 SXM", inter_link="ib-ndr",
           gpus_per_node: int = 8, precision: str = "bf16", zero=(0, 1, 2, 3),
           recompute=RECOMPUTE, micro_batches=None, virtual_stages=VIRTUAL_STAGES,
           context_parallel=(1,), expert_parallel=None, **config) -> pd.DataFrame:
    """Every layout of ``model`` on ``gpus`` GPUs, fastest fitting first.

    Columns: dp, tp, pp, cp, ep, micro_batch, virtual_stages, zero, recompute, step_s,
    tokens_per_s, mfu, tflops_per_gpu, memory_GiB, margin_GiB (capacity left after the
    memory and the reserved allowance), fits, dominant, each time term (s) and ``kind``.
    Rows: layouts that fit, by tokens/s, then those that do not. ``attrs``: ``reason`` (why
    the winner beats the runner-up, the best layout with another dp, tp, pp, cp, ep), ``best``
    (its :class:`gpuviz.plan.prediction.Config`), ``capacity_GiB``. ``context_parallel``:
    the cp sizes to try. Other keyword arguments go to every
    :class:`~gpuviz.plan.prediction.Config` (e.g. ``intra_link``, ``efficiency``,
    ``schedule``, ``attention``, ``reserved_gib``; ``precision="fp8"``). ``expert_parallel``:
    the ep sizes to try for a mixture of experts (see :func:`layouts`).
    ``virtual_stages``: the interleaved schedules to try where :func:`layouts` allows them
    (an integer or a sequence; 1 alone: plain 1F1B only).

    Raises ValueError if no layout fits in memory (the message names the smallest).
    """
    # the model, hardware and settings, checked once (a one-GPU layout; search sets the rest)
    proto = Config(transformer(model), gpus=1, global_batch=global_batch, gpu=gpu,
                   inter_link=inter_link, gpus_per_node=gpus_per_node, precision=precision,
                   **config)
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise ValueError(f"gpus={gpus!r}: must be an integer >= 1")
    table = layouts(proto.model, gpus, global_batch, gpus_per_node, zero, recompute, micro_batches,
                    virtual_stages, proto.schedule, context_parallel, expert_parallel)
    if table.empty:
        raise ValueError(f"gpus={gpus}, global_batch={global_batch}: no valid layout (tp must divide "
                         f"heads={proto.model.heads}, pp <= layers, the batch must split over dp)")
    hw = hardware(proto)
    rc = table["recompute"].map(RECOMPUTE.index).to_numpy()
    kw = step_kwargs(proto, hw)
    kw.update(dp=table["dp"].to_numpy(), tp=table["tp"].to_numpy(), pp=table["pp"].to_numpy(),
              cp=table["cp"].to_numpy(), ep=table["ep"].to_numpy(), micro_batch=table["micro_batch"].to_numpy(),
              global_batch=global_batch, zero=table["zero"].to_numpy(), recompute=rc,
              virtual_stages=table["virtual_stages"].to_numpy())
    t = terms.step_terms(proto.model.spec(), hw, **kw)
    n = len(table)
    for k in ("step_s", "tokens_per_s", "mfu", "tflops_per_gpu", *TIME_TERMS):
        table[k] = np.broadcast_to(t[k], n)
    table["memory_GiB"] = t["memory_bytes"] / 2**30
    table["margin_GiB"] = (hw["memory_bytes"] - t["memory_bytes"]) / 2**30 - proto.reserved_gib
    table["fits"] = table["margin_GiB"] >= 0
    stacked = np.stack([table[k].to_numpy() for k in TIME_TERMS])
    table["dominant"] = np.array(TIME_TERMS)[stacked.argmax(axis=0)]
    table["kind"] = MODELLED
    if not table["fits"].any():
        low = table.loc[table["memory_GiB"].idxmin()]
        raise ValueError(
            f"model {proto.model.name} fits nowhere on gpus={gpus} x {hw['name']} "
            f"({hw['memory_bytes'] / 2**30:.1f} GiB each, {proto.reserved_gib:g} GiB reserved): the "
            f"smallest layout needs {low['memory_GiB']:.1f} GiB per GPU ({layout_name(low)}); use more "
            "GPUs or larger ones")
    table = table.sort_values(["fits", "tokens_per_s"], ascending=[False, False], kind="stable")
    table = table.reset_index(drop=True)
    table.attrs["capacity_GiB"] = hw["memory_bytes"] / 2**30
    table.attrs["reserved_GiB"] = proto.reserved_gib
    table.attrs["best"] = _config(proto, table.iloc[0])
    table.attrs["reason"] = reason(table)
    return table


def _config(proto: Config, row) -> Config:
    return proto.replace(gpus=int(row["dp"] * row["tp"] * row["pp"] * row["cp"]), dp=int(row["dp"]),
                         tp=int(row["tp"]), pp=int(row["pp"]), cp=int(row["cp"]), ep=int(row["ep"]),
                         micro_batch=int(row["micro_batch"]), zero=int(row["zero"]),
                         recompute=row["recompute"], virtual_stages=int(row["virtual_stages"]))


def layout_name(row) -> str:
    """A layout in one line, from a :func:`search` row (or a dict with its columns).

    >>> layout_name({"dp": 8, "tp": 8, "pp": 1, "cp": 2, "micro_batch": 1, "zero": 1,
    ...              "recompute": "selective"})
    'dp=8 tp=8 pp=1 cp=2 mb=1 zero=1 recompute=selective'
    """
    v = int(row.get("virtual_stages", 1))
    cp, ep = int(row.get("cp", 1)), int(row.get("ep", 1))
    return (f"dp={row['dp']} tp={row['tp']} pp={row['pp']}{f' cp={cp}' if cp > 1 else ''}"
            f"{f' ep={ep}' if ep > 1 else ''}"
            f"{f' v={v}' if v > 1 else ''} "
            f"mb={row['micro_batch']} zero={row['zero']} recompute={row['recompute']}")


def reason(table: pd.DataFrame) -> str:
    """Why the first row of a :func:`search` table wins: the term in which it gains most
    over the runner-up (the best fitting layout with another dp, tp, pp, cp or ep), and the term
    that dominates its own step."""
    fit = table[table["fits"]]
    win = fit.iloc[0]
    others = fit[(fit["dp"] != win["dp"]) | (fit["tp"] != win["tp"]) | (fit["pp"] != win["pp"])
                 | (fit["cp"] != win["cp"]) | (fit["ep"] != win["ep"])]
    own = (f"its step is {win['step_s']:.3g} s, mostly {_TERM_WORDS[win['dominant']]} "
           f"({win[win['dominant']] / win['step_s']:.0%})")
    if others.empty:
        return f"{layout_name(win)}: the only layout that fits; {own} (modelled)"
    run = others.iloc[0]
    gains = {k: run[k] - win[k] for k in TIME_TERMS}
    k = max(gains, key=gains.get)
    return (f"{layout_name(win)}: {run['step_s'] / win['step_s']:.2f}x faster than the runner-up "
            f"{layout_name(run)}, mostly by less {_TERM_WORDS[k]} ({gains[k]:.3g} s less per step); "
            f"{own} (modelled)")
