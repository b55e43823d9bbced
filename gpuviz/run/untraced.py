"""Where a rank's untraced time is: gpuviz's start, the workload's set-up, the gaps.

``run.summary()["untraced"]`` is the time of a rank's main thread that no span covers. It
is not lost: it is measured here by where it falls. From time 0 (the clocks aligned) to the
``tracer started`` event is gpuviz's own start on that rank (its hooks: the energy meter,
the injector); from there to the first span is the workload's set-up (building its data,
model and optimizer); a gap between two spans is the code that ran between them, named by
the spans on either side (:func:`gaps_by_neighbours`).

>>> import pandas as pd
>>> spans = pd.DataFrame({"rank": [0, 0, 0], "lane": "main", "step": [0, 0, 1],
...                       "name": ["forward", "backward", "forward"],
...                       "start": [0.5, 0.7, 1.0], "end": [0.6, 0.9, 1.1]})
>>> events = pd.DataFrame({"rank": [0], "name": ["tracer started"], "time": [0.1]})
>>> untraced_parts(spans, events)[["rank", "start_up", "set_up", "between", "untraced"]].round(3).to_dict("records")
[{'rank': 0, 'start_up': 0.1, 'set_up': 0.4, 'between': 0.2, 'untraced': 0.7}]
>>> gaps_by_neighbours(spans).round(3).to_dict("records")
[{'rank': 0, 'after': 'backward', 'before': 'forward', 'seconds': 0.1, 'count': 1}, {'rank': 0, 'after': 'forward', 'before': 'backward', 'seconds': 0.1, 'count': 1}]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gpuviz.run.intervals import union


def _main(spans: pd.DataFrame) -> pd.DataFrame:
    return spans[spans["lane"] == "main"]


def untraced_parts(spans: pd.DataFrame, events: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per rank: ``start_up`` (0 to ``tracer started``: gpuviz's hooks), ``set_up`` (from
    there to the first span), ``between`` (gaps between spans), ``untraced`` (their sum) and
    ``wall`` (0 to the end of its last span). Without ``events`` all before the first span
    is ``set_up``."""
    started = {}
    if events is not None and len(events):
        e = events[events["name"] == "tracer started"]
        started = e.groupby("rank")["time"].min().to_dict()
    rows = []
    for rank, s in _main(spans).groupby("rank"):
        cover = union(s[["start", "end"]].to_numpy(dtype=float))
        wall = float(s["end"].max() - min(0.0, s["start"].min()))
        first = max(0.0, float(cover[0, 0])) if len(cover) else 0.0
        covered = float(np.sum(cover[:, 1] - cover[:, 0])) if len(cover) else 0.0
        between = max(0.0, wall - first - covered)
        start_up = min(first, max(0.0, float(started.get(rank, 0.0))))
        rows.append({"rank": rank, "start_up": start_up, "set_up": first - start_up,
                     "between": between, "untraced": first + between, "wall": wall})
    return pd.DataFrame(rows, columns=["rank", "start_up", "set_up", "between", "untraced", "wall"])


def gaps_by_neighbours(spans: pd.DataFrame) -> pd.DataFrame:
    """The gaps between consecutive top-level spans, summed by the names on either side
    (``after`` one span, ``before`` the next), largest first within each rank."""
    out = []
    for rank, s in _main(spans).groupby("rank"):
        s = s.sort_values("start")
        reach = s["end"].cummax().shift()          # a nested span starts inside its parent
        top = s[~(s["start"] < reach)]             # spans that start after all before them end
        prev_end = top["end"].shift()
        gap = (top["start"] - prev_end).clip(lower=0)
        g = pd.DataFrame({"after": top["name"].shift(), "before": top["name"], "seconds": gap})
        g = g[g["seconds"] > 0]
        agg = g.groupby(["after", "before"])["seconds"].agg(["sum", "count"]).reset_index()
        out.append(agg.rename(columns={"sum": "seconds"}).assign(rank=rank))
    if not out:
        return pd.DataFrame(columns=["rank", "after", "before", "seconds", "count"])
    t = pd.concat(out, ignore_index=True)[["rank", "after", "before", "seconds", "count"]]
    return t.sort_values(["rank", "seconds"], ascending=[True, False]).reset_index(drop=True)
