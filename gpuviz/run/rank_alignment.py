"""An imported job's ranks matched to each other: their collectives numbered per process
group, their clocks put on one, and when the last rank arrived at each collective.

Works on :class:`gpuviz.run.imported._Rank` objects (``t`` the file's :class:`RankTrace`,
``comm`` its NCCL kernels' messages by index, ``offset`` its clock shift in microseconds).

>>> number_collectives([], []); last_arrivals([])
{}
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np


def number_collectives(ranks: list, problems: list[str]) -> None:
    """Number each rank's collectives per group in GPU order; where the ranks disagree on the
    sequence of collectives the numbers are dropped (no waits are split there)."""
    seqs: dict[str, dict[int, list[tuple[str, int]]]] = defaultdict(dict)
    for r in ranks:
        order = sorted((r.t.gpu.ts[i], i) for i in r.comm)
        per: dict[str, list] = defaultdict(list)
        for _, i in order:
            c = r.comm[i]
            c["seq"] = len(per[c["group"]])
            c["collective_seq"] = c["seq"]
            per[c["group"]].append((c["collective"], i))
        for grp, lst in per.items():
            seqs[grp][r.rank] = lst
    for grp, by_rank in seqs.items():
        kinds = {rk: [c for c, _ in lst] for rk, lst in by_rank.items()}
        if len({tuple(v) for v in kinds.values()}) > 1:
            problems.append(f"process group {grp}: the ranks' traces hold different sequences of "
                            "collectives (different steps profiled?); the wait inside each "
                            "collective is not split from its transfer")
            for rk, lst in by_rank.items():
                r = next(x for x in ranks if x.rank == rk)
                for _, i in lst:
                    r.comm[i].pop("seq", None)


def last_arrivals(ranks: list) -> dict:
    """(kernel name, group, sequence number) -> when the last rank started that collective,
    on the job's clock (as :func:`gpuviz.run.intervals.split_waits` finds it in gpuviz's runs)."""
    last: dict = {}
    for r in ranks:
        g = r.t.gpu
        for i, c in r.comm.items():
            if "seq" in c:
                key = (g.names[g.name[i]], c["group"], c["seq"])
                last[key] = max(last.get(key, -math.inf), g.ts[i] + r.offset)
    return last


def node_of(r) -> int | None:
    n = len(r.t.devices)
    return r.rank // n if n else None


def align(ranks: list, problems: list[str]) -> tuple[str, float | None]:
    """Put every rank on one clock: ranks of a node share theirs; other nodes are shifted so
    that their collectives end when the first node's do. Returns (clock, error in us)."""
    nodes = {node_of(r) for r in ranks}
    if None in nodes:
        if len(ranks) > 1:
            problems.append("the traces do not say how many GPUs a node has (no deviceProperties); "
                            "their clocks are taken as one (as on one node)")
        return "as recorded (node layout unknown)", None
    if len(nodes) == 1:
        return "shared (one node)", 0.0
    ref = [r for r in ranks if node_of(r) == min(nodes)]
    ref_end: dict = defaultdict(list)
    for r in ref:
        for key, i in r.collectives().items():
            ref_end[key].append(r.t.gpu[i][0] + r.t.gpu[i][1])
    worst = 0.0
    for node in sorted(nodes - {min(nodes)}):
        members = [r for r in ranks if node_of(r) == node]
        diffs = [np.median(ref_end[k]) - (m.t.gpu[i][0] + m.t.gpu[i][1])
                 for m in members for k, i in m.collectives().items() if k in ref_end]
        if not diffs:
            problems.append(f"node {node} (ranks {[m.rank for m in members]}) shares no collective "
                            "with the first node; its clock is left as recorded")
            continue
        shift = float(np.median(diffs))
        worst = max(worst, float(np.max(np.abs(np.asarray(diffs) - shift))))
        for m in members:
            m.offset = shift
    return "aligned on shared collectives across nodes", worst
