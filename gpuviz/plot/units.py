"""Numbers as figures print them: bytes and durations, three significant digits; a run
as a title names it.

>>> binary_bytes(857092), duration(0.00519), duration(2.5e-6)
('837 KiB', '5.19 ms', '2.5 µs')
"""

from __future__ import annotations

import math


def binary_bytes(n) -> str:
    """Bytes in binary units (837 KiB, 3 GiB); '—' when there are none."""
    try:
        n = float(n)
    except (TypeError, ValueError):  # None, pandas.NA
        return "—"
    if math.isnan(n):
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1000 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return str(n)


def duration(seconds: float) -> str:
    """A duration in µs, ms or s (5.19 ms, 2.5 s); '—' for NaN."""
    if math.isnan(seconds):
        return "—"
    if seconds < 0.9995e-3:
        return f"{seconds * 1e6:.3g} µs"
    if seconds < 0.9995:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s" if seconds < 999.5 else f"{seconds:,.0f} s"


def check_df(df, name: str, cols: list[str], source: str) -> None:
    """A ValueError unless ``df`` is a non-empty DataFrame with ``cols`` (made by ``source``)."""
    import pandas as pd

    if not isinstance(df, pd.DataFrame) or df.empty:
        raise ValueError(f"{name}: give a non-empty DataFrame ({source})")
    if missing := [c for c in cols if c not in df]:
        raise ValueError(f"{name}: missing columns {missing}; pass {source}(...)")


def run_label(run) -> str:
    """What a run was, for a figure's title: its workload, ranks and backend (or, for
    imported traces, its GPUs), not its folder's time-stamped name.

    >>> from types import SimpleNamespace as NS
    >>> run_label(NS(meta={"target": "gpuviz.workloads.mlp:train", "world_size": 4,
    ...                    "backend": "gloo"}, path=None))
    'mlp:train on 4 ranks (gloo)'
    >>> run_label(NS(meta={"target": "/home/me/train.py", "world_size": 2}, path=None))
    'train.py on 2 ranks'
    """
    m = run.meta or {}
    world = m.get("world_size")
    ranks = f"{world} ranks" if world else "its ranks"
    if m.get("source") == "pytorch-profiler":
        return f"{ranks} of {m.get('gpu') or 'GPUs'} (PyTorch profiler traces)"
    target = str(m.get("target") or "")
    if target.endswith(".py"):
        name = target.replace("\\", "/").rsplit("/", 1)[-1]
    elif ":" in target:
        module, func = target.rsplit(":", 1)
        name = f"{module.rsplit('.', 1)[-1]}:{func}"
    else:
        name = target or (run.path.name if getattr(run, "path", None) else "a run")
    backend = f" ({m['backend']})" if m.get("backend") else ""
    return f"{name} on {ranks}{backend}"
