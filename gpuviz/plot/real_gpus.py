"""Your collectives' bus bandwidth beside real GPUs: NCCL kernels in imported profiler
traces and published nccl-tests runs, on one figure.

>>> from gpuviz.sharing import real_gpus
>>> fig = busbw_beside_real(df, real_gpus.traced_busbw(runs), real_gpus.published_busbw())  # doctest: +SKIP
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from gpuviz.plot.bench import _size_axis
from gpuviz.plot.units import binary_bytes

__all__ = ["busbw_beside_real"]

_YOURS = "#4C78A8"
_TRACED = ["#E45756", "#F58518", "#B279A2", "#9D755D"]   # one per traced system
_SYMBOLS = {"all_reduce": "diamond", "all_to_all": "triangle-up", "all_gather": "star",
            "reduce_scatter": "hexagon", "broadcast": "x", "send_recv": "cross"}  # one per op
_PUBLISHED = ["#54A24B", "#72B7B2", "#EECA3B", "#FF9DA6"]


def busbw_beside_real(mine: pd.DataFrame, traced: pd.DataFrame, published: pd.DataFrame, *,
                      op: str = "all_reduce", title: str | None = None) -> go.Figure:
    """Bus bandwidth (GB/s) against message size: your ``op`` per world size (solid, measured
    here), each NCCL kernel of the imported GPU traces (markers, measured elsewhere on real
    GPUs), published nccl-tests curves (dashed, published). Log-log; hover for sources."""
    for name, df, need in (("mine", mine, {"op", "world", "bytes", "busbw"}),
                           ("traced", traced, {"op", "world", "bytes", "busbw", "system"}),
                           ("published", published, {"system", "bytes", "busbw", "source"})):
        if not need <= set(df.columns):
            raise ValueError(f"{name} lacks column(s) {sorted(need - set(df.columns))}")
    fig = go.Figure()
    m = mine[mine["op"] == op]
    if m.empty:
        raise ValueError(f"op={op!r}: mine has no such collective; it has {sorted(set(mine['op']))}")
    backend = ", ".join(sorted({str(b) for b in mine.get("backend", pd.Series(["gloo"])).dropna()}))
    for w, d in m.groupby("world"):
        d = d.sort_values("bytes")
        fig.add_scatter(x=d["bytes"], y=d["busbw"] / 1e9, mode="lines+markers",
                        name=f"yours: {op}, {w} ranks ({backend}, CPU)", line=dict(color=_YOURS, width=2.5),
                        marker=dict(size=7, symbol="circle"), legendgroup="yours",
                        hovertemplate=f"<b>your {op}</b>, {w} ranks<br>%{{x:,}} B<br>busbw %{{y:.3g}} GB/s"
                                      "<br>measured on this machine<extra></extra>")
    systems = sorted(traced["system"].unique())
    for (system, o), d in traced.groupby(["system", "op"], sort=True):
        gpu = d["gpu"].iloc[0] if "gpu" in d else ""
        fig.add_scatter(x=d["bytes"], y=d["busbw"] / 1e9, mode="markers",
                        name=f"traced: {o}, {system}", legendgroup="traced",
                        marker=dict(size=9, symbol=_SYMBOLS.get(o, "circle-open"),
                                    color=_TRACED[systems.index(system) % len(_TRACED)],
                                    line=dict(width=1, color="white")),
                        customdata=[[binary_bytes(b), int(w)] for b, w in zip(d["bytes"], d["world"], strict=True)],
                        hovertemplate=f"<b>{o}</b> NCCL kernel, {system} ({gpu})<br>S = %{{customdata[0]}}, "
                                      "%{customdata[1]} ranks<br>busbw %{y:.3g} GB/s (after the last rank "
                                      "arrived)<br>recorded elsewhere: an imported PyTorch profiler trace"
                                      "<extra></extra>")
    for i, (system, d) in enumerate(published.groupby("system", sort=True)):
        d = d.sort_values("bytes")
        fig.add_scatter(x=d["bytes"], y=d["busbw"] / 1e9, mode="lines+markers",
                        name=f"published: {system}", legendgroup="published",
                        line=dict(color=_PUBLISHED[i % len(_PUBLISHED)], dash="dash", width=2),
                        marker=dict(size=7, symbol="square"),
                        hovertemplate=f"<b>{system}</b>, nccl-tests all_reduce<br>%{{x:,}} B<br>busbw "
                                      f"%{{y:.4g}} GB/s<br>published: {d['source'].iloc[0]}<extra></extra>")
    sizes = pd.concat([m["bytes"], traced["bytes"], published["bytes"]]).astype(float)
    _size_axis(fig, sizes[sizes > 0], title="message size S")
    fig.update_yaxes(type="log", title="bus bandwidth (GB/s)", tickformat="~g", showline=True,
                     linecolor="#888")
    fig.update_layout(
        title=dict(text=title or f"Bus bandwidth: your {op} beside real GPUs",
                   subtitle=dict(text="solid: measured here; markers: NCCL kernels in real GPU traces "
                                 "(small test models); dashed: published nccl-tests")),
        template="plotly_white", height=560, hovermode="closest", margin=dict(t=100, r=20),
        legend=dict(orientation="h", yanchor="top", y=-0.18, xanchor="left", x=0, font=dict(size=11)))
    return fig
