"""Figures of energy: joules per rank and category, the time-energy frontier, power over time.

Measured joules are drawn solid; estimated ones (no hardware counter: CPU time x power per
core) are hatched or dashed, and the legend and title say so.

>>> import gpuviz
>>> run = gpuviz.launch("gpuviz.workloads.mlp:train", nproc=4)   # doctest: +SKIP
>>> gpuviz.plot.energy_breakdown(run)                             # doctest: +SKIP
>>> gpuviz.plot.power_timeline(run, steps=range(3, 6))            # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from gpuviz.energy.attribution import joules, meters, pareto_front, power
from gpuviz.plot.restarts import attempt_shifts, shifted
from gpuviz.plot.spans import timeline
from gpuviz.plot.units import run_label
from gpuviz.run.categories import CATEGORIES, COLORS

__all__ = ["energy_breakdown", "pareto", "power_timeline", "energy_per_sample"]

_UNTRACED = "#E4E4E4"
_HATCH = dict(shape="/", fgcolor="#333", size=6, solidity=0.25)
_RANK_COLORS = qualitative.T10    # Tableau 10, one colour per rank


def _kind(estimated: bool) -> str:
    return "estimated (CPU time x W per core, no counter)" if estimated else "measured (hardware counter)"


def energy_breakdown(run, *, title: str | None = None) -> go.Figure:
    """Joules per rank, stacked by category (:func:`gpuviz.energy.attribution.joules` ``"category"``); hatched
    when the joules are estimated. Hover: joules, seconds, mean watts, share of the rank.

    >>> fig = energy_breakdown(run)                                # doctest: +SKIP
    """
    df = joules(run, "category")
    estimated = bool(df["estimated"].any())
    totals = df.groupby("rank")["joules"].sum()
    fig = go.Figure()
    for cat in [*CATEGORIES, "untraced"]:
        d = df[df["category"] == cat].set_index("rank").reindex(totals.index)
        if d["seconds"].fillna(0).sum() <= 0:
            continue
        share = d["joules"] / totals
        hover = [f"rank {r}, {cat}<br>{j:.4g} J over {s:.3g} s<br>{w:.3g} W mean<br>"
                 f"{100 * f:.1f}% of the rank's joules<br>{_kind(e)}"
                 for r, j, s, w, f, e in zip(d.index, d["joules"], d["seconds"], d["watts"].fillna(0),
                                              share, d["estimated"], strict=True)]
        fig.add_bar(x=[f"rank {r}" for r in d.index], y=d["joules"], name=cat,
                    marker=dict(color=COLORS.get(cat, _UNTRACED),
                                pattern=_HATCH if estimated else None,
                                line=dict(width=0.5, color="#555")),
                    hovertext=hover, hoverinfo="text")
    total = float(totals.sum())
    what = _kind(estimated)
    fig.update_layout(
        barmode="stack", template="plotly_white",
        title=dict(text=title or f"Energy per rank and category: {total:.4g} J in all",
                   subtitle=dict(text=f"{what}; categories of the main thread, untraced = in no span")),
        legend=dict(title=f"category ({'hatched: estimated' if estimated else 'measured'})"),
        margin=dict(t=90))
    fig.update_yaxes(title="energy (J)")
    return fig


def energy_per_sample(df: pd.DataFrame, *, x: str = "ranks", title: str | None = None) -> go.Figure:
    """Joules per sample of each configuration (:func:`gpuviz.energy.attribution.config_energy`)
    against ``x`` (a column: ``ranks``, ``batch``, ``precision``...), one bar each; hatched
    when estimated; the samples per second in the hover.

    >>> fig = energy_per_sample(config_energy(run), x="ranks")   # doctest: +SKIP
    """
    for col in (x, "joules_per_sample", "estimated"):
        if col not in df:
            raise ValueError(f"df has no column {col!r}: pass gpuviz.energy.attribution.config_energy(run)")
    estimated = bool(df["estimated"].any())
    labels = [str(v) for v in df[x]]
    hover = [f"{x} = {v}<br>{j * 1e3:.4g} mJ per sample<br>{s:.4g} samples/s<br>step {t * 1e3:.3g} ms"
             f"<br>{_kind(e)}" for v, j, s, t, e in zip(labels, df["joules_per_sample"], df["samples_per_s"],
                                                      df["step_s"], df["estimated"], strict=True)]
    fig = go.Figure(go.Bar(x=labels, y=df["joules_per_sample"] * 1e3, hovertext=hover, hoverinfo="text",
                           name=_kind(estimated), showlegend=True,
                           text=[f"{j * 1e3:.3g}" for j in df["joules_per_sample"]], textposition="outside",
                           marker=dict(color=COLORS["compute"], pattern=_HATCH if estimated else None)))
    fig.update_layout(template="plotly_white", title=title or f"Energy per sample against {x}",
                      legend=dict(orientation="h", y=-0.2), margin=dict(t=70))
    fig.update_xaxes(title=x, type="category")
    fig.update_yaxes(title="energy per sample (mJ)", rangemode="tozero")
    return fig


def pareto(df: pd.DataFrame, *, x: str = "step_s", y: str = "joules_per_sample", label: str | None = None,
           title: str | None = None) -> go.Figure:
    """Time against energy, one point per configuration, the Pareto frontier (no other point
    is both faster and cheaper) joined and marked. Estimated points are hollow.

    ``df``: e.g. :func:`gpuviz.energy.attribution.config_energy`; ``label``: a column naming points.

    >>> fig = pareto(config_energy(run), label="tag")            # doctest: +SKIP
    """

    front = pareto_front(df, x, y)
    if label is not None and label not in df:
        raise ValueError(f"label={label!r} is not a column; columns: {', '.join(map(str, df.columns))}")
    names = df[label].astype(str) if label else pd.Series([f"#{i}" for i in range(len(df))], index=df.index)
    est = df["estimated"].astype(bool) if "estimated" in df else pd.Series(False, index=df.index)
    fig = go.Figure()
    f = df[front].sort_values(x)
    fig.add_scatter(x=f[x], y=f[y], mode="lines", line=dict(color="#E45756", width=2),
                    name="Pareto frontier", hoverinfo="skip")
    for on in (True, False):
        for e in (False, True):
            d = df[(front == on) & (est == e)]
            if d.empty:
                continue
            fig.add_scatter(
                x=d[x], y=d[y], mode="markers+text", text=names[d.index], textposition="top center",
                name=f"{'on the frontier' if on else 'dominated'}, {'estimated' if e else 'measured'}",
                marker=dict(size=12, symbol="circle-open" if e else "circle", line=dict(width=2),
                            color="#E45756" if on else "#888"),
                hovertext=[f"{n}<br>{x} = {a:.4g}<br>{y} = {b:.4g}<br>"
                           f"{'on the frontier' if on else 'dominated'}<br>{_kind(e)}"
                           for n, a, b in zip(names[d.index], d[x], d[y], strict=True)],
                hoverinfo="text")
    fig.update_layout(template="plotly_white", title=dict(
        text=title or "Time against energy: the Pareto frontier",
        subtitle=dict(text="lower left is better; hollow: estimated joules")), margin=dict(t=80))
    fig.update_xaxes(title="step time (s)" if x == "step_s" else x)
    fig.update_yaxes(title="energy per sample (J)" if y == "joules_per_sample" else y)
    return fig


def power_timeline(run, *, ranks=None, steps=None, title: str | None = None) -> go.Figure:
    """The timeline (:func:`gpuviz.plot.timeline`) with each rank's power underneath on the
    same time axis: a step line per rank, solid when measured, dashed when estimated.

    >>> fig = power_timeline(run, steps=range(2, 5))              # doctest: +SKIP
    """
    tl = timeline(run, ranks=ranks, steps=steps)
    pw = power(run)
    if pw.empty:
        raise ValueError(f"run={run.path}: no power was recorded (energy='off')")
    drawn = [int(t.split()[1]) for t in tl.layout.yaxis.ticktext]
    sp = run.spans[run.spans["rank"].isin(drawn)]
    if steps is not None:
        sp = sp[sp["step"].isin(list(np.atleast_1d(list(steps) if not np.isscalar(steps) else steps)))]
    shifts = attempt_shifts(sp)   # the timeline cut a restart's dead time: cut it here too
    if shifts and "attempt" in pw:
        pw = pw.assign(time=shifted(pw["time"], pw["attempt"], shifts))
        sp = sp.assign(start=shifted(sp["start"], sp["attempt"], shifts),
                       end=shifted(sp["end"], sp["attempt"], shifts))
    lo, hi = float(sp["start"].min()), float(sp["end"].max())
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.62, 0.38], vertical_spacing=0.06)
    for tr in tl.data:
        fig.add_trace(tr, row=1, col=1)
    info = meters(run)
    for i, r in enumerate(drawn):
        p = pw[(pw["rank"] == r)]
        p = p[(p["time"] >= lo - 1e-9) & (p["time"] <= hi)]
        if p.empty:
            continue
        est = bool(info.get(r, {}).get("estimated", True))
        fig.add_scatter(x=p["time"], y=p["watts"], mode="lines", line_shape="hv", row=2, col=1,
                        line=dict(color=_RANK_COLORS[i % len(_RANK_COLORS)], width=1.5,
                                  dash="dash" if est else "solid"),
                        name=f"rank {r} power ({'estimated' if est else 'measured'})",
                        legendgroup="power", legendgrouptitle_text="power",
                        hovertemplate=f"rank {r}<br>%{{y:.3g}} W from %{{x:.4f}} s<br>{_kind(est)}<extra></extra>")
    fig.update_layout(tl.layout)
    fig.update_layout(height=tl.layout.height + 260, title=dict(
        text=title or f"Timeline and power of {run_label(run)}",
        subtitle=dict(text=(tl.layout.title.subtitle.text or "") + "<br>below: each rank's mean power "
                      "between two readings of its meter (dashed: estimated)")),
        margin=dict(t=110), yaxis2=dict(title="power (W)", rangemode="tozero"),
        xaxis2=dict(title="time (s) from the aligned start" + (", restarts cut" if shifts else "")),
        xaxis=dict(title=None))
    fig.update_yaxes(domain=[0.42, 1.0], row=1, col=1)
    fig.update_yaxes(domain=[0.0, 0.34], row=2, col=1)
    return fig
