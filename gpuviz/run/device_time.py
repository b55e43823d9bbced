"""Where a GPU's time went, from the kernels on its streams (imported profiler traces).

A GPU runs kernels on several streams at once, so its time is split by what runs at each
instant, in this order: a compute kernel (``compute``, ``optimizer``, ``data``), else an
NCCL kernel moving data (``comm``), else an NCCL kernel still waiting for the other ranks
(``idle``), else nothing at all (also ``idle``: a gap on every stream, which is
``idle_gaps``). This is the split Holistic Trace Analysis calls the temporal breakdown,
with the wait inside collectives told apart. A rank profiled without a GPU is split by its
CPU main thread's top-level ops instead, the time between them ``untraced``.

>>> import numpy as np
>>> covered_lengths({"compute": np.array([[0.0, 2.0]]), "comm": np.array([[1.0, 3.0]])},
...                 ["compute", "comm"])
{'compute': 2.0, 'comm': 1.0}
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gpuviz.run.categories import CATEGORIES
from gpuviz.run.intervals import intersect, length, union

GPU_LANE = "GPU stream"
CPU_MAIN = "CPU main thread"
#: What wins an instant when several streams are busy: the first in this list.
PRIORITY = ("compute", "optimizer", "data", "io", "comm", "idle")


def is_gpu_lane(lanes: pd.Series) -> pd.Series:
    return lanes.astype(str).str.startswith(GPU_LANE)


def covered_lengths(by_cat: dict[str, np.ndarray], order) -> dict[str, float]:
    """Seconds each category holds when earlier categories win overlapping instants."""
    covered, out = np.zeros((0, 2)), {}
    for cat in order:
        iv = by_cat.get(cat)
        if iv is None or not len(iv):
            out[cat] = 0.0
            continue
        both = union(np.vstack([covered, iv]))
        out[cat] = length(both) - length(covered)
        covered = both
    return out


def gpu_summary(run) -> pd.DataFrame:
    """Per rank: seconds of GPU time in each category, the gaps with no kernel, wall time
    (first kernel to last), NCCL kernel time (``comm_lane``) and the fraction of it that ran
    beside a compute kernel (``overlap``). Categories and ``idle`` add up to ``wall``."""
    sp = run.spans
    if not sp["rank"].is_monotonic_increasing:
        sp = sp.sort_values("rank", kind="stable")
    ranks = sp["rank"].to_numpy()
    rows = []
    for rank in run.ranks:   # a rank's rows at a time (views): never a copy of every span
        s = sp.iloc[np.searchsorted(ranks, rank, "left"):np.searchsorted(ranks, rank, "right")]
        gpu = is_gpu_lane(s["lane"]).to_numpy()
        iv = (s["start"].to_numpy(float), s["end"].to_numpy(float))
        at = np.flatnonzero(gpu)
        if not len(at):   # a CPU-only profile: the main thread's top-level ops; gaps untraced
            rows.append(_cpu_row(rank, *_by_cat(np.flatnonzero((s["lane"] == CPU_MAIN).to_numpy()), s["cat"], iv)))
            continue
        row = {"rank": rank, **{c: 0.0 for c in CATEGORIES}, "untraced": 0.0, "wall": 0.0,
               "comm_lane": 0.0, "overlap": 0.0, "idle_gaps": 0.0}
        by, wall = _by_cat(at, s["cat"], iv)
        got = covered_lengths(by, PRIORITY)
        busy = sum(got.values())
        row.update({c: got.get(c, 0.0) for c in CATEGORIES})
        row["idle_gaps"] = max(0.0, wall - busy)
        row["idle"] += row["idle_gaps"]
        row["wall"] = wall
        nccl = union(np.vstack([by.get("comm", np.zeros((0, 2))), by.get("idle", np.zeros((0, 2)))]))
        work = union(np.vstack([by.get(c, np.zeros((0, 2))) for c in ("compute", "optimizer", "data")]))
        row["comm_lane"] = length(nccl)
        row["overlap"] = length(intersect(nccl, work)) / row["comm_lane"] if row["comm_lane"] else 0.0
        rows.append(row)
    cols = ["rank", *CATEGORIES, "untraced", "wall", "comm_lane", "overlap", "idle_gaps"]
    return pd.DataFrame(rows, columns=cols).set_index("rank")


def _by_cat(at: np.ndarray, cats: pd.Series, iv: tuple) -> tuple[dict, float]:
    """The union of the spans ``at`` per category, and their wall time (first start to last end)."""
    if not len(at):
        return {}, 0.0
    mine = cats.iloc[at].to_numpy(dtype=object)
    start, end = iv[0][at], iv[1][at]
    by = {c: union(np.column_stack([start[mine == c], end[mine == c]])) for c in sorted(set(mine.tolist()))}
    return by, float(end.max() - start.min())


def _cpu_row(rank, by: dict, wall: float) -> dict:
    row = {"rank": rank, **{c: 0.0 for c in CATEGORIES}, "untraced": 0.0, "wall": wall,
           "comm_lane": 0.0, "overlap": 0.0, "idle_gaps": 0.0}
    got = covered_lengths(by, PRIORITY)
    row.update({c: got.get(c, 0.0) for c in CATEGORIES})
    row["untraced"] = max(0.0, wall - sum(got.values()))
    return row


def describe(run) -> str:
    """Where an imported GPU job's time went, in sentences computed from its summary.

    >>> print(describe(gpuviz.run.recorded.load_real("dlrm-8xV100")))   # doctest: +SKIP
    """
    s = gpu_summary(run)
    s = s[s["wall"] > 0]
    if s.empty:
        return "No rank of this run has GPU kernels."
    f = s[["compute", "optimizer", "data", "comm", "idle", "idle_gaps"]].div(s["wall"], axis=0)
    work = f["compute"] + f["optimizer"] + f["data"]
    waiting = f["idle"] - f["idle_gaps"]
    rec = (run.meta.get("recorded") or {}).get("what") or f"{len(s)} ranks"
    busiest, idlest = work.idxmax(), work.idxmin()
    lines = [f"{rec}. Each GPU's time from its first kernel to its last "
             f"({s['wall'].min() * 1e3:.1f} to {s['wall'].max() * 1e3:.1f} ms).",
             f"Computing (compute, optimizer and data kernels): {work.min():.0%} to {work.max():.0%} "
             f"of it (most on rank {busiest}, least on rank {idlest}).",
             f"Moving data in NCCL kernels, with no compute beside them: {f['comm'].min():.0%} to "
             f"{f['comm'].max():.0%}.",
             f"Inside an NCCL kernel, waiting for the last rank to arrive: {waiting.min():.0%} to "
             f"{waiting.max():.0%}.",
             f"No kernel at all (the GPU waiting for its CPU, or for data): {f['idle_gaps'].min():.0%} to "
             f"{f['idle_gaps'].max():.0%}."]
    top = "computing" if work.mean() >= max(f["comm"].mean(), waiting.mean(), f["idle_gaps"].mean()) else (
        "waiting for the other ranks" if waiting.mean() >= f["idle_gaps"].mean() and waiting.mean() >= f["comm"].mean()
        else "idle with no kernel" if f["idle_gaps"].mean() >= f["comm"].mean() else "moving data")
    lines.append(f"On average over ranks these GPUs spent the most time {top}.")
    return "\n".join(lines)
