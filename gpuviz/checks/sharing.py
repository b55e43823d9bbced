"""Checks for Lab 02, sharing: the bytes of a ring all-reduce, the best gradient bucket.

>>> from gpuviz import checks    # every check, by name
"""

from __future__ import annotations

import math
from collections.abc import Callable

from gpuviz.checks.core import Result, _close, _number, _value


def ring_allreduce_bytes(answer: float | Callable, nbytes: float, world: int, rtol: float = 1e-6) -> Result:
    """Check the bytes each rank sends in a ring all-reduce of ``nbytes`` over ``world`` ranks.

    ``answer`` is a number or a function ``f(nbytes, world)``. The ring (Thakur,
    Rabenseifner & Gropp 2005) sends (p-1)/p of the data in its reduce-scatter and again
    in its all-gather.
    """
    got = _value(answer, nbytes, world)
    if (bad := _number(got, "number of bytes")) is not None:
        return bad
    want = 2 * (world - 1) / world * nbytes
    if _close(got, want, rtol):
        return Result(True, f"Each rank sends 2(p-1)/p x {nbytes:.4g} = {want:.4g} bytes in a ring all-reduce.")
    if _close(got, (world - 1) / world * nbytes, rtol):
        return Result(False, "That is one phase. A ring all-reduce is a reduce-scatter *then* an all-gather.")
    if _close(got, 2 * nbytes, rtol) or _close(got, 2 * (world - 1) * nbytes, rtol):
        return Result(False, "Each step moves one chunk of nbytes / p, not the whole buffer; "
                             "there are 2(p-1) steps.")
    return Result(False, f"You gave {float(got):.4g}. Split the buffer into p chunks; count the chunks "
                         "each rank sends in p-1 reduce-scatter steps and p-1 all-gather steps.")


def best_bucket_size(answer: float | Callable, sweep, tolerance: float = 0.25) -> Result:
    """Check a predicted best DDP bucket size (MB) against a measured sweep.

    ``sweep`` is :func:`gpuviz.sharing.bucketing.bucket_sweep`'s table; ``answer`` a number of MB
    or a function ``f(sweep)``. It is judged on **exposed communication** (``exposed_ms``,
    the all-reduce time a step waits for after its last gradient), the time bucketing is
    meant to hide: the answer, taken to the nearest measured size, is right when its
    exposed time is within ``tolerance`` (a fraction) of the best measured, since noise
    makes neighbours near-equal.

    >>> import pandas as pd
    >>> sweep = pd.DataFrame({"bucket_mb": [0.1, 1, 10, 100], "n_buckets": [152, 38, 4, 1],
    ...                       "exposed_ms": [700.0, 175.0, 45.0, 120.0]})
    >>> best_bucket_size(10, sweep).ok, best_bucket_size(0.1, sweep).ok
    (True, False)
    """
    got = _value(answer, sweep)
    if (bad := _number(got, "best bucket size in MB")) is not None:
        return bad
    got = float(got)
    if not math.isfinite(got) or got <= 0:
        return Result(False, f"A bucket size is a positive number of MB (DDP's bucket_cap_mb); you gave {got:g}.")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance >= 0:
        raise ValueError(f"tolerance={tolerance!r}: give a fraction >= 0, e.g. 0.25")
    need = {"bucket_mb", "n_buckets", "exposed_ms"}
    if not hasattr(sweep, "columns") or not need <= set(sweep.columns) or len(sweep) == 0:
        raise ValueError("sweep: give the table of gpuviz.sharing.bucketing.bucket_sweep(run), with columns "
                         f"{sorted(need)}")
    rows = sweep.sort_values("bucket_mb").reset_index(drop=True)
    sizes = rows["bucket_mb"].astype(float)
    near = rows.loc[(sizes.map(math.log) - math.log(got)).abs().idxmin()]
    best = rows.loc[rows["exposed_ms"].astype(float).idxmin()]
    limit = float(best["exposed_ms"]) * (1 + tolerance)
    fine = [f"{s:g}" for s, e in zip(sizes, rows["exposed_ms"], strict=True) if e <= limit]
    def describe(r) -> str:
        n = int(r["n_buckets"])
        return (f"{r['bucket_mb']:g} MB ({n} bucket{'' if n == 1 else 's'}): "
                f"{float(r['exposed_ms']):.1f} ms of exposed communication")

    which = "" if math.isclose(got, near["bucket_mb"]) else f"your {got:g} MB is nearest to "
    at = which + describe(near)
    if near["bucket_mb"] != best["bucket_mb"]:
        at += f"; the best measured is {describe(best)}"
    else:
        at += ", the lowest measured"
    if near["exposed_ms"] <= limit:
        return Result(True, f"{at[0].upper()}{at[1:]}. Within {tolerance:.0%} of the best: "
                            f"{', '.join(fine)} MB.")
    if near["bucket_mb"] < best["bucket_mb"]:
        return Result(False, f"Too small: {at}. Each bucket's all-reduce pays the latency alpha, so "
                             f"{int(near['n_buckets'])} buckets pay it {int(near['n_buckets'])} times "
                             "(n_buckets x alpha); fewer, bigger buckets pay it less often.")
    hidden = (f" Here {float(near['overlap']):.0%} of the communication was hidden."
              if "overlap" in rows else "")
    return Result(False, f"Too large: {at}. A bucket's all-reduce starts only when all its gradients "
                         "are ready, so big buckets start late: with one bucket, at the end of backward, "
                         f"and none of it overlaps with backward.{hidden}")
