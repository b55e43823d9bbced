"""Numbers as figures print them: bytes and durations, three significant digits.

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
