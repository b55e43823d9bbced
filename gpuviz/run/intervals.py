"""Time intervals of one lane: the innermost span at each instant, unions, overlaps.

>>> import numpy as np
>>> length(union(np.array([[0.0, 2.0], [1.0, 3.0], [5.0, 6.0]])))
4.0
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def innermost(main: pd.DataFrame) -> list[tuple[float, float, str]]:
    """Split a lane's time into pieces, each labelled with the innermost span's category."""
    if main.empty:
        return []
    start, end = main["start"].to_numpy(float), main["end"].to_numpy(float)
    cats = main["cat"].to_numpy()
    out: list[tuple[float, float, str]] = []
    stack: list[int] = []
    cursor = -np.inf

    def emit(until: float) -> None:
        nonlocal cursor
        if stack and until > cursor:
            out.append((cursor, until, cats[stack[-1]]))
        cursor = max(cursor, until)

    for i in np.lexsort((-end, start)):
        while stack and end[stack[-1]] <= start[i]:
            emit(end[stack[-1]])
            stack.pop()
        emit(start[i])
        cursor = start[i]
        stack.append(i)
    while stack:
        emit(end[stack[-1]])
        stack.pop()
    return out


def union(iv: np.ndarray) -> np.ndarray:
    if len(iv) == 0:
        return np.zeros((0, 2))
    iv = iv[np.argsort(iv[:, 0])]
    out = [list(iv[0])]
    for s, e in iv[1:]:
        if s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return np.asarray(out, dtype=float)


def intersect(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        s, e = max(a[i, 0], b[j, 0]), min(a[i, 1], b[j, 1])
        if s < e:
            out.append((s, e))
        if a[i, 1] < b[j, 1]:
            i += 1
        else:
            j += 1
    return np.asarray(out, dtype=float).reshape(-1, 2)


def length(iv: np.ndarray) -> float:
    return float((iv[:, 1] - iv[:, 0]).sum()) if len(iv) else 0.0


def split_waits(spans: pd.DataFrame, consume: bool = False) -> pd.DataFrame:
    """Split each automatically recorded blocking collective (``args`` ``auto`` and
    ``collective``) into the wait for the last rank of its group to arrive (``wait for
    others``, idle) and the transfer after it (comm). The ranks' clocks are aligned, so the
    last arrival is the latest start among the spans with the same group and sequence number.
    The result is sorted by rank and start, built a column at a time (a run's spans can be
    millions of rows); ``consume=True`` also drops each column of ``spans`` once it is copied,
    so that the two never coexist whole (for a caller that is done with ``spans``).
    """
    auto = np.fromiter((bool(a.get("auto") and a.get("collective")) for a in spans["args"]),
                       dtype=bool, count=len(spans))
    if not auto.any():
        return spans
    c = spans[auto]
    last = _last_arrival(c)
    late = c[(last > c["start"]) & (last < c["end"])]
    if late.empty:
        return spans
    waits = late.copy()
    waits["name"], waits["cat"], waits["bytes"] = "wait for others", "idle", pd.NA
    waits["end"] = last[late.index]
    waits["dur"] = waits["end"] - waits["start"]
    # the transfers start when the last rank arrives
    at = spans.index.get_indexer(late.index)
    start = spans["start"].to_numpy(dtype=float, copy=True)
    start[at] = last[late.index].to_numpy(dtype=float)
    dur = spans["end"].to_numpy(dtype=float) - start
    moved = {"start": start, "dur": np.where(np.isin(np.arange(len(spans)), at), dur,
                                             spans["dur"].to_numpy(dtype=float))}
    order = np.lexsort((np.concatenate([start, waits["start"].to_numpy(dtype=float)]),
                        np.concatenate([spans["rank"].to_numpy(), waits["rank"].to_numpy()])))
    cols = {}
    for col in spans.columns:
        mine = pd.Series(moved[col]) if col in moved else spans[col].reset_index(drop=True)
        both = pd.concat([mine, waits[col].reset_index(drop=True)], ignore_index=True)
        cols[col] = both.take(order).reset_index(drop=True)
        del mine, both
        if consume:
            del spans[col]
    return pd.DataFrame(cols, copy=False)


def _last_arrival(c: pd.DataFrame) -> pd.Series:
    """The latest start among the ranks' spans of the same call (name, group, sequence)."""
    key = pd.Series([f"{n}/{a.get('group')}/{a.get('seq')}" for n, a in zip(c["name"], c["args"], strict=True)],
                    index=c.index)
    return c["start"].groupby([c["attempt"], key]).transform("max")


def split_exposed_backward(spans: pd.DataFrame) -> pd.DataFrame:
    """Split an automatically recorded ``backward`` of a DDP model where its last gradient
    bucket was launched: the gradients are all computed then, and what remains of the call is
    DDP waiting for its all-reduces. That remainder is the wait for the last rank to launch
    the same bucket (``wait for others``, idle) and then the transfer still to finish
    (``all-reduce (exposed)``, comm; its bytes are on the bucket spans of the comm lane).
    Run this before :func:`split_waits`, on the buckets' own launch times.
    """
    args = spans["args"]
    auto = np.array([bool(a.get("auto")) for a in args], dtype=bool)
    backward = spans[auto & (spans["lane"] == "main").to_numpy() & (spans["name"] == "backward").to_numpy()]
    buckets = spans[auto & (spans["lane"] == "comm").to_numpy()
                    & spans["name"].astype(str).str.startswith("all_reduce bucket").to_numpy()]
    if backward.empty or buckets.empty:
        return spans
    last = _last_arrival(buckets)
    out, extra = spans.copy(), []
    for (rank, attempt), mine in buckets.groupby(["rank", "attempt"]):
        starts = mine["start"].to_numpy()
        for i, b in backward[(backward["rank"] == rank) & (backward["attempt"] == attempt)].iterrows():
            inside = (starts >= b["start"]) & (starts <= b["end"])
            if not inside.any():
                continue
            j = mine.index[inside][np.argmax(starts[inside])]
            ready = mine.at[j, "start"]
            arrive = min(max(last[j], ready), b["end"])
            if b["end"] <= ready:
                continue
            for name, cat, a, z in (("wait for others", "idle", ready, arrive),
                                    ("all-reduce (exposed)", "comm", arrive, b["end"])):
                if z > a:
                    row = b.copy()
                    row["name"], row["cat"], row["start"], row["end"] = name, cat, a, z
                    row["dur"], row["bytes"] = z - a, pd.NA
                    extra.append(row)
            out.at[i, "end"], out.at[i, "dur"] = ready, ready - b["start"]
    if not extra:
        return out
    out = pd.concat([out, pd.DataFrame(extra)])
    return out.sort_values(["rank", "start"], kind="stable").reset_index(drop=True)


def sort_spans(spans: pd.DataFrame) -> pd.DataFrame:
    """``spans`` by rank, then start (stable); as they are when already in that order (an
    imported trace's are: no copy of a run's spans for nothing)."""
    r, st = spans["rank"].to_numpy(), spans["start"].to_numpy()
    if np.all((r[1:] > r[:-1]) | ((r[1:] == r[:-1]) & (st[1:] >= st[:-1]))):
        return spans
    return spans.sort_values(["rank", "start"], kind="stable").reset_index(drop=True)


def split_automatic(spans: pd.DataFrame, consume: bool = False) -> pd.DataFrame:
    """Both splits of an automatically recorded run (:mod:`gpuviz.run.auto`), in order
    (``consume``: see :func:`split_waits`)."""
    return split_waits(split_exposed_backward(spans), consume)
