"""A planner that needs no Python behind it: a plotly figure over precomputed predictions
(:func:`gpuviz.plan.grid.layout_grid`), for the online book. Buttons pick the model, a slider
the number of GPUs; each (tp, pp) layout is a bar of its modelled step time, by term, and
of its memory per GPU against the GPU's capacity. The live widget
(:func:`gpuviz.widgets.planner`, in JupyterLab) predicts any layout; this one only those
computed beforehand, and says so.

>>> from gpuviz.plan.grid import layout_grid
>>> fig = precomputed_planner(layout_grid(["llama3-8b", "llama3-70b"], [8, 64], 128))
>>> [b.label for b in fig.layout.updatemenus[0].buttons], len(fig.layout.sliders[0].steps)
(['llama3-8b', 'llama3-70b'], 2)
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gpuviz.plan.terms import TIME_TERMS
from gpuviz.plot.plan import _HATCH, TERM_COLORS

# grey, not red: red is the ZeRO-3 term beside it
FITS_COLOR, NO_FIT_COLOR = "#72B7B2", "#7F7F7F"


def _label(r) -> str:
    return f"tp={int(r['tp'])} pp={int(r['pp'])}"


def _panel(rows: pd.DataFrame) -> list[dict]:
    """Each trace's data for one (model, GPU count): the time terms, then the memory of the
    layouts that fit and of those that do not (a trace each: one colour per trace)."""
    if rows.empty or int(rows["tp"].iloc[0]) == 0:
        why = rows["why"].iloc[0] if not rows.empty else "no layout"
        none = {"x": [None], "y": ["fits nowhere"], "customdata": None}
        return [none] * (len(TIME_TERMS) + 1) + [{"x": [0], "y": ["fits nowhere"], "customdata": [why]}]
    rows = rows.sort_values(["tp", "pp"], ascending=[False, False])
    labels = [_label(r) for _, r in rows.iterrows()]
    fits = rows["fits"].to_numpy()
    out = [{"x": [float(f"{v:.4g}") if f else None for v, f in zip(rows[k], fits, strict=True)],
            "y": labels, "customdata": None} for k in TIME_TERMS]
    for want in (True, False):
        out.append({"x": [round(float(v), 2) if f == want else None
                          for v, f in zip(rows["memory_GiB"], fits, strict=True)],
                    "y": labels, "customdata": list(rows["layout"])})
    return out


def precomputed_planner(grid: pd.DataFrame, max_pp: int = 16, title: str | None = None) -> go.Figure:
    """The kernel-free planner of a :func:`gpuviz.plan.grid.layout_grid` table: model buttons,
    a GPU-count slider, every (tp, pp) with pp <= ``max_pp`` as a row of bars (the fastest
    layout of that tp and pp: step time by term; memory per GPU, grey where nothing fits,
    for the layout needing the least).
    Every value is modelled and precomputed; the subtitle says so."""
    need = {"model", "gpus", "tp", "pp", "fits", "memory_GiB", *TIME_TERMS}
    if not isinstance(grid, pd.DataFrame) or not need <= set(grid.columns):
        raise ValueError("grid: give the table gpuviz.plan.grid.layout_grid returns")
    if isinstance(max_pp, bool) or not isinstance(max_pp, int) or max_pp < 1:
        raise ValueError(f"max_pp={max_pp!r}: must be an integer >= 1")
    grid = grid[grid["pp"] <= max_pp]
    models = list(dict.fromkeys(grid["model"]))
    counts = sorted(set(grid["gpus"]))
    cap = grid.attrs.get("capacity_GiB")
    per = len(TIME_TERMS) + 2                     # traces per model
    of = f" of {cap:.1f}" if cap else ""
    panels = {(m, n): _panel(grid[(grid["model"] == m) & (grid["gpus"] == n)])
              for m in models for n in counts}
    start = counts[len(counts) // 2]
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, column_widths=[0.62, 0.38],
                        horizontal_spacing=0.04,
                        subplot_titles=("step time (s)", "GiB per GPU"))
    for i, m in enumerate(models):
        for j, data in enumerate(panels[(m, start)]):
            time_term, fits = j < len(TIME_TERMS), j == len(TIME_TERMS)
            fig.add_trace(go.Bar(
                x=data["x"], y=data["y"], orientation="h", visible=i == 0,
                name=(TIME_TERMS[j] if time_term else "memory per GPU" if fits
                      else "memory, does NOT fit"), legendgroup=str(j),
                customdata=data["customdata"], hovertemplate=(
                    f"<b>%{{y}}</b><br>{TIME_TERMS[j]}: %{{x:.3g}} s" if time_term else
                    f"<b>%{{customdata}}</b><br>%{{x:.1f}}{of} GiB per GPU"
                    + ("" if fits else " (does NOT fit)")) + "<extra>modelled</extra>",
                marker=dict(color=(TERM_COLORS[TIME_TERMS[j]] if time_term else FITS_COLOR if fits
                                   else NO_FIT_COLOR), pattern=_HATCH)), row=1, col=1 if time_term else 2)
    if cap:
        fig.add_vline(x=cap, line=dict(dash="dash", color="black"), row=1, col=2,
                      annotation_text=f"{cap:.0f} GiB", annotation_position="bottom left")

    def update(n: int) -> dict:
        traces = [d for m in models for d in panels[(m, n)]]
        return {k: [d[k] for d in traces] for k in ("x", "y", "customdata")}

    steps = [dict(label=f"{n:,}", method="restyle", args=[update(n)]) for n in counts]
    buttons = [dict(label=m, method="restyle",
                    args=[{"visible": [k // per == i for k in range(per * len(models))]}])
               for i, m in enumerate(models)]
    gpu = grid.attrs.get("gpu", "GPU")
    fig.update_layout(
        barmode="stack", height=840, margin=dict(t=160, l=90, r=20, b=300),
        title=dict(text=title or f"Plan on {gpu}", y=0.985, yanchor="top",
                   subtitle=dict(text=(f"modelled, precomputed; {grid.attrs.get('global_batch', '?')} "
                                       "sequences per step<br>other layouts: Lab 05's live planner "
                                       "(JupyterLab)"))),
        updatemenus=[dict(type="dropdown", direction="down", buttons=buttons, showactive=True,
                          x=0, xanchor="left", y=1.0, yanchor="bottom", pad=dict(t=0, b=36))],
        sliders=[dict(active=counts.index(start), steps=steps, currentvalue=dict(prefix="GPUs: "),
                      x=0, len=1.0, y=-0.06, yanchor="top", pad=dict(t=30))],
        legend=dict(orientation="h", x=0, y=-0.34, yanchor="top", groupclick="toggleitem"))
    fig.update_yaxes(type="category", autorange="reversed", title_text="layout", row=1, col=1)
    return fig
