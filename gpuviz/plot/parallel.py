"""Figures of the parallel strategies: scaling, memory per rank, the pipeline schedule, timelines.

Data first (the tables of :mod:`gpuviz.scaling`, or runs), roles as keywords, a
``go.Figure`` back, never shown. Measured values are solid; ideal and predicted ones are
dashed or hollow, and the legend says which.

>>> from gpuviz import scaling, plot
>>> t = scaling.measure_scaling("ddp", ranks=(1, 2, 4), mode="both")      # doctest: +SKIP
>>> plot.scaling(t)                                                        # doctest: +SKIP
>>> plot.memory(scaling.memory_table({"ddp": ddp_run, "zero3": zero_run}))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gpuviz.categories import COLORS
from gpuviz.plot.units import binary_bytes as _bytes
from gpuviz.plot.units import duration as _dur

__all__ = ["scaling", "memory", "pipeline_schedule", "pipeline_bubble", "timelines"]

_MODE = {"strong": ("#3B5B7E", "strong scaling (same global batch)"),
         "weak": ("#B85C00", "weak scaling (same batch per rank)")}
#: Kinds of memory drawn in the category colours: weights as compute, gradients a lighter
#: blue, optimizer state as the optimizer, activations (made from the data) as data.
MEMORY_COLORS = {"params": COLORS["compute"], "grads": "#9ECAE9", "optimizer": COLORS["optimizer"],
                 "activations": COLORS["data"], "comm buffers": COLORS["comm"]}
_MIB = 2**20


# -- scaling -------------------------------------------------------------------------------------

def scaling(df: pd.DataFrame, *, y: str = "both", title: str | None = None) -> go.Figure:
    """Throughput and parallel efficiency against the number of ranks, measured (solid)
    beside ideal linear scaling (dashed).

    ``df`` is :func:`gpuviz.scaling.scaling_table`'s table (one or both modes, one or more
    strategies); ``y``: "tokens_per_s", "efficiency" or "both" (side by side). A ``single``
    strategy in the table (``baseline=True``) is drawn thin with hollow markers: the same
    work per rank with no communication, what the machine's cores allow. A dotted line
    marks the machine's core count: beyond it, processes share cores.

    >>> t = pd.DataFrame({"mode": "strong", "strategy": "ddp", "ranks": [1, 2, 4],
    ...     "step_ms": [100.0, 60.0, 70.0], "tokens_per_s": [10240.0, 17067.0, 14629.0],
    ...     "ideal_tokens_per_s": [10240.0, 20480.0, 40960.0], "speedup": [1, 1.67, 1.43],
    ...     "efficiency": [1, 0.83, 0.36], "batch": 16, "per_rank_batch": [16, 8, 4], "cores": 2})
    >>> [t.name for t in scaling(t, y="efficiency").data][:2]
    ['ddp, strong scaling (same global batch): measured', 'ideal (linear scaling)']
    """
    panels = {"both": ["tokens_per_s", "efficiency"], "tokens_per_s": ["tokens_per_s"],
              "efficiency": ["efficiency"]}
    if y not in panels:
        raise ValueError(f"y={y!r}: use 'tokens_per_s', 'efficiency' or 'both'")
    need = ["mode", "strategy", "ranks", "tokens_per_s", "ideal_tokens_per_s", "efficiency"]
    _check_df(df, "df", need, "gpuviz.scaling.scaling_table")
    if bad := sorted(set(df["mode"]) - set(_MODE)):
        raise ValueError(f"df: mode {bad} is not 'strong' or 'weak'")
    cols = panels[y]
    names = {"tokens_per_s": "throughput (tokens/s)", "efficiency": "parallel efficiency"}
    fig = make_subplots(rows=1, cols=len(cols), horizontal_spacing=0.1,
                        subplot_titles=[names[c] for c in cols])
    ranks = sorted(df["ranks"].unique().tolist())
    for j, col in enumerate(cols, start=1):
        for (mode, strategy), g in df.groupby(["mode", "strategy"], sort=False):
            g = g.sort_values("ranks")
            colour, what = _MODE[mode]
            base = strategy == "single"
            label = (f"every rank alone, no communication ({mode}): measured" if base
                     else f"{strategy}, {what}: measured")
            fig.add_scatter(x=g["ranks"], y=g[col], mode="lines+markers", name=label,
                            legendgroup=f"{mode} {strategy}", showlegend=j == 1,
                            line=dict(color=colour, width=1.5 if base else 3),
                            marker=dict(size=8 if base else 10, color=colour,
                                        symbol="diamond-open" if base else "circle",
                                        line=dict(width=2, color=colour)),
                            hoverinfo="text", hovertext=_scaling_hover(g, label), row=1, col=j)
            if not base:
                ideal = g["ideal_tokens_per_s"] if col == "tokens_per_s" else np.ones(len(g))
                fig.add_scatter(x=g["ranks"], y=ideal, mode="lines", name="ideal (linear scaling)",
                                legendgroup="ideal", showlegend=j == 1 and mode == df["mode"].iloc[0]
                                and strategy == df["strategy"].iloc[0],
                                line=dict(color=colour, width=1.5, dash="dash"), hoverinfo="text",
                                hovertext=[f"<b>ideal</b>, {mode} scaling, {n} ranks: "
                                           + (f"{v:,.0f} tokens/s" if col == "tokens_per_s" else "100%")
                                           for n, v in zip(g["ranks"], ideal, strict=True)],
                                row=1, col=j)
        fig.update_xaxes(type="log", tickvals=ranks, ticktext=[str(r) for r in ranks],
                         title="ranks (processes)", showline=True, linecolor="#888", row=1, col=j)
        if col == "efficiency":
            top = max(1.1, float(df["efficiency"].max()) * 1.1)
            fig.update_yaxes(title="efficiency (speedup / ranks)", tickformat=".0%",
                             range=[0, top], row=1, col=j)
        else:
            fig.update_yaxes(title="tokens per second (all ranks)", rangemode="tozero", row=1, col=j)
    cores = df["cores"].dropna() if "cores" in df else pd.Series([], dtype=float)
    sub = "solid: measured (median step after warm-up); dashed: ideal linear scaling"
    if len(cores) and (n := int(cores.iloc[0])) < max(ranks):
        for j in range(1, len(cols) + 1):
            fig.add_vline(x=n, line=dict(color="#777", dash="dot", width=1), row=1, col=j)
            fig.add_annotation(x=np.log10(n), y=0.02, xref=f"x{j if j > 1 else ''}",
                               yref=f"y{j if j > 1 else ''} domain", xanchor="left", yanchor="bottom",
                               text=f" {n} cores", showarrow=False, font=dict(size=11, color="#555"))
        sub += f"<br>this machine has {n} cores: beyond the dotted line, processes share them"
    fig.update_layout(title=dict(text=title or "How training speed scales with the number of ranks",
                                 subtitle=dict(text=sub)),
                      template="plotly_white", height=480, hovermode="closest",
                      legend=dict(orientation="h", yanchor="top", y=-0.2, x=0),
                      margin=dict(t=130, b=120, l=70, r=20))
    return fig


def _scaling_hover(g: pd.DataFrame, label: str) -> list[str]:
    out = []
    for _, r in g.iterrows():
        text = f"<b>{label}</b><br>{int(r['ranks'])} ranks"
        if "batch" in r and pd.notna(r.get("batch")):
            text += f", global batch {r['batch']:g}"
            if "per_rank_batch" in r and pd.notna(r.get("per_rank_batch")):
                text += f" ({r['per_rank_batch']:g} per rank)"
        if "step_ms" in r:
            text += f"<br>step {r['step_ms']:.1f} ms"
            if "step_ms_lo" in r and pd.notna(r.get("step_ms_lo")):
                text += f" (25th-75th percentile {r['step_ms_lo']:.1f}-{r['step_ms_hi']:.1f} ms)"
        text += f"<br>{r['tokens_per_s']:,.0f} tokens/s (ideal {r['ideal_tokens_per_s']:,.0f})"
        if "speedup" in r:
            text += f"<br>speedup {r['speedup']:.2f}x"
        text += f", efficiency {r['efficiency']:.0%}"
        out.append(text)
    return out


# -- memory --------------------------------------------------------------------------------------

def memory(df: pd.DataFrame, *, kinds=None, title: str | None = None) -> go.Figure:
    """Bytes per rank, stacked by kind (params, grads, optimizer, activations...), one bar
    per strategy (or per strategy and rank); ZeRO's formula for the model state (params +
    grads + optimizer) as a black line where one applies (data parallel and ZeRO).

    ``df`` is :func:`gpuviz.scaling.memory_table`'s table (``per_rank=True``: one bar per
    rank, grouped by strategy). ``kinds`` picks and orders the kinds to stack (default:
    all present). Hover shows the exact bytes, the range over ranks and the prediction.

    >>> t = pd.DataFrame({"label": "ddp", "strategy": "ddp", "ranks": 2,
    ...     "kind": ["params", "grads", "optimizer"], "bytes": [4e6, 4e6, 8e6],
    ...     "predicted": [4e6, 4e6, 8e6]})
    >>> [t.name for t in memory(t).data]
    ['params', 'grads', 'optimizer', 'formula: params + grads + optimizer (predicted)']
    """
    _check_df(df, "df", ["label", "kind", "bytes"], "gpuviz.scaling.memory_table")
    present = list(dict.fromkeys(df["kind"]))
    if kinds is None:
        kinds = present
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    if not kinds or any(k not in present for k in kinds):
        raise ValueError(f"kinds={kinds!r}: choose from the kinds in df: {present}")
    d = df[df["kind"].isin(kinds)].copy()
    per_rank = "rank" in d
    labels = list(dict.fromkeys(d["label"]))
    if per_rank:
        keys = list(dict.fromkeys(zip(d["label"], d["rank"], strict=True)))
        x = [[k[0] for k in keys], [f"rank {k[1]}" for k in keys]]
        key = list(zip(d["label"], d["rank"], strict=True))
    else:
        keys, x = labels, labels
        key = list(d["label"])
    d["_key"] = key
    fig = go.Figure()
    for kind in kinds:
        k = d[d["kind"] == kind].set_index("_key")
        vals = [float(k.loc[[key_]]["bytes"].iloc[0]) if key_ in k.index else 0.0 for key_ in keys]
        hover = []
        for key_ in keys:
            if key_ not in k.index:
                hover.append("")
                continue
            r = k.loc[[key_]].iloc[0]
            text = f"<b>{kind}</b>: {_bytes(r['bytes'])} ({r['bytes']:,.0f} bytes)<br>{r['label']}"
            n = int(r.get("ranks", 1))
            text += f", rank {r['rank']}" if per_rank else f", mean over {n} rank{'s' * (n != 1)}"
            if not per_rank and "bytes_min" in r and r["bytes_min"] != r["bytes_max"]:
                text += f"<br>ranks range {_bytes(r['bytes_min'])} to {_bytes(r['bytes_max'])}"
            if "predicted" in r and pd.notna(r["predicted"]):
                text += (f"<br>predicted {_bytes(r['predicted'])}: measured / predicted "
                         f"{r['bytes'] / r['predicted']:.3f}" if r["predicted"] else "")
            hover.append(text)
        fig.add_bar(x=x, y=np.asarray(vals) / _MIB, name=kind, hoverinfo="text", hovertext=hover,
                    marker=dict(color=MEMORY_COLORS.get(kind, "#999"), line=dict(width=0.5, color="white")))
    state = [k for k in ("params", "grads", "optimizer") if k in kinds]
    if state and "predicted" in d:
        pred = d[d["kind"].isin(state)].groupby("_key", sort=False)["predicted"]
        total = pred.apply(lambda v: v.sum() if v.notna().all() and len(v) == len(state) else np.nan)
        meas = d[d["kind"].isin(state)].groupby("_key", sort=False)["bytes"].sum()
        ys = [total.get(key_, np.nan) for key_ in keys]
        if np.isfinite(ys).any():
            name = "formula: " + " + ".join(state) + " (predicted)"
            hover = [f"<b>{name}</b><br>{_bytes(p)} ({p:,.0f} bytes); measured {_bytes(meas[key_])}: "
                     f"ratio {meas[key_] / p:.3f}" if np.isfinite(p) else ""
                     for key_, p in zip(keys, ys, strict=True)]
            fig.add_scatter(x=x, y=np.asarray(ys) / _MIB, mode="markers", name=name, hoverinfo="text",
                            hovertext=hover, marker=dict(symbol="line-ew-open", color="#111",
                                                         size=int(np.clip(400 / len(keys), 14, 48)),
                                                         line=dict(width=3, color="#111")))
    sub = "bytes each rank held in the last step (tensor accounting), stacked by kind"
    sub += ("" if per_rank else "; mean over the ranks")
    if len(fig.data) > len(kinds):
        sub += ("<br>black line: ZeRO's formula for " + " + ".join(state)
                + " (Rajbhandari et al. 2020), predicted")
    fig.update_layout(title=dict(text=title or "Memory per rank, by strategy", subtitle=dict(text=sub)),
                      template="plotly_white", barmode="stack", height=500, hovermode="closest",
                      legend=dict(title="kind", traceorder="normal"), margin=dict(t=110, b=60, l=70, r=20))
    fig.update_yaxes(title="memory per rank (MiB)", rangemode="tozero")
    fig.update_xaxes(title="strategy" + (" and rank" if per_rank else ""))
    return fig


# -- timelines -----------------------------------------------------------------------------------

def timelines(runs, *, step: int = 0, configs=None, title: str | None = None) -> go.Figure:
    """One training step of each strategy, stacked on one time axis (ms from the step's start).

    ``runs``: a dict ``{name: Run}`` of parallelism-workload runs, or one sweep run: one
    panel per configuration, labelled as by :func:`gpuviz.scaling.config_labels`. ``step`` picks which measured step (after
    warm-up) of each to draw. Each panel is :func:`gpuviz.plot.timeline` of that step,
    moved so the step starts at 0: the same colours, hover and comm lane. ``configs``: the
    configuration indices to draw (default: all).

    >>> timelines({"ddp": ddp_run, "zero3": zero_run, "tp": tp_run, "1f1b": pp_run})  # doctest: +SKIP
    """
    from gpuviz.plot.spans import timeline
    from gpuviz.scaling import step_table

    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step={step!r}: give the index of a measured step, an integer >= 0")
    from gpuviz.scaling import config_labels

    items = _panels(runs)
    labels = config_labels(dict(items) if isinstance(runs, Mapping) else items[0][1])
    panels = []
    for i, (_, run) in enumerate(items):
        st = step_table(run)
        measured = st[~st["warmup"].astype(bool)]
        for config, g in measured.groupby("config", sort=True):
            if configs is not None and int(config) not in set(configs):
                continue
            steps = sorted(g["step"].unique())
            label = labels[(i, int(config))]
            if step >= len(steps):
                raise ValueError(f"step={step}: {label} has only {len(steps)} measured steps")
            s = steps[step]
            rows = g[g["step"] == s]
            panels.append((label, run, int(s), sorted(rows["rank"].tolist()), float(rows["start"].min()),
                           float((rows["end"] - rows["start"].min()).max())))
    if not panels:
        raise ValueError(f"configs={configs!r}: no configuration of the run has that index")
    heights = [len(p[3]) + 0.8 for p in panels]
    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.1 / len(panels),
                        row_heights=heights, subplot_titles=[
                            f"<b>{p[0]}</b>: step {p[2]}, {_dur(p[5])}" for p in panels])
    seen: set[str] = set()
    for i, (_, run, s, ranks, t0, _) in enumerate(panels, start=1):
        part = timeline(run, ranks=ranks, steps=[s])
        for tr in part.data:
            tr = _shift(tr, t0)
            tr.showlegend = bool(tr.showlegend is not False and tr.name not in seen)
            if tr.showlegend:
                seen.add(tr.name)
            fig.add_trace(tr, row=i, col=1)
        ya = part.layout.yaxis
        fig.update_yaxes(tickvals=ya.tickvals, ticktext=ya.ticktext, range=ya.range, showgrid=False,
                         zeroline=False, row=i, col=1)
    fig.update_xaxes(title="time from the start of the step (ms)", showline=True, linecolor="#888",
                     row=len(panels), col=1)
    fig.update_xaxes(rangemode="tozero")
    fig.update_layout(title=dict(text=title or "One training step of each strategy",
                                 subtitle=dict(text="thick bar: a rank's main thread; thin bars "
                                               "below it: communication beside it; time "
                                               "from the step's first span")),
                      template="plotly_white", barmode="overlay", hovermode="closest",
                      height=int(140 + 48 * sum(heights) + 30 * len(panels)),
                      legend=dict(title="category", itemsizing="constant"),
                      margin=dict(t=110, b=50, l=80, r=20))
    return fig


def _panels(runs) -> list[tuple[str | None, object]]:
    if isinstance(runs, Mapping) and runs and all(hasattr(r, "spans") for r in runs.values()):
        return list(runs.items())
    if hasattr(runs, "spans"):
        return [(None, runs)]
    raise ValueError(f"runs={runs!r}: give a dict of name -> Run, or one sweep Run")


def _shift(tr, t0: float):
    """A copy of a timeline trace with times in ms from ``t0`` (bars: base and length)."""
    tr = go.Figure(data=[tr]).data[0]          # a detached copy
    if isinstance(tr, go.Bar):
        tr.base = (np.asarray(tr.base, dtype=float) - t0) * 1e3
        tr.x = np.asarray(tr.x, dtype=float) * 1e3
    elif tr.x is not None:
        tr.x = (np.asarray(tr.x, dtype=float) - t0) * 1e3
    return tr


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
    from gpuviz.scaling import step_table

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

    ``df`` is :func:`gpuviz.scaling.bubble_sweep`'s table.

    >>> t = pd.DataFrame({"schedule": "1f1b", "stages": 2, "micro_batches": [2, 4, 8],
    ...                   "measured": [0.4, 0.26, 0.2], "predicted": [1 / 3, 1 / 5, 1 / 9]})
    >>> [t.name for t in pipeline_bubble(t).data]
    ['1f1b: measured', 'formula (p-1)/(m+p-1), 2 stages (predicted)']
    """
    _check_df(df, "df", ["schedule", "stages", "micro_batches", "measured", "predicted"],
              "gpuviz.scaling.bubble_sweep")
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
                                 subtitle=dict(text="solid: measured (mean over stages, median step; "
                                               "bars: least and most idle stage); dashed: GPipe's "
                                               "formula (Huang et al. 2019)")),
                      template="plotly_white", height=460, hovermode="closest",
                      legend=dict(orientation="h", yanchor="top", y=-0.2, x=0),
                      margin=dict(t=100, b=110, l=70, r=20))
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


def _check_df(df, name: str, cols: list[str], source: str) -> None:
    if not isinstance(df, pd.DataFrame) or df.empty:
        raise ValueError(f"{name}: give a non-empty DataFrame ({source})")
    if missing := [c for c in cols if c not in df]:
        raise ValueError(f"{name}: missing columns {missing}; pass {source}(...)")
