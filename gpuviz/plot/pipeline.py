"""Figures of a pipeline: the schedule of every stage and micro-batch, and the bubble.

>>> from gpuviz import plot
>>> plot.pipeline_schedule(run, step=1)                              # doctest: +SKIP
>>> from gpuviz.parallel import memory
>>> plot.pipeline_bubble(memory.bubble_sweep(run))                   # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from gpuviz.plot.units import binary_bytes as _bytes
from gpuviz.plot.units import check_df as _check_df
from gpuviz.plot.units import duration as _dur
from gpuviz.run.categories import COLORS

__all__ = ["pipeline_schedule", "pipeline_bubble"]


# -- pipeline schedule ---------------------------------------------------------------------------

_F, _B = COLORS["compute"], "#2D4D73"          # forward: compute; backward: a darker compute


def pipeline_schedule(run, *, step: int = 0, config: int | None = None,
                      title: str | None = None) -> go.Figure:
    """The pipeline's measured schedule: one row per stage, each micro-batch's forward and
    backward a labelled box (F3, B3); waiting for a neighbour (the bubble) in grey, sends
    on a thin comm lane below, the optimizer step in green.

    The classic picture of GPipe (Huang et al. 2019) and 1F1B (Narayanan et al. 2021), drawn
    from the trace of a ``gpipe`` or ``1f1b`` run of :mod:`gpuviz.workloads.parallelism`:
    ``step`` picks the measured step (0: the first after warm-up), ``config`` the
    configuration of a sweep (default: the first pipeline one). Each row's label gives the
    stage's measured bubble (:func:`gpuviz.parallel.pipeline.measured_bubble`); the
    subtitle the formula's (p-1)/(m+p-1).

    >>> pipeline_schedule(run, step=0)                                  # doctest: +SKIP
    """
    from gpuviz.parallel.pipeline import bubble_fraction
    from gpuviz.parallel.scaling import step_table

    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step={step!r}: give the index of a measured step, an integer >= 0")
    st = step_table(run)
    pipes = st[st["strategy"].isin(("gpipe", "1f1b")) & ~st["warmup"].astype(bool)]
    have = sorted(pipes["config"].unique().tolist())
    if not have:
        raise ValueError(f"run={run.path}: no measured gpipe or 1f1b step; run the workload with "
                         "strategy='gpipe' or '1f1b'")
    if config is None:
        config = have[0]
    if config not in have:
        raise ValueError(f"config={config!r}: the pipeline configurations of this run are {have}")
    mine = pipes[pipes["config"] == config]
    steps = sorted(mine["step"].unique().tolist())
    if step >= len(steps):
        raise ValueError(f"step={step}: configuration {config} has {len(steps)} measured steps")
    s = steps[step]
    ranks = sorted(mine.loc[mine["step"] == s, "rank"].tolist())
    sp = run.spans[(run.spans["step"] == s) & run.spans["rank"].isin(ranks)]
    t0 = float(sp["start"].min())
    row = {r: i for i, r in enumerate(ranks)}
    info = mine.iloc[0]
    p, m = len(ranks), int(info["micro_batches"])
    fig = go.Figure()

    def boxes(d, name, colour, y_off=0.0, width=0.6, text=None, legend=True, **marker):
        if d.empty:
            return
        hover = [f"<b>{html_name}</b><br>rank {r} (stage {row[r]}), step {s}<br>{_dur(du)} "
                 f"from {(a - t0) * 1e3:.2f} ms" + (f"<br>{_bytes(b)}" if pd.notna(b) else "")
                 for html_name, r, du, a, b in zip(d["label"], d["rank"], d["dur"], d["start"],
                                                   d["bytes"], strict=True)]
        fig.add_bar(y=d["rank"].map(row) + y_off, x=d["dur"] * 1e3, base=(d["start"] - t0) * 1e3,
                    orientation="h", width=width, name=name, showlegend=legend, text=text,
                    textposition="inside", insidetextanchor="middle", textangle=0,
                    textfont=dict(color="white", size=11), hoverinfo="text", hovertext=hover,
                    marker=dict(color=colour, line=dict(width=0.8, color="white"), **marker))

    sp = sp.assign(label=sp["name"], mb=[a.get("microbatch") for a in sp["args"]])
    main, side = sp[sp["lane"] == "main"], sp[sp["lane"] == "comm"]
    for op, colour in (("forward", _F), ("backward", _B)):
        d = main[(main["name"] == op) & main["mb"].notna()]
        d = d.assign(label=[f"{op} of micro-batch {int(i)}" for i in d["mb"]])
        boxes(d, f"{op} (F0, F1... / B0, B1...: micro-batch)" if op == "forward" else op, colour,
              text=[f"{op[0].upper()}{int(i)}" for i in d["mb"]])
    rest = main[~(main["name"].isin(("forward", "backward")) & main["mb"].notna())]
    for cat in ("idle", "optimizer", "comm", "data", "io", "compute"):
        d = rest[rest["cat"] == cat]
        label = {"idle": "waiting for a neighbour (bubble)", "comm": "comm (loss broadcast)",
                 "optimizer": "optimizer step", "data": "load batch"}.get(cat, cat)
        boxes(d, label, COLORS[cat])
    boxes(side.assign(label=[f"{n} (micro-batch {'' if pd.isna(i) else int(i)})"
                             for n, i in zip(side["name"], side["mb"], strict=True)]),
          "sends (comm lane, beside compute)", COLORS["comm"], y_off=0.42, width=0.14)
    bub = _stage_bubbles(run, s, ranks)
    labels = [f"stage {i} (rank {r})" + (f"<br>bubble {bub[r]:.0%}" if r in bub else "")
              for i, r in enumerate(ranks)]
    predicted = bubble_fraction(p, m)
    sub = (f"{info['strategy']} schedule, {p} stages, m = {m} micro-batches, step {s} (measured). "
           f"Formula (p-1)/(m+p-1) = {predicted:.0%} (GPipe, Huang et al. 2019)"
           + (f"; measured, mean over stages: {np.mean(list(bub.values())):.0%}" if bub else ""))
    fig.update_layout(title=dict(text=title or f"Pipeline schedule: {info['strategy']}, as it ran",
                                 subtitle=dict(text=sub)),
                      template="plotly_white", barmode="overlay", hovermode="closest",
                      height=max(360, 220 + 80 * p), uniformtext=dict(minsize=8, mode="hide"),
                      legend=dict(orientation="h", yanchor="top", y=-0.3, x=0),
                      margin=dict(t=100, b=140, l=110, r=20))
    fig.update_xaxes(title="time from the start of the step (ms)", showline=True, linecolor="#888",
                     rangemode="tozero")
    fig.update_yaxes(tickvals=list(range(p)), ticktext=labels, range=[p - 0.35, -0.5],
                     showgrid=False, zeroline=False)
    return fig


_SCHEDULE = {"gpipe": "#3B5B7E", "1f1b": "#B85C00"}


def pipeline_bubble(df: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """The pipeline's bubble against the number of micro-batches: measured per schedule
    (solid; bars: the least and the most idle stage) beside GPipe's formula
    (p-1)/(m+p-1) (dashed, Huang et al. 2019).

    ``df`` is :func:`gpuviz.parallel.memory.bubble_sweep`'s table.

    >>> t = pd.DataFrame({"schedule": "1f1b", "stages": 2, "micro_batches": [2, 4, 8],
    ...                   "measured": [0.4, 0.26, 0.2], "predicted": [1 / 3, 1 / 5, 1 / 9]})
    >>> [t.name for t in pipeline_bubble(t).data]
    ['1f1b: measured', 'formula (p-1)/(m+p-1), 2 stages (predicted)']
    """
    _check_df(df, "df", ["schedule", "stages", "micro_batches", "measured", "predicted"],
              "gpuviz.parallel.memory.bubble_sweep")
    fig = go.Figure()
    for sched, g in df.groupby("schedule", sort=False):
        g = g.sort_values("micro_batches")
        colour = _SCHEDULE.get(sched, "#555")
        err = None
        if {"measured_lo", "measured_hi"} <= set(g):
            err = dict(type="data", symmetric=False, array=g["measured_hi"] - g["measured"],
                       arrayminus=g["measured"] - g["measured_lo"], thickness=1.2, width=4, color=colour)
        hover = [f"<b>{sched}</b>, {int(r['stages'])} stages, m = {int(r['micro_batches'])}<br>"
                 f"measured bubble {r['measured']:.1%} (predicted {r['predicted']:.1%}, ratio "
                 f"{r['measured'] / r['predicted']:.2f})" if r["predicted"] > 0 else
                 f"<b>{sched}</b>, m = {int(r['micro_batches'])}: measured {r['measured']:.1%}"
                 for _, r in g.iterrows()]
        if "step_ms" in g:
            hover = [h + f"<br>step {ms:.1f} ms" for h, ms in zip(hover, g["step_ms"], strict=True)]
        fig.add_scatter(x=g["micro_batches"], y=g["measured"], mode="lines+markers",
                        name=f"{sched}: measured", line=dict(color=colour, width=3),
                        marker=dict(size=10, color=colour), error_y=err, hoverinfo="text",
                        hovertext=hover)
        if "replayed" in g:
            fig.add_scatter(x=g["micro_batches"], y=g["replayed"], mode="lines+markers",
                            name=f"{sched}: replayed with this run's stage times and hops (predicted)",
                            line=dict(color=colour, width=1.5, dash="dot"),
                            marker=dict(size=11, symbol="diamond-open", color=colour), hoverinfo="text",
                            hovertext=[f"<b>{sched}</b>, m = {int(r['micro_batches'])}: the schedule replayed "
                                       f"with this run's measured stage times gives {r['stages_only']:.1%}, "
                                       f"adding its hops and per-operation costs {r['replayed']:.1%}"
                                       for _, r in g.iterrows()])
    for p, g in df.groupby("stages"):
        ms = np.unique(np.r_[g["micro_batches"].to_numpy(int)])
        m = np.unique(np.r_[ms, np.geomspace(ms.min(), ms.max(), 40)])
        y = (p - 1) / (m + p - 1)
        fig.add_scatter(x=m, y=y, mode="lines", name=f"formula (p-1)/(m+p-1), {p} stages (predicted)",
                        line=dict(color="#222", width=2, dash="dash"), hoverinfo="text",
                        hovertext=[f"formula: (p-1)/(m+p-1) = {v:.1%} for p = {p}, m = {x:g}"
                                   for x, v in zip(m, y, strict=True)])
    ticks = sorted(df["micro_batches"].astype(int).unique().tolist())
    fig.update_layout(title=dict(text=title or "Pipeline bubble against the number of micro-batches",
                                 subtitle=dict(text="solid: measured (mean over stages, median step;<br>"
                                               "bars: least and most idle stage)<br>dashed: GPipe's formula "
                                               "(Huang et al. 2019)" + ("<br>dotted diamonds: the schedule "
                                               "replayed with this run's times" if "replayed" in df else ""))),
                      template="plotly_white", height=520, hovermode="closest",
                      legend=dict(orientation="h", yanchor="top", y=-0.2, x=0),
                      margin=dict(t=175, b=110, l=70, r=20))
    fig.update_xaxes(type="log", tickvals=ticks, ticktext=[str(t) for t in ticks],
                     title="micro-batches per step (m)", showline=True, linecolor="#888")
    fig.update_yaxes(title="bubble: share of the step a stage idles", tickformat=".0%",
                     rangemode="tozero")
    return fig


def _stage_bubbles(run, step: int, ranks: list[int]) -> dict[int, float]:
    """Each rank's measured bubble in ``step`` (empty if the pipeline module cannot say)."""
    from dataclasses import replace

    from gpuviz.parallel.pipeline import measured_bubble

    sub = replace(run, spans=run.spans[(run.spans["step"] == step) & run.spans["rank"].isin(ranks)])
    b = measured_bubble(sub)
    return {int(r): float(v) for r, v in zip(b["rank"], b["bubble"], strict=True)}
