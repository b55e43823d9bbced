"""Joules per rank, step and category, from the energy counter track every rank records.

Each rank's tracer samples its meter (:mod:`gpuviz.energy.sampler`) and writes the cumulative joules
as the ``energy J`` counter. Between two samples the power is taken as constant, so the
joules of any interval are the difference of the cumulative curve, linearly interpolated,
at its ends: a whole step bounded by two readings is a counter difference; a span shorter
than the meter's update period gets the surrounding interval's mean power x its length
(``method`` says which). The main thread's time is split into its innermost spans (as
``Run.summary()`` does), so the categories and ``untraced`` add up to the rank's total.

>>> run = gpuviz.launch("gpuviz.workloads.mlp:train", nproc=2)    # doctest: +SKIP
>>> joules(run, "category")                                       # doctest: +SKIP
>>> joules(run, "rank")[["rank", "joules", "watts", "estimated"]]  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gpuviz.run.categories import CATEGORIES

#: What :func:`joules` can group by.
BY = ("rank", "step", "category")
_ENERGY = "energy J"


def curves(run) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
    """(rank, attempt) -> (times in s, cumulative joules), from the ``energy J`` counter."""
    ct = run.counters[run.counters["name"] == _ENERGY]
    out = {}
    for (rank, attempt), g in ct.groupby(["rank", "attempt"], sort=True):
        g = g.sort_values("time", kind="stable")
        t, e = g["time"].to_numpy(float), g["value"].to_numpy(float)
        keep = np.concatenate([[True], np.diff(t) > 0])   # one reading per instant
        out[(int(rank), int(attempt))] = (t[keep], e[keep])
    return out


def meters(run) -> dict[int, dict]:
    """Each rank's meter as its trace describes it (meter, estimated, note...)."""
    return {int(r): m for r, m in (run.meta.get("energy") or {}).items() if m}


def _check(run) -> dict:
    c = curves(run)
    if not c and getattr(run, "imported", False):
        raise ValueError(f"run={run.path}: no energy was recorded: PyTorch profiler traces hold "
                         "no power or energy counters, and gpuviz does not invent them")
    if not c:
        raise ValueError(f"run={run.path}: no energy was recorded (the job ran with energy='off', "
                         "or with a gpuviz older than its energy meters)")
    return c


def _method(meter: dict, seconds: float) -> str:
    if meter.get("estimated", True):
        return "estimate"
    return "counter" if seconds >= float(meter.get("update_period_s") or 0.0) else "power x time"


def joules(run, by: str = "category") -> pd.DataFrame:
    """Joules by ``"rank"``, ``"step"`` or ``"category"`` (per rank), with ``seconds``,
    ``watts`` (mean power), ``estimated`` and ``method``.

    ``category``: the rank's main thread split into compute, comm, optimizer, data, idle,
    io and ``untraced``, summing to the rank's total. ``step``: each step from the previous
    step's end (the first from the first reading) to its own. After an elastic restart
    each attempt is its own rows (``attempt``).
    """
    if by not in BY:
        raise ValueError(f"by={by!r}: use one of {', '.join(map(repr, BY))}")
    c = _check(run)
    info = meters(run)
    rows = []
    for (rank, attempt), (t, e) in c.items():
        meter = info.get(rank, {})
        base = {"rank": rank, "attempt": attempt, "estimated": bool(meter.get("estimated", True)),
                "meter": meter.get("meter", "?")}
        if by == "rank":
            rows.append({**base, "seconds": t[-1] - t[0], "joules": e[-1] - e[0],
                         "method": _method(meter, t[-1] - t[0])})
        elif by == "category":
            rows += [{**base, **r} for r in _by_category(run, rank, attempt, t, e, meter)]
        else:
            rows += [{**base, **r} for r in _by_step(run, rank, attempt, t, e, meter)]
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["watts"] = np.where(df["seconds"] > 0, df["joules"] / df["seconds"].where(df["seconds"] > 0), np.nan)
    if by == "rank":
        df = df.groupby("rank", as_index=False).agg(
            seconds=("seconds", "sum"), joules=("joules", "sum"), estimated=("estimated", "first"),
            meter=("meter", "first"), method=("method", "first"), attempts=("attempt", "nunique"))
        df["watts"] = df["joules"] / df["seconds"]
    first = ["rank", "attempt", "step", "category", "seconds", "joules", "watts", "estimated", "method"]
    return df[[k for k in first if k in df] + [k for k in df if k not in first]]


def _by_category(run, rank, attempt, t, e, meter) -> list[dict]:
    from gpuviz.run.intervals import innermost

    s = run.spans
    main = s[(s["rank"] == rank) & (s["attempt"] == attempt) & (s["lane"] == "main")]
    sums = {cat: [0.0, 0.0, 0] for cat in CATEGORIES}
    for a, b, cat in innermost(main):
        a, b = max(a, t[0]), min(b, t[-1])
        if b <= a:
            continue
        joules = float(np.interp(b, t, e) - np.interp(a, t, e))
        acc = sums.setdefault(cat, [0.0, 0.0, 0])
        acc[0] += b - a
        acc[1] += joules
        acc[2] += int((b - a) < float(meter.get("update_period_s") or 0.0))
    rows = [{"category": cat, "seconds": v[0], "joules": v[1],
             "method": _method(meter, np.inf) if not v[2] else
             f"{_method(meter, np.inf)}; {v[2]} spans shorter than the counter's update period: "
             "power x time"} for cat, v in sums.items()]
    traced_s, traced_j = sum(v[0] for v in sums.values()), sum(v[1] for v in sums.values())
    rows.append({"category": "untraced", "seconds": max(0.0, (t[-1] - t[0]) - traced_s),
                 "joules": (e[-1] - e[0]) - traced_j, "method": _method(meter, np.inf)})
    return rows


def _by_step(run, rank, attempt, t, e, meter) -> list[dict]:
    ev = run.events
    ends = ev[(ev["rank"] == rank) & (ev["attempt"] == attempt) & (ev["name"] == "step_end")]
    ends = ends.sort_values("time", kind="stable")
    rows, start = [], t[0]
    for step, end in zip(ends["step"], ends["time"], strict=True):
        a, b = max(start, t[0]), min(end, t[-1])
        seconds = max(0.0, b - a)
        joules = float(np.interp(b, t, e) - np.interp(a, t, e)) if seconds > 0 else 0.0
        rows.append({"step": int(step), "start": start, "end": end, "seconds": seconds,
                     "joules": joules, "method": _method(meter, seconds)})
        start = end
    return rows


def power(run) -> pd.DataFrame:
    """Each rank's power track: rank, attempt, time (s, start of the interval), watts: the
    mean power between two consecutive readings of its ``energy J`` counter."""
    parts = [pd.DataFrame({"rank": rank, "attempt": attempt, "time": t[:-1],
                           "watts": np.diff(e) / np.diff(t)})
             for (rank, attempt), (t, e) in curves(run).items() if len(t) > 1]
    if not parts:
        return pd.DataFrame({"rank": pd.Series(dtype=int), "attempt": pd.Series(dtype=int),
                             "time": pd.Series(dtype=float), "watts": pd.Series(dtype=float)})
    return pd.concat(parts, ignore_index=True).sort_values(
        ["rank", "attempt", "time"], kind="stable").reset_index(drop=True)


def config_energy(run) -> pd.DataFrame:
    """Joules per sample for every configuration of a sweep run (``gpuviz.workloads.parallelism``).

    For each configuration, over its measured (not warm-up) steps: the joules of all member
    ranks together per step, the samples per step (``batch``: sequences of the global batch),
    ``joules_per_sample``, the step time (the slowest rank's, median) and whether the joules
    are ``estimated``. Ranks outside a configuration wait, and are not charged to it.
    """
    from gpuviz.parallel.scaling import step_table

    st = step_table(run)
    st = st[~st["warmup"].astype(bool)]
    steps = joules(run, "step")
    steps = steps[steps["attempt"] == steps["attempt"].max()] if "attempt" in steps else steps
    st = st.merge(steps[["rank", "step", "joules", "estimated"]], on=["rank", "step"], how="left")
    extra = [k for k in ("precision",) if k in st]
    per_step = st.groupby(["config", "step"]).agg(
        strategy=("strategy", "first"), tag=("tag", "first"), ranks=("ranks", "first"),
        batch=("batch", "first"), **{k: (k, "first") for k in extra},
        step_s=("step_s", "max"), joules=("joules", "sum"),
        estimated=("estimated", "max")).reset_index()
    out = per_step.groupby("config").agg(
        strategy=("strategy", "first"), tag=("tag", "first"), ranks=("ranks", "first"),
        batch=("batch", "first"), **{k: (k, "first") for k in extra},
        steps=("step", "size"), step_s=("step_s", "median"), joules_per_step=("joules", "median"),
        estimated=("estimated", "max")).reset_index()
    out["joules_per_sample"] = out["joules_per_step"] / out["batch"]
    out["samples_per_s"] = out["batch"] / out["step_s"]
    out["watts"] = out["joules_per_step"] / out["step_s"]
    return out


def pareto_front(df: pd.DataFrame, x: str = "step_s", y: str = "joules_per_sample") -> pd.Series:
    """True for the rows no other row beats on both ``x`` and ``y`` (lower is better).

    >>> pareto_front(pd.DataFrame({"step_s": [1, 2, 3], "joules_per_sample": [3, 1, 2]})).tolist()
    [True, True, False]
    """
    for col in (x, y):
        if col not in df:
            raise ValueError(f"{'x' if col == x else 'y'}={col!r} is not a column; "
                             f"columns: {', '.join(map(str, df.columns))}")
    xs, ys = df[x].to_numpy(float), df[y].to_numpy(float)
    front = [not np.any((xs <= xs[i]) & (ys <= ys[i]) & ((xs < xs[i]) | (ys < ys[i])))
             for i in range(len(df))]
    return pd.Series(front, index=df.index, name="pareto")
