"""Where a GPU's time went, from the kernels on its streams (imported profiler traces).

A GPU runs kernels on several streams at once, so its time is split by what runs at each
instant, in this order: a compute kernel (``compute``, ``optimizer``, ``data``), else an
NCCL kernel moving data (``comm``), else an NCCL kernel still waiting for the other ranks
(``idle``), else nothing at all (also ``idle``: a gap on every stream, which is
``idle_gaps``). This is the split Holistic Trace Analysis calls the temporal breakdown,
with the wait inside collectives told apart.

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
    rows = []
    sp = run.spans[is_gpu_lane(run.spans["lane"])]
    for rank in run.ranks:
        s = sp[sp["rank"] == rank]
        row = {"rank": rank, **{c: 0.0 for c in CATEGORIES}, "untraced": 0.0, "wall": 0.0,
               "comm_lane": 0.0, "overlap": 0.0, "idle_gaps": 0.0}
        if len(s):
            by = {c: union(g[["start", "end"]].to_numpy(float)) for c, g in s.groupby("cat")}
            got = covered_lengths(by, PRIORITY)
            wall = float(s["end"].max() - s["start"].min())
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
