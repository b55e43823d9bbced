"""Figures of hardware: the bandwidth ladder and a server's GPU-to-GPU links.

>>> from gpuviz.sharing import hardware
>>> fig = hardware_ladder(measured=1.2e9, grad_bytes=4 * 124e6)   # GPT-2 small, fp32
>>> fig = topology(hardware.parse_topology(hardware.recorded_topology()))
"""

from __future__ import annotations

import html
import textwrap

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gpuviz.plan.prediction import ring_allreduce_seconds
from gpuviz.plot.units import duration
from gpuviz.sharing import hardware

__all__ = ["hardware_ladder", "topology"]

#: One colour per kind of rung (Tableau 10).
KIND_COLORS = {"memory": "#B279A2", "inside a server": "#54A24B", "GPU to host": "#4C78A8",
               "between servers": "#F58518"}
_MEASURED = "measured on this machine"


def hardware_ladder(measured=None, grad_bytes: float | None = None, *, world: int = 8,
                    links=None, title: str | None = None) -> go.Figure:
    """The hardware ladder: bandwidth of memory and links, one bar each, on a log scale.

    Published peaks (:data:`gpuviz.sharing.hardware.CATALOGUE`, each with its source in the hover)
    are solid bars coloured by kind; ``measured`` rungs (a busbw in bytes/s, a
    :func:`gpuviz.sharing.hardware.measured_rung`, or a list) are hatched, outlined and labelled
    "measured on this machine". With ``grad_bytes``, a second panel estimates the time to
    all-reduce that many bytes of gradients on ``world`` ranks over each link with a ring
    (:func:`gpuviz.plan.prediction.ring_allreduce_seconds`; a lower bound on a peak number).
    ``links`` picks rungs by name.

    >>> fig = hardware_ladder()
    >>> fig = hardware_ladder(measured=1.2e9, grad_bytes=496e6, world=4)
    """
    if grad_bytes is not None and (isinstance(grad_bytes, bool)
                                   or not isinstance(grad_bytes, (int, float)) or not grad_bytes > 0):
        raise ValueError(f"grad_bytes={grad_bytes!r}: give the bytes of one step's gradients, "
                         "a number > 0 (e.g. 4 * parameters for fp32)")
    if isinstance(world, bool) or not isinstance(world, int) or world < 2:
        raise ValueError(f"world={world!r}: an all-reduce needs an integer number of ranks >= 2")
    df = hardware.catalogue(measured)
    if links is not None:
        names = [links] if isinstance(links, str) else list(links)
        for n in names:
            if n not in set(df["name"]):
                raise ValueError(f"links: {n!r} is not in the catalogue; known: "
                                 + ", ".join(repr(r["name"]) for r in hardware.CATALOGUE))
        df = df[df["name"].isin(names) | (df["label"] == _MEASURED)]
    df = df.reset_index(drop=True)
    if grad_bytes is not None and (df["kind"] == "memory").all():
        raise ValueError(f"links={links!r}: the all-reduce panel needs at least one link, not only memory")
    is_meas = (df["label"] == _MEASURED).to_numpy()
    ylab = [f"<b>{html.escape(n)}</b>" if m else html.escape(n)
            for n, m in zip(df["name"], is_meas, strict=True)]
    two = grad_bytes is not None
    fig = make_subplots(rows=1, cols=2 if two else 1, shared_yaxes=True, horizontal_spacing=0.02,
                        column_widths=[0.58, 0.42] if two else None)
    for kind in hardware.KINDS:
        for meas in (False, True):
            m = (df["kind"] == kind).to_numpy() & (is_meas == meas)
            if m.any():
                _bandwidth_bars(fig, df[m], np.array(ylab)[m], kind, meas)
    if two:
        _time_bars(fig, df, ylab, grad_bytes, world)
    n = len(df)
    sub = "bandwidth each way (memory: reads and writes together); log scale; hover for sources"
    if two:
        sub += (f"<br>right: time to all-reduce {_bytes(grad_bytes)} of gradients on {world} ranks, "
                "ring estimate 2(p-1)/p × bytes / bandwidth (+ 2(p-1) × latency where published)")
    fig.update_layout(title=dict(text=title or "The hardware ladder: how fast can data move?",
                                 subtitle=dict(text=sub)),
                      template="plotly_white", barmode="overlay", height=max(420, 170 + 34 * n),
                      width=1150 if two else 850, bargap=0.25, hovermode="closest",
                      legend=dict(orientation="h", y=-0.12, yanchor="top", x=0, title=None),
                      margin=dict(t=110, l=10, r=20, b=110))
    fig.update_yaxes(autorange="reversed", categoryorder="array", categoryarray=ylab,
                     automargin=True, showgrid=False)
    lo, hi = np.log10(df["GB/s"].min()) - 0.4, np.log10(df["GB/s"].max()) + 0.7
    fig.update_xaxes(type="log", title="bandwidth (GB/s, log scale)", row=1, col=1, range=[lo, hi],
                     **_decades(lo, hi, _gbs))
    return fig


def _bandwidth_bars(fig, d, ylab, kind, meas):
    color = KIND_COLORS[kind]
    cols = ["name", "label", "GB/s", "published", "latency_s", "latency_source", "source"]
    hover = [f"<b>{html.escape(n)}</b><br>{lab}: {gbs:,.4g} GB/s {'each way' if kind != 'memory' else ''} "
             f"({html.escape(str(pub))})<br>latency: {_latency(lat, why)}<br>source: {html.escape(str(src))}"
             for n, lab, gbs, pub, lat, why, src in zip(*(d[c] for c in cols), strict=True)]
    marker = dict(color=color, line=dict(width=0))
    if meas:
        marker = dict(color="white", line=dict(width=2.5, color="#222"),
                      pattern=dict(shape="x", fgcolor=color, size=7, solidity=0.5))
    fig.add_bar(x=d["GB/s"], y=ylab, orientation="h", marker=marker, row=1, col=1,
                name=f"{_MEASURED} ({kind})" if meas else f"published peak: {kind}",
                legendrank=200 if meas else 100 + hardware.KINDS.index(kind),
                text=[_gbs(v) + (f" · {_MEASURED}" if meas else "") for v in d["GB/s"]],
                textposition="outside", cliponaxis=False, textfont=dict(size=11), hoverinfo="text", hovertext=hover)


def _time_bars(fig, df, ylab, grad_bytes, world):
    links = (df["kind"] != "memory").to_numpy()
    secs = np.array([ring_allreduce_seconds(grad_bytes, world, bw, 0.0 if np.isnan(lat) else lat)
                     if ok else np.nan for bw, lat, ok in zip(df["bytes_per_s"], df["latency_s"].astype(float),
                                                               links, strict=True)])
    hover = [f"<b>{html.escape(n)}</b><br>ring all-reduce of {_bytes(grad_bytes)} on {world} ranks: "
             f"{duration(s)} (estimate)" for n, s in zip(df["name"], secs, strict=True)]
    # a trace per kind of link: a hatched bar takes one colour per trace (plotly.js cannot
    # hatch bars of several colours in one trace)
    kinds = df["kind"].to_numpy()
    for n, kind in enumerate(dict.fromkeys(kinds[links])):
        sel = links & (kinds == kind)
        fig.add_bar(x=secs[sel], y=np.array(ylab)[sel], orientation="h", row=1, col=2,
                    name="all-reduce time, ring estimate", legendrank=300, legendgroup="ring",
                    showlegend=n == 0,
                    marker=dict(color=KIND_COLORS[kind], opacity=0.55,
                                line=dict(width=1, color="#555"), pattern=dict(shape="/", size=6)),
                    text=[duration(s) for s in secs[sel]], textposition="outside", cliponaxis=False,
                    textfont=dict(size=11), hoverinfo="text", hovertext=np.array(hover)[sel])
    mem = ~links
    if mem.any():
        fig.add_scatter(x=np.full(mem.sum(), np.nanmin(secs)), y=np.array(ylab)[mem], mode="text",
                        text=["memory, not a link"] * int(mem.sum()), textposition="middle right",
                        textfont=dict(size=11, color="#999"), hoverinfo="skip", showlegend=False,
                        row=1, col=2)
    lo, hi = np.log10(np.nanmin(secs)), np.log10(np.nanmax(secs))
    fig.update_xaxes(type="log", title="seconds per all-reduce (ring estimate, log scale)",
                     range=[lo - 0.3, hi + 0.6], row=1, col=2, **_decades(lo - 0.3, hi + 0.6, duration))


def topology(matrix, *, title: str | None = None, source: str | None = None) -> go.Figure:
    """GPU-to-GPU links as a heatmap: each cell the ``nvidia-smi topo -m`` code, coloured
    from fastest (NV#: NVLink) to slowest (SYS: across CPU sockets), with the command's
    own legend below. ``matrix`` is :func:`gpuviz.sharing.hardware.parse_topology`'s DataFrame (or
    the command's text); ``source`` is printed under the title.

    >>> from gpuviz.sharing import hardware
    >>> text = hardware.gpu_topology() or hardware.recorded_topology()
    >>> fig = topology(hardware.parse_topology(text))
    """
    import pandas as pd

    if isinstance(matrix, str):
        matrix = hardware.parse_topology(matrix)
    if not isinstance(matrix, pd.DataFrame) or matrix.empty or matrix.shape[0] != matrix.shape[1]:
        raise ValueError("matrix: give the square DataFrame of link codes from "
                         "gpuviz.sharing.hardware.parse_topology (or nvidia-smi topo -m's text)")
    codes = list(hardware.TOPOLOGY_CODES)
    colors = ["#D73027", "#FC8D59", "#FEE08B", "#D9EF8B", "#91CF60", "#1A9850", "#E8E8E8"]
    k = len(colors)                                    # slowest (SYS) at the bottom, self on top
    z = (k - 1 - matrix.map(hardware.code_rank)).to_numpy()
    scale = [[v, c] for i, c in enumerate(colors) for v in (i / k, (i + 1) / k)]
    hover = [[f"<b>{a} ↔ {b}</b>: {c}<br>{_meaning(c)}" for b, c in row.items()]
             for a, row in matrix.iterrows()]
    fig = go.Figure(go.Heatmap(
        z=z, x=list(matrix.columns), y=list(matrix.index), text=matrix.to_numpy(), texttemplate="%{text}",
        textfont=dict(size=13), colorscale=scale, zmin=-0.5, zmax=k - 0.5, xgap=2, ygap=2,
        hoverinfo="text", hovertext=hover,
        colorbar=dict(title="link", tickvals=list(range(k)), ticks="", len=0.9,
                      ticktext=(["X self", "NV# fastest"] + codes[2:-1] + ["SYS slowest"])[::-1])))
    legend = "<br>".join(f"<b>{c:<4}</b> {html.escape(m)}" for c, m in hardware.TOPOLOGY_CODES.items())
    fig.add_annotation(text="nvidia-smi's legend, fastest first:<br>" + legend, xref="paper",
                       yref="paper", x=0, y=-0.08, xanchor="left", yanchor="top", align="left",
                       showarrow=False, font=dict(size=11, color="#444"))
    n = len(matrix)
    fig.update_layout(title=dict(text=title or f"How the {n} GPUs are linked (nvidia-smi topo -m)",
                                 subtitle=dict(text="<br>".join(textwrap.wrap(html.escape(source or ""), 95)))),
                      template="plotly_white", width=820, height=560 + 30 * max(0, n - 8) + 150,
                      margin=dict(t=60 + 18 * len(textwrap.wrap(source or "", 95)) + 30, b=190, l=70, r=20))
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain")
    fig.update_xaxes(side="top", constrain="domain")
    return fig


def _meaning(code: str) -> str:
    if code.startswith("NV") and code[2:].isdigit():
        return f"a bonded set of {code[2:]} NVLinks"
    return hardware.TOPOLOGY_CODES["SYS" if code == "SOC" else code]


def _latency(lat, why) -> str:
    if lat is None or (isinstance(lat, float) and np.isnan(lat)):
        return f"— ({html.escape(str(why))})" if isinstance(why, str) else "—"
    return f"{lat * 1e9:,.0f} ns ({html.escape(str(why))})"


def _gbs(v: float) -> str:
    return f"{v / 1e3:.3g} TB/s" if v >= 1e3 else f"{v:.3g} GB/s" if v >= 1 else f"{v * 1e3:.3g} MB/s"


def _decades(lo: float, hi: float, fmt) -> dict:
    """Log-axis ticks at powers of ten only, labelled by ``fmt``."""
    vals = [10.0 ** e for e in range(int(np.ceil(lo)), int(np.floor(hi)) + 1)]
    return dict(tickvals=vals, ticktext=[fmt(v) for v in vals])


def _bytes(n: float) -> str:
    return f"{n / 1e9:.3g} GB" if n >= 1e9 else f"{n / 1e6:.3g} MB" if n >= 1e6 else f"{n:,.0f} bytes"
