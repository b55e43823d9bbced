"""Bus bandwidth on real GPUs beside yours: NCCL collectives in imported profiler traces,
and published nccl-tests results.

>>> pub = published_busbw()
>>> sorted(pub["system"].unique())[0]
'1 node, 8 x A100 (NVLink 3)'
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_AWS = ("aws-samples/awsome-distributed-training @ 7217859, micro-benchmarks/nccl-tests/README.md "
        "(nccl-tests all_reduce_perf, out of place)")
_STAS = "stas00/ml-engineering @ 744d01e, network/README.md (nccl-tests all_reduce_perf)"

#: Published nccl-tests all_reduce results: (system, GPUs, message bytes, busbw GB/s, source).
PUBLISHED_NCCL_TESTS = (
    ("2 x p4de.24xlarge (16 x A100)", 16, 1 << 20, 6.35, _AWS),
    ("2 x p4de.24xlarge (16 x A100)", 16, 64 << 20, 47.6, _AWS),
    ("2 x p4de.24xlarge (16 x A100)", 16, 1 << 30, 76.8, _AWS),
    ("2 x p4de.24xlarge (16 x A100)", 16, 2 << 30, 78.3, _AWS),
    ("2 x p5.48xlarge (16 x H100)", 16, 1 << 20, 15.95, _AWS),
    ("2 x p5.48xlarge (16 x H100)", 16, 64 << 20, 209.0, _AWS),
    ("2 x p5.48xlarge (16 x H100)", 16, 1 << 30, 437.0, _AWS),
    ("2 x p5.48xlarge (16 x H100)", 16, 16 << 30, 487.0, _AWS),
    ("1 node, 8 x A100 (NVLink 3)", 8, 1 << 20, 18.0, _STAS),
    ("1 node, 8 x A100 (NVLink 3)", 8, 64 << 20, 171.5, _STAS),
    ("1 node, 8 x A100 (NVLink 3)", 8, 1 << 30, 229.0, _STAS),
    ("1 node, 8 x A100 (NVLink 3)", 8, 8 << 30, 234.6, _STAS),
)


def published_busbw() -> pd.DataFrame:
    """Published nccl-tests all_reduce busbw (bytes/s) by system and message size, with sources."""
    df = pd.DataFrame(PUBLISHED_NCCL_TESTS, columns=["system", "world", "bytes", "busbw_GBs", "source"])
    df["busbw"] = df.pop("busbw_GBs") * 1e9
    df["op"] = "all_reduce"
    return df


def traced_busbw(runs: dict) -> pd.DataFrame:
    """Every NCCL collective with bytes in imported GPU runs (``{label: Run}``): op, world,
    bytes, busbw (bytes/s) and the time after the last rank arrived."""
    parts = []
    for label, run in runs.items():
        if not getattr(run, "imported", False):
            raise ValueError(f"runs[{label!r}]: not an imported GPU trace (gpuviz.load_run of "
                             "PyTorch profiler traces)")
        parts.append(run.comm().assign(system=label, gpu=run.meta.get("gpu") or "GPU model not recorded"))
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return out.rename(columns={"collective": "op"})


def compare(mine: pd.DataFrame, traced: pd.DataFrame, published: pd.DataFrame,
            op: str = "all_reduce") -> str:
    """Sentences that set your largest ``op`` beside the real GPUs', computed from the tables."""
    m = mine[mine["op"] == op]
    if m.empty:
        raise ValueError(f"op={op!r}: mine has no such collective")
    best = m.loc[m["bytes"].idxmax()]
    lines = [f"Your largest {op} ({_size(best['bytes'])}, {int(best['world'])} ranks) reached "
             f"{best['busbw'] / 1e9:.3g} GB/s of bus bandwidth."]
    for system, d in published.groupby("system", sort=True):
        near = d.iloc[(np.log2(d["bytes"].astype(float)) - np.log2(float(best["bytes"]))).abs().argmin()]
        lines.append(f"Published nccl-tests, {system}: {near['busbw'] / 1e9:.4g} GB/s at "
                     f"{_size(near['bytes'])}, {near['busbw'] / best['busbw']:,.0f} times yours.")
    t = traced[traced["op"] == op]
    if len(t):
        top = t.loc[t["busbw"].idxmax()]
        lines.append(f"The fastest {op} NCCL kernel in the traces: {top['busbw'] / 1e9:.3g} GB/s "
                     f"({top['system']}, {_size(top['bytes'])}); their median: "
                     f"{t['busbw'].median() / 1e9:.3g} GB/s at a median size of {_size(t['bytes'].median())}.")
    return "\n".join(lines)


def _size(n) -> str:
    n = float(n)
    for unit, k in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= k:
            return f"{n / k:.3g} {unit}"
    return f"{n:.0f} B"
