"""Synchronisation figures: waiting against the number of ranks, stragglers on the
timeline, and relaxed synchronisation (loss against time and steps, comm per step).

>>> from gpuviz import plot
>>> from gpuviz.sync import stragglers, relaxed
>>> plot.waiting_vs_ranks(stragglers.waiting_vs_ranks())                   # doctest: +SKIP
>>> plot.stragglers(run, steps=range(10, 20))                               # doctest: +SKIP
>>> plot.relaxed_sync(relaxed.compare_sync())                               # doctest: +SKIP
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gpuviz.plot.units import run_label
from gpuviz.run.categories import COLORS

__all__ = ["waiting_vs_ranks", "stragglers", "relaxed_sync"]

_MEASURED = "#3B5B7E"
_PREDICTED = "#B85C00"
_DRAWN = "#7F7F7F"
_STRAGGLER = "#D62728"
#: One colour per synchronisation mode (not a category colour: panel 3 uses those).
MODE_COLORS = {"sync": "#222222", "accumulate": "#E45756", "local_sgd": "#2CA02C"}
MODE_LABELS = {"sync": "sync every step", "accumulate": "gradient accumulation",
               "local_sgd": "local SGD"}
_SHORT = {"sync": "sync", "accumulate": "accumulate", "local_sgd": "local SGD"}


def waiting_vs_ranks(df: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """The mean wait per rank per step against the number of ranks: measured (solid,
    bars: +-2 standard errors over steps) beside the order statistics' E[max] - E[X]
    (dashed, drawn to twice the largest rank count), the wait the drawn delays imply
    (open diamonds) and the barrier's own cost (the floor, dotted).

    ``df`` is :func:`gpuviz.sync.stragglers.waiting_vs_ranks`' table (or
    :func:`~gpuviz.sync.stragglers.wait_summary` rows put together).

    >>> spec = {"kind": "jitter", "dist": "exponential", "mean_s": 0.01, "ranks": None, "seed": 0}
    >>> df = pd.DataFrame({"nproc": [2, 4], "steps": [100, 100], "wait_ms": [6.0, 12.0],
    ...                    "wait_ms_se": [0.4, 0.5], "floor_ms": [0.5, 1.0],
    ...                    "waited_ms": [5.5, 11.0], "drawn_ms": [5.2, 10.6],
    ...                    "predicted_ms": [5.0, 10.83], "spec": [spec, spec]})
    >>> [t.name for t in waiting_vs_ranks(df).data][:2]
    ['measured: mean wait for the others', 'predicted: E[max of N] - E[X] (order statistics)']
    """
    from gpuviz.sync.order_stats import expected_wait

    need = ["nproc", "waited_ms", "predicted_ms", "spec"]
    _check(df, "df", need, "gpuviz.sync.stragglers.waiting_vs_ranks()")
    d = df.sort_values("nproc")
    spec = d["spec"].iloc[0]
    n_max = int(d["nproc"].max())
    grid = np.arange(1, 2 * n_max + 1)
    curve = np.array([expected_wait(spec, int(n)) for n in grid]) * 1e3
    fig = go.Figure()
    err = None
    if "wait_ms_se" in d:
        err = dict(type="data", array=2 * d["wait_ms_se"], thickness=1.5, width=6, color=_MEASURED)
    fig.add_scatter(x=d["nproc"], y=d["waited_ms"], mode="lines+markers", error_y=err,
                    name="measured: mean wait for the others", legendrank=1,
                    line=dict(color=_MEASURED, width=2.5), marker=dict(size=9, color=_MEASURED),
                    hoverinfo="text", hovertext=[_wait_hover(r) for _, r in d.iterrows()])
    fig.add_scatter(x=grid, y=curve, mode="lines", name="predicted: E[max of N] - E[X] (order statistics)",
                    legendrank=2, line=dict(color=_PREDICTED, width=2, dash="dash"), hoverinfo="text",
                    hovertext=[f"<b>predicted</b> for N = {n}: {c:.2f} ms<br>E[max of N] - E[X] for "
                               f"{_spec_text(spec)}" for n, c in zip(grid, curve, strict=True)])
    if "drawn_ms" in d and d["drawn_ms"].notna().any():
        fig.add_scatter(x=d["nproc"], y=d["drawn_ms"], mode="markers", legendrank=3,
                        name="the delays this run drew: mean of (max - mean) per step",
                        marker=dict(size=15, symbol="diamond-open", color=_DRAWN, line=dict(width=2)),
                        hoverinfo="text",
                        hovertext=[f"<b>from the drawn delays</b>, N = {int(r['nproc'])}: "
                                   f"{r['drawn_ms']:.2f} ms<br>(no timing: what the injected sleeps "
                                   "imply)" for _, r in d.iterrows()])
    if "floor_ms" in d:
        fig.add_scatter(x=d["nproc"], y=d["floor_ms"], mode="lines+markers", legendrank=4,
                        name="measured: the barrier's own cost (the last arrival's wait)",
                        line=dict(color=COLORS["idle"], width=1.5, dash="dot"),
                        marker=dict(size=6, color=COLORS["idle"]), hoverinfo="text",
                        hovertext=[f"<b>floor</b>, N = {int(r['nproc'])}: {r['floor_ms']:.2f} ms, "
                                   "left out of the measured wait" for _, r in d.iterrows()])
    ticks = [int(2**k) for k in range(int(np.log2(grid[-1])) + 1)]
    sub = (f"every rank sleeps a random delay each step ({_spec_text(spec)}), then all meet in a "
           "barrier<br>solid: measured (bars: +-2 standard errors over steps), the barrier's own "
           "cost taken off; dashed: predicted")
    fig.update_layout(title=dict(text=title or "Waiting for the slowest: the wait grows with the "
                                 "number of ranks", subtitle=dict(text=sub)),
                      template="plotly_white", hovermode="closest", height=500,
                      legend=dict(orientation="h", yanchor="top", y=-0.18, x=0),
                      margin=dict(t=110, b=140, l=70, r=20))
    fig.update_xaxes(type="log", title="ranks N (log scale)", tickvals=ticks,
                     ticktext=[str(t) for t in ticks], showline=True, linecolor="#888")
    fig.update_yaxes(title="wait per rank per step (ms)", rangemode="tozero", showline=True,
                     linecolor="#888")
    return fig


def stragglers(run, *, ranks=None, steps=None, title: str | None = None) -> go.Figure:
    """:func:`gpuviz.plot.timeline` of ``run`` with the slowest rank of each step marked:
    a red triangle where the last rank arrived at the collective; hover says how long
    the others waited for it (:func:`gpuviz.sync.stragglers.stragglers`). Injected delays
    (:mod:`gpuviz.sync.inject`, sleeps traced as compute) are hatched.

    >>> fig = stragglers(run, steps=range(5, 15))                  # doctest: +SKIP
    """
    from gpuviz.plot.spans import timeline
    from gpuviz.sync.stragglers import stragglers as find

    fig = timeline(run, ranks=ranks, steps=steps,
                   title=title or f"Stragglers in {run_label(run)}: the last rank to arrive, step by step")
    st = find(run)
    row_of = _rows(fig)
    st = st[st["rank"].isin(list(row_of))]
    if steps is not None:
        from gpuviz.plot.spans import _as_ints

        st = st[st["step"].isin(_as_ints(steps, "steps"))]
    _overlay_injected(fig, run, row_of, steps)
    text = [f"<b>step {int(s)}: rank {int(r)} arrived last</b> at {a:.4f} s<br>the others waited "
            f"{late * 1e3:.2f} ms for it (mean)<br>the next-latest rank was {m * 1e3:.2f} ms earlier"
            for s, r, a, late, m in zip(st["step"], st["rank"], st["arrival"], st["lateness_s"],
                                        st["margin_s"], strict=True)]
    fig.add_scatter(x=st["arrival"], y=st["rank"].map(row_of).to_numpy(float) - 0.36, mode="markers",
                    name="slowest rank of the step (last to arrive)", legendrank=800,
                    marker=dict(symbol="triangle-down", size=11, color=_STRAGGLER,
                                line=dict(width=1, color="white")), hoverinfo="text", hovertext=text)
    counts = st["rank"].value_counts()
    if len(counts):
        top = counts.index[0]
        note = (f"▼ slowest rank per step: rank {top} in {counts.iloc[0]} of {len(st)} steps"
                + (f", then rank {counts.index[1]} ({counts.iloc[1]})" if len(counts) > 1 else ""))
        sub = fig.layout.title.subtitle.text
        fig.update_layout(title=dict(subtitle=dict(text=f"{sub}<br>{note}")),
                          margin=dict(t=fig.layout.margin.t + 18))
    return fig


def relaxed_sync(df: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """Three panels from :func:`gpuviz.sync.relaxed.compare_sync`'s table: the held-out loss
    against training time and against steps, one line per mode, and each mode's time per
    step split into computing, waiting and communicating. Sync's line is drawn wider, so
    that a mode which follows it step for step (local SGD often does) leaves it visible.

    >>> df = pd.DataFrame({"mode": ["sync"] * 3, "period": 1, "step": [0, 1, 2],
    ...                    "synced": [False, True, True], "step_s": [0, .01, .01],
    ...                    "wall_s": [0, .01, .02], "comm_s": [0, .004, .004],
    ...                    "wait_s": [0, .001, .001], "loss": [.5, np.nan, .4]})
    >>> fig = relaxed_sync(df)
    >>> [a.text for a in fig.layout.annotations][:2]
    ['held-out loss against training time', 'held-out loss against steps']
    """
    _check(df, "df", ["mode", "step", "wall_s", "loss", "comm_s", "wait_s", "step_s"],
           "gpuviz.sync.relaxed.compare_sync()")
    fig = make_subplots(rows=1, cols=3, column_widths=[0.37, 0.37, 0.26], horizontal_spacing=0.07,
                        subplot_titles=("held-out loss against training time",
                                        "held-out loss against steps", "time per step"))
    modes = list(dict.fromkeys(df["mode"]))
    for i, mode in enumerate(modes):
        d = df[df["mode"] == mode].sort_values("step")
        ev = d.dropna(subset=["loss"])
        period = int(d["period"].iloc[0]) if "period" in d and pd.notna(d["period"].iloc[0]) else None
        label = MODE_LABELS.get(mode, mode) + (_every(mode, period) if period else "")
        colour = MODE_COLORS.get(mode, "#777")
        syncs = d["synced"].cumsum() if "synced" in d else pd.Series(np.nan, index=d.index)
        hover = [f"<b>{label}</b><br>step {int(s)}, {w:.3f} s of training<br>held-out loss {lo:.4f}"
                 f"<br>{int(n)} synchronisations so far" for s, w, lo, n in
                 zip(ev["step"], ev["wall_s"], ev["loss"], syncs[ev.index].fillna(0), strict=True)]
        for col, x, title_x in ((1, ev["wall_s"], "training time (s)"), (2, ev["step"], "step")):
            fig.add_scatter(x=x, y=ev["loss"], mode="lines+markers", name=f"{label} (measured)",
                            legendgroup=mode, showlegend=col == 1, legendrank=10 + i,
                            line=dict(color=colour, width=4.5 if mode == "sync" else 2.2),
                            marker=dict(size=4, color=colour),
                            hoverinfo="text", hovertext=hover, row=1, col=col)
            fig.update_xaxes(title=title_x, row=1, col=col)
    per = (df[df["step"] > 0].groupby("mode", sort=False)[["step_s", "comm_s", "wait_s"]].mean() * 1e3)
    per = per.reindex(modes)
    per["compute"] = (per["step_s"] - per["comm_s"] - per["wait_s"]).clip(lower=0)
    names = [_SHORT.get(m, m) + (_every(m, int(p)).replace(", ", "<br>") if pd.notna(p) else "")
             for m, p in zip(modes, _periods(df, modes), strict=True)]
    for col, label, colour in (("compute", "computing (and the rest of the step)", COLORS["compute"]),
                               ("wait_s", "waiting for the others", COLORS["idle"]),
                               ("comm_s", "communicating", COLORS["comm"])):
        fig.add_bar(x=names, y=per[col], name=label, marker_color=colour, legendrank=50,
                    legendgroup=col, hoverinfo="text", row=1, col=3,
                    hovertext=[f"<b>{m.replace('<br>', ', ')}</b>: {label}<br>{v:.2f} ms per step (mean over steps and "
                               f"ranks)<br>step {t:.2f} ms" for m, v, t in
                               zip(names, per[col], per["step_s"], strict=True)])
    fig.update_layout(barmode="stack", template="plotly_white", hovermode="closest", height=480,
                      title=dict(text=title or "Syncing less: gradient accumulation and local SGD",
                                 subtitle=dict(text="all measured on the same model and data; loss "
                                               "of the averaged model on a fixed held-out batch; "
                                               "training time leaves the evaluation out")),
                      legend=dict(orientation="h", yanchor="top", y=-0.2, x=0),
                      margin=dict(t=100, b=120, l=70, r=20))
    fig.update_yaxes(title="held-out loss (MSE)", row=1, col=1)
    fig.update_yaxes(title="ms per step (mean)", row=1, col=3)
    fig.update_xaxes(showline=True, linecolor="#888")
    fig.update_yaxes(showline=True, linecolor="#888")
    return fig


def _overlay_injected(fig: go.Figure, run, row_of: dict, steps) -> None:
    """Hatch the ``injected delay`` spans (a sleep, traced as compute) over the timeline."""
    sp = run.spans
    d = sp[(sp["name"] == "injected delay") & (sp["lane"] == "main") & sp["rank"].isin(list(row_of))]
    if steps is not None:
        from gpuviz.plot.spans import _as_ints

        d = d[d["step"].isin(_as_ints(steps, "steps"))]
    if d.empty:
        return
    fig.add_bar(y=d["rank"].map(row_of).to_numpy(float), x=d["dur"], base=d["start"], width=0.5,
                orientation="h", name="injected delay (a sleep, hatched)", legendrank=790,
                marker=dict(color="rgba(0,0,0,0)", line=dict(width=0),
                            pattern=dict(shape="/", fgcolor="#1B2F45", size=7, solidity=0.2)),
                hoverinfo="text",
                hovertext=[f"<b>injected delay</b>, rank {r}, step {s}<br>slept {dur * 1e3:.2f} ms"
                           for r, s, dur in zip(d["rank"], d["step"], d["dur"], strict=True)])


def _periods(df: pd.DataFrame, modes: list[str]) -> list:
    if "period" not in df:
        return [np.nan] * len(modes)
    return [df.loc[df["mode"] == m, "period"].iloc[0] for m in modes]


def _every(mode: str, period: int) -> str:
    if mode == "accumulate":
        return f", k = {period}"
    if mode == "local_sgd":
        return f", H = {period}"
    return ""


def _rows(fig: go.Figure) -> dict[int, int]:
    """rank -> row of a timeline figure, read from its y-axis labels ("rank 3")."""
    out = {}
    for v, t in zip(fig.layout.yaxis.tickvals, fig.layout.yaxis.ticktext, strict=True):
        m = re.match(r"rank (\d+)", str(t))
        if m:
            out[int(m.group(1))] = int(v)
    return out


def _spec_text(spec: dict) -> str:
    d = spec.get("dist")
    ms = {k: spec[k] * 1e3 for k in ("mean_s", "low_s", "high_s", "std_s") if k in spec}
    if d == "exponential":
        return f"exponential, mean {ms['mean_s']:g} ms"
    if d == "uniform":
        return f"uniform {ms['low_s']:g}-{ms['high_s']:g} ms"
    if d == "normal":
        return f"normal {ms['mean_s']:g} +- {ms['std_s']:g} ms, cut at 0"
    return f"lognormal, mean {ms.get('mean_s', 0):g} ms, sigma {spec.get('sigma', 0):g}"


def _wait_hover(r) -> str:
    text = (f"<b>measured</b>, N = {int(r['nproc'])}: {r['waited_ms']:.2f} ms per rank per step"
            f"<br>predicted {r['predicted_ms']:.2f} ms (ratio {r['waited_ms'] / r['predicted_ms']:.2f})"
            if r["predicted_ms"] > 0 else f"<b>measured</b>: {r['waited_ms']:.2f} ms")
    if "wait_ms" in r and "floor_ms" in r:
        text += (f"<br>raw wait {r['wait_ms']:.2f} ms minus the barrier's own cost "
                 f"{r['floor_ms']:.2f} ms")
    if "wait_ms_se" in r:
        text += f"<br>standard error {r['wait_ms_se']:.2f} ms"
    if "steps" in r:
        text += f"<br>{int(r['steps'])} steps"
    return text


def _check(df, name: str, cols: list[str], source: str) -> None:
    if not isinstance(df, pd.DataFrame) or df.empty:
        raise ValueError(f"{name}: give a non-empty DataFrame ({source})")
    missing = [c for c in cols if c not in df]
    if missing:
        raise ValueError(f"{name}: missing columns {missing}; it has {list(df.columns)} "
                         f"(make it with {source})")
