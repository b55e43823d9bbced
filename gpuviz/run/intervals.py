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


def split_waits(spans: pd.DataFrame) -> pd.DataFrame:
    """Split each automatically recorded blocking collective (``args`` ``auto`` and
    ``collective``) into the wait for the last rank of its group to arrive (``wait for
    others``, idle) and the transfer after it (comm). The ranks' clocks are aligned, so the
    last arrival is the latest start among the spans with the same group and sequence number.
    """
    auto = [bool(a.get("auto") and a.get("collective")) for a in spans["args"]]
    if not any(auto):
        return spans
    c = spans[auto]
    key = pd.Series([f"{a.get('group')}/{a.get('seq')}" for a in c["args"]], index=c.index)
    last = c["start"].groupby([c["attempt"], key]).transform("max")
    late = c[(last > c["start"]) & (last < c["end"])]
    if late.empty:
        return spans
    waits = late.copy()
    waits["name"], waits["cat"], waits["bytes"] = "wait for others", "idle", pd.NA
    waits["end"] = last[late.index]
    waits["dur"] = waits["end"] - waits["start"]
    out = spans.copy()
    out.loc[late.index, "start"] = last[late.index]
    out.loc[late.index, "dur"] = out.loc[late.index, "end"] - out.loc[late.index, "start"]
    out = pd.concat([out, waits])
    return out.sort_values(["rank", "start"], kind="stable").reset_index(drop=True)
