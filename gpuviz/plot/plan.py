"""Figures of the cluster model (:mod:`gpuviz.plan.prediction`): a prediction's breakdown, a layout
heatmap of a search, and predicted against measured step times. Modelled values are
hatched or dashed and the legends say "modelled".

>>> from gpuviz.plan import Config, predict
>>> p = predict(Config("llama3-70b", gpus=64, dp=8, tp=8, global_batch=512, zero=1))
>>> model_breakdown(p).layout.title.text.startswith("Modelled step")
True
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gpuviz.plan.search import layout_name
from gpuviz.plot.units import binary_bytes, duration
from gpuviz.run.categories import COLORS

#: Each term's category colour (compute, comm, idle, optimizer, data).
TERM_COLORS = {"compute": COLORS["compute"], "tp_comm": COLORS["comm"], "pp_comm": "#FFBF79",
               "zero3_comm": "#E45756", "ep_comm": "#D67195", "bubble": COLORS["idle"], "dp_comm": "#B85C00",
               "optimizer": COLORS["optimizer"], "overhead": COLORS["data"]}
MEMORY_COLORS = {"params": "#4C78A8", "grads": "#72B7B2", "optimizer": COLORS["optimizer"],
                 "activations": "#F58518", "buffers": "#BAB0AC", "reserved": "#8C8C8C"}
_HATCH = dict(shape="/", fgcolor="rgba(255,255,255,0.7)", size=6)


def model_breakdown(prediction, title: str | None = None) -> go.Figure:
    """Stacked bars of one :class:`gpuviz.plan.prediction.Prediction`: its step time by term (left,
    seconds) and its memory per GPU by kind (right, GiB, with the GPU's capacity dashed).
    Every bar is hatched: modelled, not measured (the reserved memory, grey, is a stated
    allowance; its hover says so)."""
    p = prediction
    fig = make_subplots(rows=1, cols=2, column_widths=[0.6, 0.4], horizontal_spacing=0.18,
                        subplot_titles=("step time (s)", "memory per GPU (GiB)"))
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
            x=["per GPU"], y=[r["GiB"]], name=r["kind"], legendgroup="memory",
            legendgrouptitle_text="memory, modelled",
            marker=dict(color=MEMORY_COLORS[r["kind"]], pattern=_HATCH),
            hovertemplate=(f"<b>{r['kind']}</b><br>{r['GiB']:.4g} GiB"
                           f"<br>{r['label']}<extra></extra>")),
            row=1, col=2)
    cap = float(mem["capacity_GiB"].iloc[0])
    if np.isfinite(cap):
        fig.add_hline(y=cap, line=dict(dash="dash", color="black"), row=1, col=2,
                      annotation_text=f"capacity {cap:.1f} GiB",
                      annotation_position="top left")
    sub = breakdown_subtitle(p)
    fig.update_layout(barmode="stack", title=dict(text=title or "Modelled step time and memory",
                                                  subtitle=dict(text=sub)),
                      margin=dict(t=150), height=600, legend=dict(groupclick="toggleitem"))
    fig.update_yaxes(title_text="seconds per step", row=1, col=1)
    fig.update_yaxes(title_text="GiB per GPU", row=1, col=2)
    return fig


def breakdown_subtitle(prediction) -> str:
    """The subtitle of :func:`model_breakdown`: the configuration and its headline numbers.
    Memory in binary units (:func:`gpuviz.plot.units.binary_bytes`, MiB for the labs' CPU
    GPT); MFU of the datasheet peak, or of the fitted core rate on a calibrated CPU.

    >>> from gpuviz.plan.calibrate import Calibration, gpt_model
    >>> from gpuviz.plan import predict
    >>> cal = Calibration(2e9, 1e9, 1e-4, 0.0, 0.0, 0.0, 0.5, 2, gpt_model())
    >>> sub = breakdown_subtitle(predict(cal.config("ddp", ranks=2, batch=32)))
    >>> "MiB per GPU" in sub, "of the fitted core rate" in sub
    (True, True)
    """
    p, c = prediction, prediction.config
    gpu = c.gpu if isinstance(c.gpu, str) else c.gpu.get("name", "custom")
    peak = ("the fitted core rate" if "calibrated" in gpu else
            "the datasheet peak" if isinstance(c.gpu, str) else "the given peak FLOP/s")
    cap = _gpu_memory(c)
    mem = binary_bytes(p.memory_per_gpu) + (f" of {binary_bytes(cap)}" if np.isfinite(cap) else "")
    return (f"{c.model.name} on {c.gpus} x {gpu}: dp={c.dp} tp={c.tp} pp={c.pp}"
            f"{f' cp={c.cp}' if c.cp > 1 else ''}{f' ep={c.ep}' if c.ep > 1 else ''}"
            f"{' overlapped' if c.ep > 1 and c.ep_overlap else ''}"
            f"{f' ({c.virtual_stages} virtual stages)' if c.virtual_stages > 1 else ''}, micro-batch "
            f"{c.micro_batch}, ZeRO-{c.zero}, recompute {c.recompute}"
            f"{', FP8 matmuls' if c.precision == 'fp8' else ''}<br>step {duration(p.step_s)}, "
            f"{p.tokens_per_s:,.0f} tokens/s, MFU {p.mfu:.1%} of {peak}, {mem} per GPU"
            f"{'' if p.fits else ' (does NOT fit)'}; hatched: modelled")


def _gpu_memory(config) -> float:
    from gpuviz.plan.config import hardware

    return float(hardware(config)["memory_bytes"])


#: Cell fills of :func:`layout_heatmap` where there is no value: no layout at all, or none fits.
NO_LAYOUT_COLOR, NO_FIT_COLOR = "#D9D9D9", "#FFFFFF"


def _no_layout_why(table: pd.DataFrame, x: str, y: str, xv, yv) -> str:
    """Why a :func:`gpuviz.plan.search.search` table has no layout with ``x=xv, y=yv``."""
    if {x, y} != {"tp", "pp"}:
        return f"no layout in the table has {x}={xv} and {y}={yv}"
    tp, pp = (xv, yv) if x == "tp" else (yv, xv)
    gpus = int((table["dp"] * table["tp"] * table["pp"]).iloc[0])
    if gpus % (tp * pp):
        return f"tp x pp = {tp * pp} does not divide the {gpus:,} GPUs"
    best = table.attrs.get("best")
    if best is not None and pp > best.model.layers:
        return f"pp={pp} is more stages than the {best.model.layers} layers"
    if best is not None and best.global_batch % (gpus // (tp * pp)):
        return f"the global batch of {best.global_batch} does not split over dp={gpus // (tp * pp)}"
    return f"the search made no layout with tp={tp} and pp={pp}"


def layout_heatmap(table: pd.DataFrame, x: str = "tp", y: str = "pp",
                   value: str = "tokens_per_s", title: str | None = None) -> go.Figure:
    """Heatmap of a :func:`gpuviz.plan.search.search` table: for each (``x``, ``y``), the
    best ``value`` over the other settings among layouts that fit. A cell without a value
    says why: grey "no such layout" (e.g. tp x pp does not divide the GPUs: nothing to
    run), white "does not fit" (layouts exist, none fits in memory; the hover gives the
    smallest). Modelled, as the Ultra-Scale Playbook draws measured ones.

    >>> from gpuviz.plan.search import search
    >>> fig = layout_heatmap(search("llama3-405b", gpus=128, global_batch=128))
    >>> sorted({a.text for a in fig.layout.annotations})
    ['does not fit', 'no such layout']
    """
    for k in (x, y, value):
        if k not in table:
            raise ValueError(f"{k!r} is not a column of the search table; columns: {', '.join(table.columns)}")
    fit = table[table["fits"]]
    best = fit.sort_values(value, ascending=False).groupby([y, x], as_index=False).first()
    smallest = table.sort_values("memory_GiB").groupby([y, x], as_index=False).first()
    xs, ys = sorted(table[x].unique()), sorted(table[y].unique())
    cap = table.attrs.get("capacity_GiB")
    of = f" of {cap:.1f} GiB" if cap else ""
    z = np.full((len(ys), len(xs)), np.nan)
    state = [["none" for _ in xs] for _ in ys]
    text = [[f"<b>no such layout</b>: {_no_layout_why(table, x, y, xv, yv)}" for xv in xs] for yv in ys]
    for _, r in smallest.iterrows():
        i, j = ys.index(r[y]), xs.index(r[x])
        state[i][j] = "nofit"
        text[i][j] = (f"<b>does not fit</b> in memory: the smallest layout with {x}={r[x]}, {y}={r[y]} "
                      f"({layout_name(r)}) needs {r['memory_GiB']:.1f} GiB{of} per GPU")
    for _, r in best.iterrows():
        i, j = ys.index(r[y]), xs.index(r[x])
        z[i, j] = r[value]
        state[i][j] = "fits"
        text[i][j] = (f"{value}: {r[value]:,.4g}<br>{layout_name(r)}<br>step "
                      f"{duration(r['step_s'])}, {r['memory_GiB']:.1f} GiB, mostly {r['dominant']}")
    fig = go.Figure(go.Heatmap(z=z, x=[str(v) for v in xs], y=[str(v) for v in ys], text=text,
                               hovertemplate="%{text}<extra>modelled</extra>", hoverongaps=True,
                               colorscale="Viridis", colorbar=dict(title=value)))
    # the empty cells: a grey box (no layout to run) or a white one (none fits), each labelled
    for i in range(len(ys)):
        for j in range(len(xs)):
            if state[i][j] == "fits":
                continue
            none = state[i][j] == "none"
            fig.add_shape(type="rect", x0=j - 0.5, x1=j + 0.5, y0=i - 0.5, y1=i + 0.5, layer="below",
                          fillcolor=NO_LAYOUT_COLOR if none else NO_FIT_COLOR,
                          line=dict(color="white" if none else "#E45756", width=1))
            fig.add_annotation(x=j, y=i, text="no such layout" if none else "does not fit",
                               showarrow=False, font=dict(size=10,
                                                          color="#555555" if none else "#E45756"))
    top = table.iloc[0]
    fig.update_layout(title=dict(text=title or f"Modelled {value} of every {x} x {y} (best of the rest)",
                                 subtitle=dict(text=(
                                     f"best: {layout_name(top)}; modelled<br>grey: no such "
                                     f"layout (e.g. {x} x {y} does not divide the GPUs); white: "
                                     "layouts exist but none fits in memory"))),
                      xaxis=dict(title=f"{x} (ranks)", type="category", showgrid=False),
                      yaxis=dict(title=f"{y} (ranks)", type="category", showgrid=False),
                      plot_bgcolor="white", margin=dict(t=120))
    return fig


def predicted_vs_measured(table: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Measured step time (x) against modelled (y) for each configuration of a
    :meth:`gpuviz.plan.calibrate.Calibration.predict_table` or :func:`gpuviz.plan.calibrate.leave_one_out`
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
        xaxis=dict(title="measured step time (ms)", type="log", tickformat="~g"),
        yaxis=dict(title="modelled step time (ms)", type="log", tickformat="~g"), margin=dict(t=100))
    return fig
