"""Figures of the parallel strategies: scaling, memory per rank, timelines (pipelines:
:mod:`gpuviz.plot.pipeline`).

Data first (the tables of :mod:`gpuviz.parallel.scaling`, or runs), roles as keywords, a
``go.Figure`` back, never shown. Measured values are solid; ideal and predicted ones are
dashed or hollow, and the legend says which.

>>> from gpuviz import plot
>>> from gpuviz.parallel import scaling
>>> t = scaling.measure_scaling("ddp", ranks=(1, 2, 4), mode="both")      # doctest: +SKIP
>>> plot.scaling(t)                                                        # doctest: +SKIP
>>> plot.memory(memory.memory_table({"ddp": ddp_run, "zero3": zero_run}))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gpuviz.plot.units import binary_bytes as _bytes
from gpuviz.plot.units import check_df as _check_df
from gpuviz.plot.units import duration as _dur
from gpuviz.run.categories import COLORS

__all__ = ["scaling", "memory", "timelines"]

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

    ``df`` is :func:`gpuviz.parallel.scaling.scaling_table`'s table (one or both modes, one or more
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
    _check_df(df, "df", need, "gpuviz.parallel.scaling.scaling_table")
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

    ``df`` is :func:`gpuviz.parallel.memory.memory_table`'s table (``per_rank=True``: one bar per
    rank, grouped by strategy). ``kinds`` picks and orders the kinds to stack (default:
    all present). Hover shows the exact bytes, the range over ranks and the prediction.

    >>> t = pd.DataFrame({"label": "ddp", "strategy": "ddp", "ranks": 2,
    ...     "kind": ["params", "grads", "optimizer"], "bytes": [4e6, 4e6, 8e6],
    ...     "predicted": [4e6, 4e6, 8e6]})
    >>> [t.name for t in memory(t).data]
    ['params', 'grads', 'optimizer', 'formula: params + grads + optimizer (predicted)']
    """
    _check_df(df, "df", ["label", "kind", "bytes"], "gpuviz.parallel.memory.memory_table")
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
    panel per configuration, labelled as by :func:`gpuviz.parallel.scaling.config_labels`. ``step`` picks which measured step (after
    warm-up) of each to draw. Each panel is :func:`gpuviz.plot.timeline` of that step,
    moved so the step starts at 0: the same colours, hover and comm lane. ``configs``: the
    configuration indices to draw (default: all).

    >>> timelines({"ddp": ddp_run, "zero3": zero_run, "tp": tp_run, "1f1b": pp_run})  # doctest: +SKIP
    """
    from gpuviz.parallel.scaling import step_table
    from gpuviz.plot.spans import timeline

    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step={step!r}: give the index of a measured step, an integer >= 0")
    from gpuviz.parallel.scaling import config_labels

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
    gap = 62   # px between panels: one panel's time labels, then the next one's title
    plot_px = 28 * sum(heights) + gap * (len(panels) - 1)
    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True,
                        vertical_spacing=gap / plot_px if len(panels) > 1 else 0.0,
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
    fig.update_xaxes(title="time from the start of the step", showline=True, linecolor="#888",
                     row=len(panels), col=1)
    # every panel keeps its time labels: a reader of a tall figure sees them where they read
    fig.update_xaxes(rangemode="tozero", showticklabels=True, ticksuffix=" ms")
    fig.update_layout(title=dict(text=title or "One training step of each strategy",
                                 subtitle=dict(text="thick bar: a rank's main thread; thin bars "
                                               "below it: communication beside it; time "
                                               "from the step's first span")),
                      template="plotly_white", barmode="overlay", hovermode="closest",
                      height=int(plot_px + 110 + 50),
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
