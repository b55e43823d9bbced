"""Analytic cost model (estimates, not measurements: every result says so).

>>> from gpuviz.model import ring_allreduce_seconds
>>> round(ring_allreduce_seconds(14e9, world=8, link_bytes_per_s=450e9), 4)
0.0544
"""

from __future__ import annotations

import pandas as pd


def ring_allreduce_seconds(nbytes: float, world: int, link_bytes_per_s: float,
                           latency_s: float = 0.0) -> float:
    """Time of a ring all-reduce: 2(p-1) steps, each sending nbytes/p over one link.

    Thakur, Rabenseifner & Gropp (2005), "Optimization of Collective Communication
    Operations in MPICH": 2(p-1) alpha + 2(p-1)/p n beta (the reduction's own compute
    left out). A lower bound when ``link_bytes_per_s`` is a link's peak speed.
    """
    if world < 1:
        raise ValueError(f"world={world}: the number of ranks must be >= 1")
    if link_bytes_per_s <= 0:
        raise ValueError(f"link_bytes_per_s={link_bytes_per_s}: must be > 0")
    if world == 1:
        return 0.0
    return 2 * (world - 1) * latency_s + 2 * (world - 1) / world * nbytes / link_bytes_per_s


def allreduce_over_links(nbytes: float, world: int, measured_busbw: float | None = None) -> pd.DataFrame:
    """Estimated all-reduce time of ``nbytes`` on ``world`` ranks over each link in
    :data:`gpuviz.hardware.LINKS`, plus your own measured bus bandwidth if given.

    busbw already includes the 2(p-1)/p factor (nccl-tests), so time = 2(p-1)/p x n / busbw.
    """
    from gpuviz.hardware import LINKS

    rows = [{"link": name, "where": v["kind"], "GB/s": v["bytes_per_s"] / 1e9,
             "seconds": ring_allreduce_seconds(nbytes, world, v["bytes_per_s"]),
             "kind of number": "estimate from peak link speed", "source": v["source"]}
            for name, v in LINKS.items()]
    if measured_busbw:
        rows.append({"link": "your processes (gloo over TCP, this machine)", "where": "this machine",
                     "GB/s": measured_busbw / 1e9,
                     "seconds": ring_allreduce_seconds(nbytes, world, measured_busbw),
                     "kind of number": "from your measured busbw", "source": "this run"})
    return pd.DataFrame(rows).sort_values("seconds").reset_index(drop=True)
