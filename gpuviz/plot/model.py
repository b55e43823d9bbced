"""Figures of the cluster model (:mod:`gpuviz.model`): a prediction's breakdown, a layout
heatmap of a search, and predicted against measured step times. Modelled values are
hatched or dashed and the legends say "modelled".

>>> from gpuviz.model import Config, predict
>>> p = predict(Config("llama3-70b", gpus=64, dp=8, tp=8, global_batch=512, zero=1))
>>> model_breakdown(p).layout.title.text.startswith("Modelled step")
True
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gpuviz.categories import COLORS
from gpuviz.plot.units import duration

#: Each term's category colour (compute, comm, idle, optimizer, data).
TERM_COLORS = {"compute": COLORS["compute"], "tp_comm": COLORS["comm"], "pp_comm": "#FFBF79",
               "zero3_comm": "#E45756", "bubble": COLORS["idle"], "dp_comm": "#B85C00",
               "optimizer": COLORS["optimizer"], "overhead": COLORS["data"]}
MEMORY_COLORS = {"params": "#4C78A8", "grads": "#72B7B2", "optimizer": COLORS["optimizer"],
                 "activations": "#F58518", "buffers": "#BAB0AC"}
_HATCH = dict(shape="/", fgcolor="rgba(255,255,255,0.7)", size=6)


def model_breakdown(prediction, title: str | None = None) -> go.Figure:
    """Stacked bars of one :class:`gpuviz.model.Prediction`: its step time by term (left,
    seconds) and its memory per GPU by kind (right, GB, with the GPU's capacity dashed).
    Every bar is hatched: modelled, not measured."""
    p = prediction
    fig = make_subplots(rows=1, cols=2, column_widths=[0.6, 0.4], horizontal_spacing=0.18,
                        subplot_titles=("step time (s)", "memory per GPU (GB)"))
    tab = p.table()
    for _, r in tab.iterrows():
        fig.add_trace(go.Bar(
            x=["step"], y=[r["seconds"]], name=r["term"], legendgroup="time",
            legendgrouptitle_text="step time, modelled",
            marker=dict(color=TERM_COLORS[r["term"]], pattern=_HATCH),
            hovertemplate=(f"<b>{r['what']}</b><br>{r['seconds']:.6g} s ({r['share']:.1%} of the "
                           f"step)<br>modelled<extra></extra>")), row=1, col=1)
    mem = p.memory_table()
    for _, r in mem.iterrows():
        fig.add_trace(go.Bar(
            x=["per GPU"], y=[r["GB"]], name=r["kind"], legendgroup="memory",
            legendgrouptitle_text="memory, modelled",
            marker=dict(color=MEMORY_COLORS[r["kind"]], pattern=_HATCH),
            hovertemplate=f"<b>{r['kind']}</b><br>{r['GB']:.4g} GB<br>modelled<extra></extra>"),
            row=1, col=2)
    cap = float(mem["capacity_GB"].iloc[0])
    if np.isfinite(cap):
        fig.add_hline(y=cap, line=dict(dash="dash", color="black"), row=1, col=2,
                      annotation_text=f"capacity {cap:.0f} GB", annotation_position="top left")
    sub = breakdown_subtitle(p)
    fig.update_layout(barmode="stack", title=dict(text=title or "Modelled step time and memory",
                                                  subtitle=dict(text=sub)),
                      margin=dict(t=150), height=520, legend=dict(groupclick="toggleitem"))
    fig.update_yaxes(title_text="seconds per step", row=1, col=1)
    fig.update_yaxes(title_text="GB per GPU", row=1, col=2)
    return fig


def breakdown_subtitle(prediction) -> str:
    """The subtitle of :func:`model_breakdown`: the configuration and its headline numbers."""
    p, c = prediction, prediction.config
    gpu = c.gpu if isinstance(c.gpu, str) else c.gpu.get("name", "custom")
    return (f"{c.model.name} on {c.gpus} x {gpu}: dp={c.dp} tp={c.tp} pp={c.pp}, micro-batch "
            f"{c.micro_batch}, ZeRO-{c.zero}, recompute {c.recompute}<br>step {duration(p.step_s)}, "
            f"{p.tokens_per_s:,.0f} tokens/s, MFU {p.mfu:.1%}, {p.memory_per_gpu / 1e9:.1f} GB per GPU"
            f"{'' if p.fits else ' (does NOT fit)'}; hatched: modelled")


def layout_heatmap(table: pd.DataFrame, x: str = "tp", y: str = "pp",
                   value: str = "tokens_per_s", title: str | None = None) -> go.Figure:
    """Heatmap of a :func:`gpuviz.model_search.search` table: for each (``x``, ``y``), the
    best ``value`` over the other settings among layouts that fit; cells where nothing
    fits are blank and say so. Modelled, as the Ultra-Scale Playbook draws measured ones."""
    for k in (x, y, value):
        if k not in table:
            raise ValueError(f"{k!r} is not a column of the search table; columns: {', '.join(table.columns)}")
    fit = table[table["fits"]]
    best = fit.sort_values(value, ascending=False).groupby([y, x], as_index=False).first()
    xs, ys = sorted(table[x].unique()), sorted(table[y].unique())
    z = np.full((len(ys), len(xs)), np.nan)
    text = [["nothing fits" for _ in xs] for _ in ys]
    for _, r in best.iterrows():
        i, j = ys.index(r[y]), xs.index(r[x])
        z[i, j] = r[value]
        text[i][j] = (f"{value}: {r[value]:,.4g}<br>dp={r['dp']} tp={r['tp']} pp={r['pp']} mb="
                      f"{r['micro_batch']} zero={r['zero']} {r['recompute']}<br>step "
                      f"{duration(r['step_s'])}, {r['memory_GB']:.1f} GB, mostly {r['dominant']}")
    fig = go.Figure(go.Heatmap(z=z, x=[str(v) for v in xs], y=[str(v) for v in ys], text=text,
                               hovertemplate="%{text}<extra>modelled</extra>",
                               colorscale="Viridis", colorbar=dict(title=value)))
    top = table.iloc[0]
    fig.update_layout(title=dict(text=title or f"Modelled {value} of every {x} x {y} (best of the rest)",
                                 subtitle=dict(text=f"best: dp={top['dp']} tp={top['tp']} pp={top['pp']}; "
                                                    "blank: no layout fits in memory; modelled")),
                      xaxis=dict(title=f"{x} (ranks)", type="category"),
                      yaxis=dict(title=f"{y} (ranks)", type="category"), margin=dict(t=100))
    return fig


def predicted_vs_measured(table: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Measured step time (x) against modelled (y) for each configuration of a
    :meth:`gpuviz.calibrate.Calibration.predict_table` or :func:`gpuviz.calibrate.leave_one_out`
    table, one colour per strategy, with the diagonal and a ±10% band (dashed)."""
    for k in ("measured_ms", "predicted_ms", "strategy", "label"):
        if k not in table:
            raise ValueError(f"table: no {k!r} column; give Calibration.predict_table(...) or leave_one_out(...)")
    fig = go.Figure()
    lo = float(min(table["measured_ms"].min(), table["predicted_ms"].min())) * 0.8
    hi = float(max(table["measured_ms"].max(), table["predicted_ms"].max())) * 1.2
    line = np.array([lo, hi])
    fig.add_trace(go.Scatter(x=line, y=line, mode="lines", name="predicted = measured",
                             line=dict(color="black", width=1), hoverinfo="skip"))
    for f, name in ((1.1, "±10%"), (0.9, None)):
        fig.add_trace(go.Scatter(x=line, y=line * f, mode="lines", name=name or "", showlegend=bool(name),
                                 legendgroup="band", line=dict(color="grey", width=1, dash="dash"),
                                 hoverinfo="skip"))
    palette = ["#4C78A8", "#F58518", "#E45756", "#72B7B2", "#54A24B", "#B279A2", "#9D755D", "#EECA3B"]
    for i, (s, g) in enumerate(table.groupby("strategy", sort=False)):
        fig.add_trace(go.Scatter(
            x=g["measured_ms"], y=g["predicted_ms"], mode="markers", name=s,
            marker=dict(size=10, color=palette[i % len(palette)], line=dict(width=1, color="white")),
            customdata=np.stack([g["label"], g["error"] * 100], axis=1),
            hovertemplate=("<b>%{customdata[0]}</b><br>measured %{x:.4g} ms<br>modelled %{y:.4g} ms"
                           "<br>error %{customdata[1]:+.1f}%<extra></extra>")))
    med = float(table["error"].abs().median())
    fig.update_layout(
        title=dict(text=title or "Modelled against measured step time",
                   subtitle=dict(text=f"{len(table)} configurations; median |error| {med:.1%}; "
                                      "x: measured (median step), y: modelled")),
        xaxis=dict(title="measured step time (ms)", type="log"),
        yaxis=dict(title="modelled step time (ms)", type="log"), margin=dict(t=100))
    return fig
