"""At-scale figures: a GPU power cap's time-energy trade (a model beside a measurement), and
a learner's joules per sample beside published training runs' joules per token.

>>> from gpuviz.energy import at_scale
>>> fig = power_cap(at_scale.power_cap_whatif("H100 SXM"))
>>> fig = energy_per_token({"1 rank": 2.1, "4 ranks": 3.4}, measured=False)
"""

from __future__ import annotations

import html
import math
from numbers import Real

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from gpuviz.energy import at_scale

__all__ = ["power_cap", "energy_per_token"]

_MODEL = "#B85C00"
_MEASURED = "#3B5B7E"
_REPORTED = "#4C78A8"
_DERIVED = "#9D9D9D"
_LEARNER = "#D62728"


def power_cap(df: pd.DataFrame | None = None, *, published: bool = True,
              title: str | None = None) -> go.Figure:
    """Relative step time against relative GPU energy per step under power caps.

    ``df`` is :func:`gpuviz.energy.at_scale.power_cap_whatif`'s table (default: an H100 SXM from
    200 W to 700 W), drawn dashed and labelled "model"; each point is a cap. With
    ``published``, the measured points of :func:`gpuviz.energy.at_scale.published_power_caps` are
    drawn solid on the same relative axes (another GPU, another workload: a check of the
    curve's shape, not of this GPU).

    >>> fig = power_cap()
    >>> [t.name for t in fig.data]
    ['model: H100 SXM, uncapped draw 700 W (DVFS, power ~ clock^3)', 'measured: McDonald et al. 2022, V100 capped at 150 W of 250 W']
    """
    d = at_scale.power_cap_whatif() if df is None else df
    need = ["gpu", "cap_w", "draw_w", "relative_time", "relative_energy"]
    if not isinstance(d, pd.DataFrame) or any(c not in d.columns for c in need) or d.empty:
        raise ValueError("df: give gpuviz.energy.at_scale.power_cap_whatif()'s table (columns "
                         + ", ".join(need) + ")")
    fig = go.Figure()
    groups = list(d.sort_values("cap_w").groupby(["gpu", "draw_w"], sort=False))
    for i, ((gpu, draw), g) in enumerate(groups):
        hover = [f"<b>{html.escape(str(gpu))} capped at {c:g} W</b> (model)<br>"
                 f"uncapped draw {draw:g} W<br>step time × {t:.3f}<br>GPU energy per step × {e:.3f}"
                 for c, t, e in zip(g["cap_w"], g["relative_time"], g["relative_energy"], strict=True)]
        fig.add_scatter(x=g["relative_time"], y=g["relative_energy"], mode="lines+markers+text",
                        name=f"model: {gpu}, uncapped draw {draw:g} W (DVFS, power ~ clock^3)",
                        line=dict(color=_MODEL if i == 0 else _DERIVED, dash="dash", width=2),
                        marker=dict(symbol="circle-open", size=9, color=_MODEL if i == 0 else _DERIVED),
                        # cap labels on the first curve only: the curves coincide
                        text=[f"{c:g} W" for c in g["cap_w"]] if i == 0 else None,
                        textposition="top right",
                        textfont=dict(size=10, color=_MODEL), hoverinfo="text", hovertext=hover)
    if published:
        for _, p in at_scale.published_power_caps().iterrows():
            fig.add_scatter(
                x=[p["relative_time"]], y=[p["relative_energy"]], mode="markers",
                name=f"measured: McDonald et al. 2022, V100 capped at {p['cap_w']:g} W of {p['default_w']:g} W",
                marker=dict(symbol="diamond", size=13, color=_MEASURED, line=dict(width=1, color="white")),
                hoverinfo="text",
                hovertext=[f"<b>measured</b>: {html.escape(p['gpu'])}<br>cap {p['cap_w']:g} W "
                           f"(default {p['default_w']:g} W), {html.escape(p['workload'])}<br>"
                           f"training time × {p['relative_time']:.3f}<br>energy × {p['relative_energy']:.3f}"
                           f"<br>source: {html.escape(p['source'])}"])
    sub = ("a power cap slows the clock: each step takes longer but draws less; "
           "dashed: model (time = energy^-1/2), solid: published measurement")
    fig.update_layout(title=dict(text=title or "Power cap: trading time for energy (model)",
                                 subtitle=dict(text=sub)),
                      template="plotly_white", width=850, height=520, hovermode="closest",
                      legend=dict(orientation="h", y=-0.18, yanchor="top", x=0),
                      margin=dict(t=100, b=120))
    fig.update_xaxes(title="step time relative to the uncapped GPU (×)")
    fig.update_yaxes(title="GPU energy per step relative to uncapped (×)")
    return fig


def _learner(values, unit: str = "sample") -> dict[str, float]:
    if isinstance(values, Real) and not isinstance(values, bool):
        values = {"your run": values}
    if not isinstance(values, dict) or not values:
        raise ValueError(f"j_per_sample={values!r}: give joules per {unit}, a number > 0 or "
                         f"a dict {{label: joules per {unit}}}")
    out = {}
    for k, v in values.items():
        if isinstance(v, bool) or not isinstance(v, Real) or math.isnan(v) or v <= 0:
            raise ValueError(f"j_per_sample[{k!r}]={v!r}: joules per {unit} must be a number > 0")
        out[str(k)] = float(v)
    return out


def energy_per_token(j_per_sample, *, measured: bool, runs: pd.DataFrame | None = None,
                     unit: str = "sample", title: str | None = None) -> go.Figure:
    """Your joules per sample beside published training runs' joules per token, log scale.

    ``j_per_sample``: a number or ``{label: joules}`` (e.g. one per rank count);
    ``measured`` says whether it came from energy counters (drawn solid) or an estimate
    (drawn dashed); the legend says which. Published runs come from
    :func:`gpuviz.energy.at_scale.published_runs` (``runs``): filled where the authors give the
    energy, open where it is GPU-hours x power derived here; their J/token is always
    derived (energy / tokens). ``unit="token"`` says your joules are per token too (joules
    per sample / tokens per sample); with ``"sample"`` the units differ: read the gap in
    orders of magnitude, not as a like-for-like ratio.

    >>> fig = energy_per_token(0.5, measured=True)
    >>> fig.data[-1].name
    'your run: J per sample (measured)'
    """
    if not isinstance(measured, bool):
        raise ValueError(f"measured={measured!r}: True if the joules came from energy counters, "
                         "False if they are an estimate")
    if unit not in ("sample", "token"):
        raise ValueError(f"unit={unit!r}: your joules are per 'sample' or per 'token'")
    mine = _learner(j_per_sample, unit)
    r = at_scale.published_runs() if runs is None else runs
    need = ["model", "j_per_token", "energy_derived", "energy_mwh", "tokens", "source"]
    if not isinstance(r, pd.DataFrame) or any(c not in r.columns for c in need):
        raise ValueError("runs: give gpuviz.energy.at_scale.published_runs()'s table (columns "
                         + ", ".join(need) + ")")
    r = r.sort_values("j_per_token")
    fig = go.Figure()
    for derived in (False, True):
        g = r[r["energy_derived"] == derived]
        if g.empty:
            continue
        name = ("published: J/token, energy derived here (GPU-hours × power)" if derived
                else "published: J/token, energy as the authors report it")
        hover = [f"<b>{html.escape(m)}</b><br>{j:.3g} J per training token (derived)<br>"
                 f"energy {e:,.0f} MWh{' (derived: GPU-hours × W)' if derived else ''}, "
                 f"tokens {t:.3g}<br>source: {html.escape(s)}"
                 for m, j, e, t, s in zip(g["model"], g["j_per_token"], g["energy_mwh"], g["tokens"],
                                          g["source"], strict=True)]
        fig.add_scatter(x=g["j_per_token"], y=g["model"], mode="markers", name=name,
                        marker=dict(size=12, symbol="circle-open" if derived else "circle",
                                    color=_DERIVED if derived else _REPORTED, line=dict(width=2)),
                        hoverinfo="text", hovertext=hover)
    kind = "measured" if measured else "estimated"
    labels = [f"{k} (yours)" for k in mine]
    vals = list(mine.values())
    fig.add_scatter(x=vals, y=labels, mode="markers+text", name=f"your run: J per {unit} ({kind})",
                    marker=dict(size=14, symbol="square" if measured else "square-open",
                                color=_LEARNER, line=dict(width=2, color=_LEARNER)),
                    text=[f"{v:.3g} J" for v in vals], textposition="top center",
                    hoverinfo="text",
                    hovertext=[f"<b>{html.escape(k)}</b><br>{v:.4g} J per {unit} ({kind})"
                               for k, v in zip(labels, vals, strict=True)])
    for v in vals:                                    # a guide line across the published runs
        fig.add_shape(type="line", x0=v, x1=v, y0=0, y1=1, yref="paper", layer="below",
                      opacity=0.4, line=dict(color=_LEARNER, width=1, dash="solid" if measured else "dash"))
    allx = np.concatenate([r["j_per_token"].to_numpy(float), vals])
    lo, hi = math.floor(np.log10(allx.min())) - 0.2, math.ceil(np.log10(allx.max())) + 0.4
    order = list(r["model"]) + labels
    sub = ("published: GPU energy of the final training run / training tokens (derived here); "
           f"yours: {kind}. Log scale" + (": a sample and a token are different units of work"
                                          if unit == "sample" else ""))
    fig.update_layout(title=dict(text=title or f"Your joules per {unit} beside real training runs",
                                 subtitle=dict(text=sub)),
                      template="plotly_white", width=900, height=max(420, 150 + 34 * len(order)),
                      legend=dict(orientation="h", y=-0.14, yanchor="top", x=0),
                      margin=dict(t=100, b=110, l=10), hovermode="closest")
    fig.update_xaxes(type="log", range=[lo, hi], dtick=1,
                     title="joules per token, log scale" if unit == "token"
                     else "joules per token (published) or per sample (yours), log scale")
    fig.update_yaxes(categoryorder="array", categoryarray=order, automargin=True)
    return fig
