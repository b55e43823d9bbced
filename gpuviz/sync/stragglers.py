"""Stragglers in a traced run: who waited, for whom, and how that grows with ranks.

Every collective waits for the slowest rank. The analysis reads a traced
:class:`~gpuviz.run.load.Run` (DataFrames with a ``rank`` column, no drawing):
:func:`waiting` (each rank's wait before each collective), :func:`stragglers` (the last
rank to arrive in each step), :func:`straggler_scores` (per rank: how often it was last and
how long the others waited for it), and :func:`waiting_vs_ranks` measures the mean wait on
2, 4 and 8 ranks beside the prediction of :mod:`gpuviz.sync.order_stats`.

>>> df = waiting_vs_ranks()               # three real jobs: 2, 4 and 8 ranks  # doctest: +SKIP
>>> df[["nproc", "waited_ms", "predicted_ms", "ratio"]]                      # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gpuviz.sync import inject
from gpuviz.sync.order_stats import DEFAULT_JITTER, check_spec, expected_wait

# -- what a run measured ------------------------------------------------------------------------

def _warmup_steps(run) -> set:
    ends = run.events[run.events["name"] == "step_end"]
    return {int(s) for s, a in zip(ends["step"], ends["args"], strict=True) if a.get("warmup")}


def waiting(run, *, skip_warmup: bool = True) -> pd.DataFrame:
    """Each rank's waits for the others: one row per ``idle`` span on a rank's main thread
    (on an imported GPU trace: the wait inside each NCCL kernel for the last rank).

    Columns: rank, step, name (the collective the wait came before, e.g. ``all_reduce``:
    the next span if it is ``comm``, else the idle span's own name), span (the idle span's
    name), arrival (s: when the rank got there), wait_s. Steps whose ``step_end`` says
    ``warmup=True`` are left out unless ``skip_warmup=False``.

    >>> waiting(run).groupby("rank")["wait_s"].mean()            # doctest: +SKIP
    """
    sp = _spans(run)
    lanes = getattr(run, "main_lanes", ["main"])   # an imported GPU trace: its CUDA streams
    main = sp[sp["lane"].isin(lanes)].sort_values(["rank", "lane", "start"], kind="stable")
    parts = []
    for (rank, _lane), m in main.groupby(["rank", "lane"]):
        i = np.flatnonzero((m["cat"] == "idle").to_numpy())
        if not len(i):
            continue
        names, cats = m["name"].to_numpy(object), m["cat"].to_numpy(object)
        steps = m["step"].to_numpy(float, na_value=np.nan)
        j = np.searchsorted(m["start"].to_numpy(float), m["end"].to_numpy(float)[i] - 1e-6)
        j = np.maximum(j, i + 1)                      # a wait under 1 us: not itself
        k = np.minimum(j, len(m) - 1)
        before = (j < len(m)) & (cats[k] == "comm") & (steps[k] == steps[i])
        parts.append(pd.DataFrame({"rank": rank, "step": steps[i],
                                   "name": np.where(before, names[k], names[i]), "span": names[i],
                                   "arrival": m["start"].to_numpy(float)[i],
                                   "wait_s": m["dur"].to_numpy(float)[i]}))
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if out.empty:
        raise ValueError(f"run={run.path}: no rank recorded an 'idle' span (waiting for the "
                         "others); trace the wait, e.g. with gpuviz.run.trace.all_reduce")
    out = out.dropna(subset=["step"]).astype({"step": "int64"})
    if skip_warmup:
        out = out[~out["step"].isin(_warmup_steps(run))]
    return out.reset_index(drop=True)


def _spans(run) -> pd.DataFrame:
    sp = getattr(run, "spans", None)
    if sp is None:
        raise ValueError(f"run={run!r}: give a gpuviz.Run (gpuviz.launch or gpuviz.load_run)")
    return sp


def _per_step(run) -> pd.DataFrame:
    """Each rank's total wait per step, only steps where every rank waited."""
    world = run.world_size
    if world < 2:
        raise ValueError(f"run={run.path}: it has {world} rank; a straggler needs others to wait")
    per = (waiting(run).groupby(["step", "rank"])
           .agg(wait_s=("wait_s", "sum"), arrival=("arrival", "min")).reset_index())
    full = per.groupby("step")["rank"].transform("nunique") == world
    if not full.any():
        raise ValueError(f"run={run.path}: no step has a wait on all {world} ranks")
    return per[full]


def stragglers(run) -> pd.DataFrame:
    """Per step, the slowest rank: the last to arrive, i.e. the one that waited least.

    Columns: step, rank, wait_s (its own wait: the collective's latency alone, about),
    lateness_s (the other ranks' mean wait minus its own: how long they waited for it),
    margin_s (the next-least wait minus its own: how clear the call is), arrival (s).

    >>> stragglers(run)["rank"].value_counts()                   # doctest: +SKIP
    """
    per = _per_step(run).sort_values(["step", "wait_s"], kind="stable")
    g = per.groupby("step")
    first = g.head(1).set_index("step")
    n = g["wait_s"].count()
    others = (g["wait_s"].sum() - first["wait_s"]) / (n - 1)
    second = g["wait_s"].nth(1)
    second.index = per.loc[second.index, "step"]
    out = pd.DataFrame({"rank": first["rank"], "wait_s": first["wait_s"],
                        "lateness_s": others - first["wait_s"],
                        "margin_s": second - first["wait_s"], "arrival": first["arrival"]})
    return out.reset_index()


def straggler_scores(run) -> pd.DataFrame:
    """Per rank: how often it was the slowest and how long the others waited for it.

    Columns: rank, steps (steps analysed), slowest_steps, slowest_frac, mean_lateness_s
    (over the steps it was slowest; NaN if never), total_lateness_s (the others' mean wait
    it caused, summed), mean_wait_s (its own mean wait per step).

    >>> straggler_scores(run).sort_values("slowest_frac").tail(1)   # doctest: +SKIP
    """
    per, st = _per_step(run), stragglers(run)
    by = st.groupby("rank")["lateness_s"]
    out = pd.DataFrame({"steps": per.groupby("rank")["step"].nunique(),
                        "mean_wait_s": per.groupby("rank")["wait_s"].mean()})
    out["slowest_steps"] = by.count().reindex(out.index, fill_value=0)
    out["slowest_frac"] = out["slowest_steps"] / out["steps"]
    out["mean_lateness_s"] = by.mean().reindex(out.index)
    out["total_lateness_s"] = by.sum().reindex(out.index, fill_value=0.0)
    out.index.name = "rank"
    return out.reset_index()[["rank", "steps", "slowest_steps", "slowest_frac", "mean_lateness_s",
                              "total_lateness_s", "mean_wait_s"]]


def injected_delays(run) -> pd.DataFrame:
    """The delays the injections slept: rank, step, delay_s (summed over injections).

    >>> injected_delays(run).pivot(index="step", columns="rank", values="delay_s")  # doctest: +SKIP
    """
    sp = _spans(run)
    d = sp[sp["name"] == "injected delay"]
    d = pd.DataFrame({"rank": d["rank"].to_numpy(), "step": d["step"].to_numpy(),
                      "delay_s": [float(a.get("delay_s", np.nan)) for a in d["args"]]})
    return d.groupby(["rank", "step"], as_index=False)["delay_s"].sum()


def wait_summary(run, spec=None, *, ranks: int | None = None) -> pd.DataFrame:
    """One row: the mean wait per rank per step of ``run``, beside the order statistics.

    Columns: nproc, steps, wait_ms (measured: idle spans, mean over ranks and steps),
    wait_ms_se (its standard error over steps), floor_ms (the last arrival's own wait: what
    the barrier costs with no one to wait for), waited_ms (wait_ms - floor_ms: the wait for
    the others, which the order statistics predict), drawn_ms (the wait the delays actually
    drawn imply: mean over steps of max - mean over ranks), predicted_ms
    (:func:`expected_wait` of ``spec``, default the run's jitter injection), ratio
    (waited_ms / predicted_ms), ratio_drawn (waited_ms / drawn_ms: the timing alone, free of
    the luck of the draw), dist, spec, run.

    ``ranks=n`` summarises only the steps a run of ``jittered_steps(groups=[...])`` ran on
    its first n ranks (their ``step_end`` says ``ranks=n``), as a job of n ranks.

    >>> wait_summary(run)[["nproc", "wait_ms", "predicted_ms", "ratio"]]   # doctest: +SKIP
    """
    if ranks is not None:
        run = _first_ranks(run, ranks)
    if spec is None:
        jit = [s for s in (run.meta.get("inject") or []) if s.get("kind") == "jitter"]
        if len(jit) != 1:
            raise ValueError(f"run={run.path}: give spec= (the jitter its ranks drew): the run "
                             f"has {len(jit)} jitter injections")
        spec = jit[0]
    spec = check_spec(spec)
    per = _per_step(run)
    n = run.world_size
    step_mean = per.groupby("step")["wait_s"].mean()
    row = {"nproc": n, "steps": len(step_mean), "wait_ms": 1e3 * step_mean.mean(),
           "wait_ms_se": 1e3 * step_mean.std(ddof=1) / np.sqrt(len(step_mean)),
           "floor_ms": 1e3 * per.groupby("step")["wait_s"].min().mean()}
    row["waited_ms"] = row["wait_ms"] - row["floor_ms"]
    d = injected_delays(run)
    d = d[d["step"].isin(step_mean.index)]
    full = d.groupby("step")["rank"].transform("nunique") == n
    drawn = d[full].groupby("step")["delay_s"].agg(lambda x: x.max() - x.mean())
    row["drawn_ms"] = 1e3 * drawn.mean() if len(drawn) else np.nan
    row["predicted_ms"] = 1e3 * expected_wait(spec, n)
    row["ratio"] = row["waited_ms"] / row["predicted_ms"] if row["predicted_ms"] > 0 else np.nan
    row["ratio_drawn"] = row["waited_ms"] / row["drawn_ms"] if row["drawn_ms"] > 0 else np.nan
    row.update(dist=spec["dist"], spec=spec, run=str(run.path))
    return pd.DataFrame([row])


def _first_ranks(run, n):
    """The part of ``run`` that ran on its first ``n`` ranks (``step_end`` with ``ranks=n``),
    seen as a run of ``n`` ranks: spans and events of those ranks and steps only."""
    from types import SimpleNamespace

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 2 <= n <= run.world_size:
        raise ValueError(f"ranks={n!r}: give a rank count from 2 to the run's {run.world_size}")
    ev = run.events
    ends = ev[ev["name"] == "step_end"]
    steps = {int(s) for s, a in zip(ends["step"], ends["args"], strict=True) if a.get("ranks") == n}
    if not steps:
        raise ValueError(f"ranks={n}: no step of run={run.path} ran on {n} ranks (a run of "
                         "gpuviz.workloads.sync:jittered_steps with groups= tags them)")
    sp = run.spans
    keep_sp = (sp["rank"] < n) & sp["step"].isin(steps)
    keep_ev = (ev["rank"] < n) & ev["step"].isin(steps)
    return SimpleNamespace(spans=sp[keep_sp], events=ev[keep_ev], world_size=int(n),
                           path=run.path, meta=run.meta)


def waiting_vs_ranks(nprocs=(2, 4, 8), spec=None, steps: int = 150, *, one_job: bool = False,
                     **kwargs) -> pd.DataFrame:
    """Measure the mean wait per rank per step on each of ``nprocs`` ranks (one real job
    each, :func:`gpuviz.workloads.sync.jittered_steps` with ``spec`` injected on every
    rank), beside :func:`expected_wait`: :func:`wait_summary`'s row per rank count.

    ``one_job=True`` runs one job of ``max(nprocs)`` ranks instead, the steps once on the
    first n ranks for each n (a process subgroup, while the others sit out): the same
    barrier, one start-up instead of one per rank count (about 10 s each on 2 CPU cores).

    The default jitter (:data:`DEFAULT_JITTER`: exponential, 15 ms mean) is a sleep, which
    needs no core, and the workload's own compute is tiny, so 8 ranks on 2 cores still wait
    for the jitter and not for a core. 15 ms is large against the barrier's own cost (0.3
    to 4 ms on 2 CPU cores, taken off as ``floor_ms``) and small enough for 150 steps on
    2, 4 and 8 ranks to take about 20 s besides the three start-ups. A step's mean wait
    varies by 100% (2 ranks) to 57% (8 ranks) of its mean for this jitter, so 150 steps
    give a standard error of 8% to 5%. ``steps``, ``size``, ``warmup``, ``numel`` go to
    the workload, other ``kwargs`` to :func:`gpuviz.launch`; ``run_dir`` gets one
    sub-directory per rank count.

    >>> waiting_vs_ranks((2, 4, 8))[["nproc", "waited_ms", "predicted_ms", "ratio"]]  # doctest: +SKIP
       nproc  waited_ms  predicted_ms  ratio
    0      2       7.86          7.50   1.05
    1      4      16.08         16.25   0.99
    2      8      26.42         25.77   1.03
    """
    from pathlib import Path

    from gpuviz.run.launch import launch

    spec = inject.validate([dict(DEFAULT_JITTER) if spec is None else
                            {"kind": "jitter", **spec}])[0]
    if spec["kind"] != "jitter" or spec["ranks"] is not None:
        raise ValueError(f"spec={spec!r}: give a jitter on every rank (ranks=None)")
    if isinstance(nprocs, int):
        nprocs = [nprocs]
    nprocs = list(nprocs)
    if not nprocs or any(isinstance(n, bool) or not isinstance(n, int) or n < 2 for n in nprocs):
        raise ValueError(f"nprocs={nprocs!r}: give rank counts >= 2 (someone to wait for)")
    args = {"steps": steps, **{k: kwargs.pop(k) for k in ("size", "warmup", "numel") if k in kwargs}}
    base = kwargs.pop("run_dir", None)
    kwargs.setdefault("progress", False)
    kwargs.setdefault("stream", False)
    if one_job:
        run = launch("gpuviz.workloads.sync:jittered_steps", nproc=max(nprocs),
                     args={**args, "groups": nprocs}, inject=[spec], run_dir=base, **kwargs)
        return pd.concat([wait_summary(run, spec, ranks=n) for n in nprocs], ignore_index=True)
    rows = []
    for n in nprocs:
        run_dir = None if base is None else Path(base) / f"nproc{n}"
        run = launch("gpuviz.workloads.sync:jittered_steps", nproc=n, args=args, inject=[spec],
                     run_dir=run_dir, **kwargs)
        rows.append(wait_summary(run, spec))
    return pd.concat(rows, ignore_index=True)


def describe_hidden_waits(run) -> str:
    """On an imported GPU trace: how much of the NCCL kernels' time was waiting for the last
    rank, and who arrived last; sentences computed from the run."""
    if not getattr(run, "imported", False):
        raise ValueError(f"run={run.path}: give an imported GPU trace (gpuviz.load_run of "
                         "PyTorch profiler traces)")
    sp = run.spans[run.spans["lane"].isin(run.main_lanes)]
    nccl = sp[sp["args"].map(lambda a: bool(a.get("collective")))]
    waits = nccl[nccl["cat"] == "idle"]["dur"].sum()
    total = nccl["dur"].sum()
    if total <= 0:
        return "These traces hold no NCCL kernel."
    # Each rank arrives when its first span of the collective starts (its wait, if it waited).
    key = nccl["args"].map(lambda a: (a.get("group"), a.get("seq")))
    arrival = nccl.assign(key=key).groupby(["key", "rank"])["start"].min().reset_index()
    arrival = arrival[arrival["key"].map(lambda k: k[1] is not None)]
    lines = [f"NCCL kernels ran {total * 1e3:.2f} ms in all, over {run.meta.get('ranks_present')} "
             f"ranks; {waits * 1e3:.2f} ms of it ({waits / total:.0%}) was waiting inside the kernel "
             "for the last rank to arrive, not moving data."]
    if len(arrival):
        last = arrival.loc[arrival.groupby("key")["start"].idxmax(), "rank"].value_counts()
        n = int(last.sum())
        lines.append("The last to arrive, whom the others waited for: " + ", ".join(
            f"rank {r} at {c} of {n} collectives" for r, c in last.items()) + ".")
    return "\n".join(lines)
