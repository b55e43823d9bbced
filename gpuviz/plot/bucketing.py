"""The DDP bucket-size sweep: exposed communication and step time against bucket size.

>>> from gpuviz import plot
>>> from gpuviz.sharing import bucketing
>>> run = bucketing.measure_sweep()                                         # doctest: +SKIP
>>> plot.bucket_sweep(bucketing.bucket_sweep(run), predicted)               # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from gpuviz.run.categories import COLORS

__all__ = ["bucket_sweep"]

_LINES = {"exposed_ms": ("exposed communication", COLORS["comm"]),
          "step_ms": ("step time", "#3B5B7E"),
          "backward_ms": ("backward (computing gradients)", COLORS["compute"]),
          "comm_ms": ("bucket all-reduces in flight", "#B85C00")}
_ESTIMATE = "alpha-beta model (estimate)"


def bucket_sweep(measured: pd.DataFrame, predicted: pd.DataFrame | None = None, *,
                 y=("exposed_ms", "step_ms"), log_y: bool = True, title: str | None = None) -> go.Figure:
    """Measured (solid, with 25-75th percentile bars) and predicted (dashed) milliseconds per
    bucket size, on a log axis of DDP's ``bucket_cap_mb``.

    ``measured`` is :func:`gpuviz.sharing.bucketing.bucket_sweep`'s table, ``predicted``
    :func:`gpuviz.sharing.bucketing.predict_bucket_sweep`'s (optional); ``y`` names the columns to
    draw (``exposed_ms``, ``step_ms``, ``backward_ms``, ``comm_ms``). Hover shows the exact
    numbers and the number of buckets. ``log_y`` (default) shows both ends of the U alike.

    >>> import pandas as pd
    >>> m = pd.DataFrame({"bucket_mb": [1, 10, 100], "n_buckets": [38, 4, 1],
    ...                   "exposed_ms": [170.0, 45.0, 120.0], "step_ms": [460.0, 260.0, 280.0]})
    >>> fig = bucket_sweep(m)
    >>> [t.name for t in fig.data]
    ['exposed communication (measured)', 'step time (measured)']
    """
    y = [y] if isinstance(y, str) else list(y)
    bad = [c for c in y if c not in _LINES]
    if not y or bad:
        raise ValueError(f"y={y!r}: choose from {list(_LINES)}")
    _check(measured, "measured", y)
    if predicted is not None:
        _check(predicted, "predicted", y)
    fig = go.Figure()
    for i, col in enumerate(y):
        label, colour = _LINES[col]
        m = measured.sort_values("bucket_mb")
        err = None
        if f"{col}_lo" in m and f"{col}_hi" in m:
            err = dict(type="data", symmetric=False, array=m[f"{col}_hi"] - m[col],
                       arrayminus=m[col] - m[f"{col}_lo"], thickness=1.2, width=4, color=colour)
        fig.add_scatter(x=m["bucket_mb"], y=m[col], mode="lines+markers", name=f"{label} (measured)",
                        line=dict(color=colour, width=2.5), marker=dict(size=9, color=colour),
                        error_y=err, legendrank=10 + i, hoverinfo="text",
                        hovertext=_hover(m, col, label, "measured"))
        if predicted is not None and col in predicted:
            p = predicted.sort_values("bucket_mb")
            fig.add_scatter(x=p["bucket_mb"], y=p[col], mode="lines+markers",
                            name=f"{label}: {_ESTIMATE}", legendrank=20 + i, hoverinfo="text",
                            line=dict(color=colour, width=2, dash="dash"),
                            marker=dict(size=8, symbol="circle-open", color=colour, line=dict(width=2)),
                            hovertext=_hover(p, col, label, _ESTIMATE))
    sizes = np.unique(np.r_[measured["bucket_mb"].to_numpy(float),
                            [] if predicted is None else predicted["bucket_mb"].to_numpy(float)])
    sub = "solid: measured, median over steps (bars: 25th-75th percentile)"
    if predicted is not None:
        sub += "<br>dashed: " + _ESTIMATE
        if {"alpha", "beta"} <= set(predicted):
            a, b = float(predicted["alpha"].iloc[0]), float(predicted["beta"].iloc[0])
            sub += (f", one all-reduce of S bytes = alpha + beta S: alpha = {a * 1e3:.3g} ms, "
                    f"beta = {b * 1e9:.3g} ns/byte" + (f" ({1 / b / 1e6:,.0f} MB/s)" if b > 0 else ""))
    fig.update_layout(title=dict(text=title or "DDP gradient buckets: how big should a bucket be?",
                                 subtitle=dict(text=sub)),
                      template="plotly_white", hovermode="closest", height=500,
                      legend=dict(orientation="h", yanchor="top", y=-0.18, x=0),
                      margin=dict(t=110, b=130, l=70, r=20))
    fig.update_xaxes(type="log", title="bucket size: DDP bucket_cap_mb (MiB, log scale)",
                     tickvals=sizes, ticktext=[f"{s:g}" for s in sizes], showline=True, linecolor="#888")
    fig.update_yaxes(title="time per step (ms" + (", log scale)" if log_y else ")"), showline=True,
                     linecolor="#888", type="log" if log_y else "linear",
                     rangemode="normal" if log_y else "tozero")
    if log_y:                               # 1-2-5 ticks, not plotly's crowded minor digits
        shown = pd.concat([d[c] for d in (measured, predicted) if d is not None for c in y if c in d])
        lo, hi = np.log10(shown[shown > 0].agg(["min", "max"]).to_numpy(float))
        ticks = [m * 10.0**k for k in range(int(np.floor(lo)), int(np.ceil(hi)) + 1) for m in (1, 2, 5)]
        fig.update_yaxes(tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])
    return fig


def _check(df, name: str, cols: list[str]) -> None:
    if not isinstance(df, pd.DataFrame) or df.empty:
        raise ValueError(f"{name}: give a non-empty DataFrame (gpuviz.sharing.bucketing.bucket_sweep / "
                         "predict_bucket_sweep)")
    missing = [c for c in ["bucket_mb", "n_buckets", *cols] if c not in df]
    if missing:
        raise ValueError(f"{name}: missing columns {missing}; it has {list(df.columns)}")


def _hover(df: pd.DataFrame, col: str, label: str, kind: str) -> list[str]:
    out = []
    for _, r in df.iterrows():
        text = (f"<b>{label}</b>: {r[col]:.1f} ms, {kind}<br>bucket_cap_mb = {r['bucket_mb']:g}: "
                f"{int(r['n_buckets'])} bucket{'s' if r['n_buckets'] != 1 else ''}")
        if f"{col}_lo" in r and f"{col}_hi" in r:
            text += f"<br>25th-75th percentile: {r[f'{col}_lo']:.1f}-{r[f'{col}_hi']:.1f} ms"
        more = [f"{n} {r[c]:.1f} ms" for c, n in (("step_ms", "step"), ("backward_ms", "backward"),
                                                   ("exposed_ms", "exposed comm"),
                                                   ("latency_ms", "latency n x alpha"))
                if c != col and c in r and pd.notna(r[c])]
        if "overlap" in r and pd.notna(r["overlap"]):
            more.append(f"{r['overlap']:.0%} of comm hidden behind backward")
        if "steps" in r and pd.notna(r["steps"]):
            more.append(f"{int(r['steps'])} steps")
        out.append(text + "<br>" + "<br>".join(more))
    return out
