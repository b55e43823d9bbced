"""Where each rank's time went, stacked: one bar per rank (:meth:`Run.summary`).

>>> import gpuviz
>>> run = gpuviz.launch("gpuviz.workloads.mlp:train", nproc=4)   # doctest: +SKIP
>>> gpuviz.plot.breakdown(run, normalize=True)                    # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from gpuviz.plot.spans import _LEGEND, _UNTRACED, _spans
from gpuviz.plot.units import run_label
from gpuviz.run.categories import CATEGORIES, COLORS

__all__ = ["breakdown"]


def breakdown(run, *, normalize: bool = False, title: str | None = None) -> go.Figure:
    """Seconds per rank and category (:meth:`Run.summary`), stacked, one bar per rank.

    The thick bar is each rank's main thread: its categories and ``untraced`` (time in no
    span) add up to the rank's wall time. Communication running beside it (DDP buckets on
    the comm lane, ``summary()["comm_lane"]``) is the thin hatched bar below. ``normalize=True`` shows fractions of each rank's wall time.

    >>> fig = breakdown(run)                       # doctest: +SKIP
    >>> fig = breakdown(run, normalize=True)       # doctest: +SKIP
    """
    _spans(run)
    s = run.summary()
    wall = s["wall"].to_numpy()
    main = s[list(CATEGORIES) + ["untraced"]].copy()
    beside = s["comm_lane"].to_numpy()
    scale = np.where(wall > 0, wall, 1.0) if normalize else np.ones(len(s))
    y, base, fig = np.arange(len(s), dtype=float), np.zeros(len(s)), go.Figure()

    def hover(label, v, more=None):
        more = more or [""] * len(s)
        return [f"<b>{label}</b>, rank {r}<br>{x:.6f} s = {x / w:.1%} of wall time {w:.6f} s{m}"
                for r, x, w, m in zip(s.index, v, np.where(wall > 0, wall, np.inf), more, strict=True)]

    for i, col in enumerate([*CATEGORIES, "untraced"]):
        v = main[col].to_numpy()
        if not (v > 1e-12).any():
            continue
        label = "untraced (no span)" if col == "untraced" else col
        marker = (dict(color=COLORS[col], line=dict(width=0.5, color="white")) if col in COLORS else
                  dict(color=_UNTRACED, line=dict(width=0.5, color="#aaa"),
                       pattern=dict(shape=".", fgcolor="#aaa", size=5)))
        fig.add_bar(y=y, x=v / scale, base=base / scale, orientation="h", width=0.6, name=label,
                    marker=marker, legendgroup=col, legendrank=100 + i, hoverinfo="text",
                    hovertext=hover(label, v))
        base = base + v
    if beside.any():
        fig.add_bar(y=y + 0.42, x=beside / scale, orientation="h", width=0.16, legendrank=101,
                    name="NCCL kernels (all)" if getattr(run, "imported", False) else "comm beside it (DDP)",
                    legendgroup="comm",
                    marker=dict(color=COLORS["comm"], pattern=dict(shape="/")), hoverinfo="text",
                    hovertext=hover("comm beside the main thread", beside,
                                    [f"<br>{o:.0%} of it hidden behind compute" for o in s["overlap"]]))
    if getattr(run, "imported", False):
        sub = (f"{run.meta.get('gpu') or 'GPU'}, from PyTorch profiler traces. Thick bar: each rank's "
               "GPU, first kernel to last (idle: waiting inside collectives and no kernel running)")
        sub += "; thin hatched bar: NCCL kernel time" if beside.any() else ""
    else:
        sub = "thick bar: each rank's main thread; it adds up to the rank's wall time"
        sub += "; thin hatched bar: communication running beside it, at the same time" if beside.any() else ""
    fig.update_layout(title=dict(text=title or f"Where the time goes on each rank: {run_label(run)}",
                                 subtitle=dict(text=sub)),
                      template="plotly_white", barmode="overlay", height=max(380, 160 + 36 * len(s)),
                      legend=_LEGEND, margin=dict(t=100, b=50, l=80, r=20))
    fig.update_xaxes(title="fraction of each rank's wall time" if normalize else "time (s)",
                     tickformat=".0%" if normalize else None)
    fig.update_yaxes(tickvals=list(y), ticktext=[f"rank {r}" for r in s.index], showgrid=False,
                     zeroline=False, range=[len(s) - 0.3, -0.5])
    return fig
