"""Figures of collective benchmarks: bandwidth vs message size, and the alpha-beta model.

Like plotly.express: the table comes first, roles are keywords, nothing is shown for you.
Measured values are solid lines with markers; fitted and modelled ones are dashed or
dotted, and the legend says "fit" or "model".

>>> import gpuviz, gpuviz.sharing.bench as bench
>>> df = bench.collectives(nproc=[2, 4])                         # doctest: +SKIP
>>> gpuviz.plot.collectives(df)                                  # doctest: +SKIP
>>> gpuviz.plot.alpha_beta(df, bench.fit_alpha_beta(df))         # doctest: +SKIP
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gpuviz.plot.units import binary_bytes
from gpuviz.sharing.bench import OPS, link_alpha_beta, ring_seconds

__all__ = ["collectives", "alpha_beta"]

#: One colour per op (Tableau 10), the same in both figures.
OP_COLORS = dict(zip(OPS, ["#4C78A8", "#F58518", "#54A24B", "#B279A2", "#E45756", "#9D755D"], strict=True))
_WORLD_COLORS = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#B279A2", "#72B7B2"]
_SYMBOLS = ["circle", "square", "diamond", "triangle-up", "x", "star"]
_Y = {"busbw": ("bus bandwidth (GB/s)", 1e-9), "algbw": ("algorithm bandwidth (GB/s)", 1e-9),
      "time": ("time (ms)", 1e3)}
_HOVER = ("<b>%{customdata[0]}</b>, %{customdata[1]} ranks<br>S = %{customdata[2]} "
          "(%{x:,} B)<br>time %{customdata[3]:.1f} µs (median; %{customdata[4]:.1f} to "
          "%{customdata[5]:.1f})<br>algbw %{customdata[6]:.4g} GB/s<br>busbw %{customdata[7]:.4g} "
          "GB/s<br>%{customdata[8]}<extra></extra>")


def _size_axis(fig: go.Figure, sizes, **where) -> None:
    """Log x axis with ticks at powers of 4 (or 2 over a short range), labelled in KiB/MiB."""
    lo, hi = math.log2(max(min(sizes), 1)), math.log2(max(sizes))
    step = 2 if hi - lo > 6 else 1
    ticks = [2.0**k for k in range(int(math.floor(lo)), int(math.ceil(hi)) + 1) if k % step == 0]
    fig.update_xaxes(type="log", tickvals=ticks, ticktext=[binary_bytes(t) for t in ticks],
                     showline=True, linecolor="#888", **where)


def _custom(d: pd.DataFrame) -> np.ndarray:
    return np.column_stack([d["op"], d["world"], [binary_bytes(b) for b in d["bytes"]],
                            d["time"] * 1e6, d["time_min"] * 1e6, d["time_max"] * 1e6,
                            d["algbw"] / 1e9, d["busbw"] / 1e9,
                            d["note"].fillna("") if "note" in d else [""] * len(d)])


def collectives(df: pd.DataFrame, y: str = "busbw", *, log_y: bool = True,
                title: str | None = None) -> go.Figure:
    """Bandwidth (or time) of each collective against message size S, one line per op.

    ``df`` is :func:`gpuviz.sharing.bench.collectives`'s table; ``y`` is ``"busbw"``, ``"algbw"`` or
    ``"time"``. One panel per world size (same y scale); error bars span the fastest to
    the slowest iteration. Hover a point for its exact numbers.

    >>> fig = collectives(df, y="algbw")                          # doctest: +SKIP
    """
    if y not in _Y:
        raise ValueError(f"y={y!r}: use one of {', '.join(map(repr, _Y))}")
    need = {"op", "bytes", "world", "time", "time_min", "time_max", "algbw", "busbw"}
    if not need <= set(df.columns):
        raise ValueError(f"df lacks column(s) {sorted(need - set(df.columns))}: give "
                         "gpuviz.sharing.bench.collectives()'s result")
    label, scale = _Y[y]
    worlds = sorted(df["world"].unique())
    fig = make_subplots(rows=1, cols=len(worlds), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[f"{w} ranks" for w in worlds])
    for i, w in enumerate(worlds):
        for op in [o for o in OPS if o in set(df["op"])]:
            d = df[(df["op"] == op) & (df["world"] == w)].sort_values("bytes")
            if d.empty:
                continue
            v = d[y].to_numpy(float)
            if y == "time":
                lo, hi = d["time_min"].to_numpy(float), d["time_max"].to_numpy(float)
            else:  # the fastest iteration gives the highest bandwidth
                lo, hi = v * d["time"] / d["time_max"], v * d["time"] / d["time_min"]
            fig.add_scatter(
                x=d["bytes"], y=v * scale, mode="lines+markers", name=op, legendgroup=op,
                showlegend=i == 0, line=dict(color=OP_COLORS[op], width=2), marker=dict(size=7),
                error_y=dict(type="data", symmetric=False, array=(hi - v) * scale,
                             arrayminus=(v - lo) * scale, thickness=1, width=2),
                customdata=_custom(d), hovertemplate=_HOVER, row=1, col=i + 1)
        _size_axis(fig, df["bytes"], title="message size S", row=1, col=i + 1)
    backend = ", ".join(str(b) for b in df.get("backend", pd.Series(dtype=str)).unique() if b)
    what = {"busbw": "Bus bandwidth", "algbw": "Algorithm bandwidth", "time": "Time"}[y]
    sub = ("busbw = S / time x the op's factor (nccl-tests): the bytes each rank's link carries "
           "per second" if y == "busbw" else "algbw = S / time" if y == "algbw" else
           "median over iterations") + "; measured (bars: fastest to slowest iteration)"
    fig.update_layout(
        title=dict(text=title or f"{what} of collectives vs message size"
                   + (f" ({backend})" if backend else ""), subtitle=dict(text=sub)),
        template="plotly_white", height=500, hovermode="closest", margin=dict(t=110),
        legend=dict(title="measured"))
    fig.update_yaxes(type="log" if log_y else "linear", showline=True, linecolor="#888",
                     tickformat="~g" if y != "time" else None)
    fig.update_yaxes(title=label, row=1, col=1)
    return fig


def alpha_beta(df: pd.DataFrame, fit: pd.DataFrame, *, ring_from: str | None = "all_reduce",
               title: str | None = None) -> go.Figure:
    """Measured time against message size, per op, beside the α-β fit and the ring formulas.

    One panel per op, one colour per world size: measured points (solid), the fitted
    line t = α + β·S (dashed, "fit"), and :func:`gpuviz.sharing.bench.ring_seconds` (dotted,
    "model") with per-step α and link β taken from the fit of ``ring_from`` on the largest
    world size, so the other ops and world sizes are predictions. ``ring_from=None``
    leaves the model out.

    >>> fig = alpha_beta(df, gpuviz.sharing.bench.fit_alpha_beta(df))     # doctest: +SKIP
    """
    ops = [o for o in OPS if o in set(df["op"])]
    worlds = sorted(df["world"].unique())
    link = None
    if ring_from is not None and ring_from in set(fit["op"]):
        link = link_alpha_beta(fit, ring_from)
        link_world = int(fit.loc[fit["op"] == ring_from, "world"].max())
    cols = min(len(ops), 3)
    rows = -(-len(ops) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=ops, shared_yaxes=True,
                        horizontal_spacing=0.04, vertical_spacing=0.14)
    grid = np.geomspace(df["bytes"].min(), df["bytes"].max(), 60)
    for k, op in enumerate(ops):
        r, c = k // cols + 1, k % cols + 1
        for i, w in enumerate(worlds):
            d = df[(df["op"] == op) & (df["world"] == w)].sort_values("bytes")
            if d.empty:
                continue
            color, first = _WORLD_COLORS[i % len(_WORLD_COLORS)], k == 0
            fig.add_scatter(x=d["bytes"], y=d["time"] * 1e3, mode="lines+markers", row=r, col=c,
                            name=f"measured, {w} ranks", legendgroup=f"m{w}", showlegend=first,
                            line=dict(color=color, width=2), marker=dict(size=7),
                            customdata=_custom(d), hovertemplate=_HOVER)
            f = fit[(fit["op"] == op) & (fit["world"] == w)]
            if len(f):
                a, b = float(f["alpha"].iloc[0]), float(f["beta"].iloc[0])
                fig.add_scatter(
                    x=grid, y=(a + b * grid) * 1e3, mode="lines", row=r, col=c,
                    name=f"α-β fit, {w} ranks", legendgroup=f"f{w}", showlegend=first,
                    line=dict(color=color, dash="dash", width=1.5),
                    hovertemplate=(f"<b>α-β fit</b>, {op}, {w} ranks<br>S = %{{x:,.0f}} B<br>"
                                   f"t = %{{y:.4g}} ms<br>α = {a * 1e6:.1f} µs, 1/β = "
                                   f"{_gbs(b)} GB/s<br>fit error: median "
                                   f"{f['err_median'].iloc[0]:.0%}, max {f['err_max'].iloc[0]:.0%}"
                                   "<extra></extra>"))
            if link is not None:
                t = ring_seconds(op, grid, int(w), *link)
                fig.add_scatter(
                    x=grid, y=t * 1e3, mode="lines", row=r, col=c,
                    name=f"ring model, {w} ranks", legendgroup=f"r{w}", showlegend=first,
                    line=dict(color=color, dash="dot", width=2),
                    hovertemplate=(f"<b>ring model</b>, {op}, {w} ranks<br>S = %{{x:,.0f}} B<br>"
                                   f"t = %{{y:.4g}} ms<br>per step α = {link[0] * 1e6:.1f} µs, "
                                   f"link 1/β = {_gbs(link[1])} GB/s<extra></extra>"))
        last_in_col = k + cols >= len(ops)
        _size_axis(fig, df["bytes"], row=r, col=c, tickangle=-45,
                   title="message size S" if last_in_col else None)
        fig.update_yaxes(type="log", showline=True, linecolor="#888", row=r, col=c, dtick="D2",
                         title="time (ms)" if c == 1 else None)
    sub = "measured: median of iterations (solid); fit: t = α + β·S per op and world (dashed)"
    if link is not None:
        sub += (f"<br>model: ring formulas (Thakur et al. 2005) with per-step α = "
                f"{link[0] * 1e6:.1f} µs and link 1/β = {_gbs(link[1])} GB/s from the "
                f"{ring_from} fit on {link_world} ranks (dotted)")
    fig.update_layout(title=dict(text=title or "Time of each collective: measured, α-β fit and "
                                 "ring model", subtitle=dict(text=sub)),
                      template="plotly_white", height=330 * rows + 150, hovermode="closest",
                      margin=dict(t=150), legend=dict(tracegroupgap=2))
    return fig


def _gbs(beta: float) -> str:
    return "inf" if beta <= 0 else f"{1 / beta / 1e9:.3g}"
