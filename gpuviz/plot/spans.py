"""Figures of a :class:`~gpuviz.run.load.Run`'s time: the timeline and the breakdown per rank.

Like plotly.express: the run comes first, roles are keywords, nothing is shown for you.
Colours are :data:`gpuviz.run.categories.COLORS`, the same in every figure.

>>> import gpuviz
>>> run = gpuviz.launch("gpuviz.workloads.mlp:train", nproc=4)   # doctest: +SKIP
>>> gpuviz.plot.timeline(run)                                     # doctest: +SKIP
>>> gpuviz.plot.breakdown(run, normalize=True)                    # doctest: +SKIP
"""

from __future__ import annotations

import html
import textwrap
from collections.abc import Iterable

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from gpuviz.plot.restarts import attempt_shifts, draw_restarts, shifted
from gpuviz.plot.units import binary_bytes as _bytes
from gpuviz.plot.units import duration as _dur
from gpuviz.plot.units import run_label
from gpuviz.run.categories import CATEGORIES, COLORS

__all__ = ["timeline"]

_UNTRACED = "#E4E4E4"        # light neutral: time inside no span
_RED = "#D62728"             # interrupted spans and errors
_MAIN_H, _COMM_TOP = 0.5, 0.3  # row geometry in rank units: main bar, then the comm band below it
_GL_ABOVE = 4000             # more segments than this: WebGL lines instead of SVG bars
_PIXELS = 3000               # merging resolution: spans shorter than wall / _PIXELS
_LEGEND = dict(title="category", itemsizing="constant", tracegroupgap=2)
_EPS = 1e-9                  # 1 ns: spans closer than this touch, they do not overlap


def timeline(run, *, ranks=None, steps=None, lanes=None, max_spans: int = 20000,
             title: str | None = None) -> go.Figure:
    """Every rank's spans over time: one row per rank, rank 0 at the top.

    Each row has the rank's main thread as a thick bar and, just below it, a thin comm
    lane (DDP gradient buckets running beside ``backward``; concurrent buckets stacked).
    Hover a span for its name, category, rank, step, duration and bytes. Interrupted
    spans (a rank stopped mid-span) are hatched red; recorded errors are red crosses.
    A run restarted after a failure shows every attempt on one time axis, the failure
    and each restart marked by a labelled vertical line.

    ``ranks`` (int or list) and ``steps`` (int or list/range) pick what to draw. Above
    ``max_spans`` spans, spans shorter than about a pixel are merged into one bin per pixel
    of each rank and lane (coarser while more than ``max_spans`` are left), drawn as its
    categories' times side by side; hover says how many spans were merged and their mix,
    and the subtitle says so. Large figures are drawn with WebGL.

    A run imported from PyTorch profiler traces has a row per lane of each rank: one per
    CUDA stream (its kernels) and one per CPU thread (its top-level ops); ``lanes`` keeps
    the lanes whose names start with one of the given strings (``lanes="GPU"``).

    >>> fig = timeline(run, steps=range(5, 10))                   # doctest: +SKIP
    >>> fig = timeline(run, ranks=[0, 3], title="two ranks")      # doctest: +SKIP
    >>> fig = timeline(gpu_run, lanes=["GPU", "CPU main"])        # doctest: +SKIP
    """
    sp = _spans(run)
    rows = _pick_ranks(run, ranks)
    sp = sp[sp["rank"].isin(rows)]
    per_lane = bool(getattr(run, "imported", False))
    if lanes is not None:
        want = [lanes] if isinstance(lanes, str) else list(lanes)
        if not per_lane or not want or not all(isinstance(w, str) for w in want):
            raise ValueError(f"lanes={lanes!r}: give lane name prefixes (e.g. 'GPU') of a run "
                             "imported from profiler traces; gpuviz's own runs have main and comm")
        keep = sp["lane"].astype(str).str.startswith(tuple(want))
        if not keep.any():
            raise ValueError(f"lanes={lanes!r}: no lane starts so; lanes: {sorted(sp['lane'].unique())}")
        sp = sp[keep]
    if steps is not None:
        wanted = _as_ints(steps, "steps")
        have = sp["step"].dropna().astype(int)
        sp = sp[sp["step"].isin(wanted)]
        if sp.empty:
            raise ValueError(f"steps={steps!r}: no span of the chosen ranks is in those steps; "
                             f"steps recorded: {_ranges(have.unique())}")
    if sp.empty:
        raise ValueError(f"ranks={ranks!r}: these ranks recorded no span")
    if not isinstance(max_spans, int) or max_spans < 1:
        raise ValueError(f"max_spans={max_spans!r}: must be a positive int")
    shifts = attempt_shifts(sp)   # a restart's dead time, cut
    if shifts:
        sp = sp.assign(start=shifted(sp["start"], sp["attempt"], shifts),
                       end=shifted(sp["end"], sp["attempt"], shifts))

    if per_lane:   # a row per (rank, lane): GPU streams first, then CPU threads
        keys = sorted({(r, ln) for r, ln in zip(sp["rank"], sp["lane"], strict=True)},
                      key=lambda k: (rows.index(k[0]), _lane_order(k[1])))
        row_key = {k: i for i, k in enumerate(keys)}
        row_of = {r: next(i for i, k in enumerate(keys) if k[0] == r) for r in rows
                  if any(k[0] == r for k in keys)}
        lane = np.array([row_key[(r, ln)] * 2 for r, ln in zip(sp["rank"], sp["lane"], strict=True)])
        labels = [f"rank {r} · {ln}" for r, ln in keys]
    else:
        row_of = {r: i for i, r in enumerate(rows)}
        lane = (sp["rank"].map(row_of) * 2 + (sp["lane"] == "comm")).to_numpy()
        labels = [f"rank {r}" + ("" if r in set(run.ranks) else " (no trace)") for r in rows]
    depth = _depth(lane, sp["start"].to_numpy(float), sp["end"].to_numpy(float))
    order = np.lexsort((sp["start"].to_numpy(), depth, lane))   # by lane, nesting level, time
    sp, lane, depth = sp.iloc[order], lane[order], depth[order]
    row, comm = lane // 2, lane % 2 == 1
    start, end = sp["start"].to_numpy(float), sp["end"].to_numpy(float)
    present = set(sp["cat"].unique())
    cats = [c for c in CATEGORIES if c in present] + sorted(present - set(CATEGORIES))
    cat = sp["cat"].map({c: i for i, c in enumerate(cats)}).to_numpy()
    stopped = sp["interrupted"].to_numpy(bool)
    ntrack = int(depth[comm].max()) + 1 if comm.any() else 1
    wall = float(end.max() - start.min())

    if len(sp) > max_spans:
        idx, start, end, cat, hover, note = _merged(sp, lane, depth, cat, cats, max_spans, wall)
    else:
        idx, hover, note = np.arange(len(sp)), _span_hover(sp), ""
    row, comm, depth, stopped = row[idx], comm[idx], depth[idx], stopped[idx]
    th = min(0.4, 0.14 * ntrack) / ntrack                      # height of one comm track
    y = np.where(comm, row + _COMM_TOP + th * (depth + 0.5), row).astype(float)
    h = np.where(comm, th * 0.8, _MAIN_H * np.maximum(0.4, 1 - 0.25 * depth))
    level = np.where(comm, 0, depth)                           # nested spans drawn later, on top

    row_px = int(np.clip(520 / len(labels), 13, 34 + 10 * ntrack))
    height = max(380, 140 + 18 * bool(note) + row_px * len(labels))
    fig = go.Figure()
    draw = _draw_bars if len(idx) <= _GL_ABOVE else _draw_gl
    draw(fig, start, end, y, h, cat, level, stopped, hover, cats, px_per_unit=row_px, wall=wall)
    _draw_errors(fig, run, row_of, steps, shifts)
    restarts = draw_restarts(fig, run, sp, shifts, float(start.min()), float(end.max()))

    sub = [(f"{len(row_of)} ranks of {run.world_size}, recorded by the PyTorch profiler "
            f"({run.meta.get('gpu') or 'GPU'}): a row per "
            + ("CUDA stream and CPU thread" if lanes is None else "lane asked for") + "; gaps: GPU idle"
            if per_lane else f"{len(rows)} ranks; thick bar: main thread")
           + ("; thin bars below it: comm lane (DDP buckets beside backward)" if comm.any() else "")
           + (f"; {restarts + 1} attempts (restarted after a failure), lines mark each"
              + ("; the time between attempts is cut (grey)" if shifts else "") if restarts
              else "")]
    if note:
        sub.append(note)
    name = title or f"Timeline of {run_label(run)}: every rank's time"
    fig.update_layout(title=dict(text=name, subtitle=dict(text="<br>".join(sub))), height=height,
                      template="plotly_white", barmode="overlay", hovermode="closest",
                      margin=dict(t=80 + 18 * len(sub), b=50, l=80, r=20), legend=_LEGEND)
    fig.update_xaxes(title="time (s) from the aligned start" + (", restarts cut" if shifts else ""),
                     showline=True, linecolor="#888")
    fig.update_yaxes(tickvals=list(range(len(labels))), ticktext=labels, showgrid=False, zeroline=False,
                     range=[len(labels) - 0.2, -0.5], tickfont=dict(size=11 if len(labels) <= 32 else 9))
    return fig


# -- drawing ---------------------------------------------------------------------------------

def _draw_bars(fig, start, end, y, h, cat, level, stopped, hover, cats, *, wall, **_):
    """SVG bars: hover works anywhere on a span. One trace per (nesting level, category)."""
    edge = np.where(end - start > wall / 300, 0.6, 0.0)       # white edges, not on the thinnest
    for lv in np.unique(level):
        for i, c in enumerate(cats):
            m = (level == lv) & (cat == i)
            if m.any():
                fig.add_bar(y=y[m], x=end[m] - start[m], base=start[m], width=h[m], orientation="h",
                            name=c, legendgroup=c, showlegend=bool(lv == level.min()), legendrank=100 + i,
                            marker=dict(color=COLORS.get(c, "#777"), line=dict(width=edge[m], color="white")),
                            hoverinfo="text", hovertext=hover[m])
    if stopped.any():
        m = stopped
        fig.add_bar(y=y[m], x=end[m] - start[m], base=start[m], width=h[m], orientation="h",
                    name="interrupted (rank stopped)", legendrank=900, hoverinfo="text", hovertext=hover[m],
                    marker=dict(color="rgba(0,0,0,0)", line=dict(width=2, color=_RED),
                                pattern=dict(shape="/", fgcolor=_RED, solidity=0.3)))


def _draw_gl(fig, start, end, y, h, cat, level, stopped, hover, cats, *, px_per_unit, wall):
    """WebGL: each span a thick line segment (NaN-separated), hover points along it."""
    def lines(m, width, **kw):
        n = int(m.sum())
        xs = np.column_stack([start[m], end[m], np.full(n, np.nan)]).ravel()
        ys = np.column_stack([y[m], y[m], np.full(n, np.nan)]).ravel()
        fig.add_scattergl(x=xs, y=ys, mode="lines", line=dict(width=width), hoverinfo="skip", **kw)

    if stopped.any():
        lines(stopped, _MAIN_H * px_per_unit + 4, line_color=_RED, name="interrupted (rank stopped)",
              legendrank=900)
    for i, c in enumerate(cats):
        for hh in np.unique(h[cat == i]):
            m = (cat == i) & (h == hh)
            lines(m, max(1.0, hh * px_per_unit), line_color=COLORS.get(c, "#777"), name=c, legendgroup=c,
                  showlegend=bool(hh == h[cat == i].max()), legendrank=100 + i)
        # hover points: one per segment, more along long ones
        m = np.flatnonzero(cat == i)
        n = np.clip(np.ceil((end[m] - start[m]) / (wall / 150)), 1, 50).astype(int)
        k = np.repeat(m, n)
        frac = (np.arange(len(k)) - np.repeat(np.cumsum(n) - n, n) + 0.5) / np.repeat(n, n)
        fig.add_scattergl(x=start[k] + frac * (end[k] - start[k]), y=y[k], mode="markers",
                          marker=dict(size=6, color=COLORS.get(c, "#777"), opacity=0), hoverinfo="text",
                          hovertext=hover[k], legendgroup=c, showlegend=False, name=c)


def _draw_errors(fig, run, row_of, steps, shifts):
    e = run.events[(run.events["name"] == "error") & run.events["rank"].isin(list(row_of))]
    if steps is not None:
        e = e[e["step"].isin(_as_ints(steps, "steps"))]
    if e.empty:
        return
    x = shifted(e["time"], e["attempt"], shifts).to_numpy(float)
    text = [f"<b>error on rank {r}</b> at {t:.3f} s, step {s}<br>"
            + "<br>".join(textwrap.wrap(html.escape(str(a.get("error", "?"))), 90)[:8])
            for r, t, s, a in zip(e["rank"], e["time"], e["step"], e["args"], strict=True)]
    fig.add_scatter(x=x, y=e["rank"].map(row_of).to_numpy(float), mode="markers",
                    name="error (hover for it)", legendrank=950, hoverinfo="text", hovertext=text,
                    marker=dict(symbol="x", size=14, color=_RED, line=dict(width=1.5, color="white")))


# -- data --------------------------------------------------------------------------------------

def _merged(sp, lane, depth, cat, cats, max_spans, wall):
    """Merge spans shorter than a pixel (``wall / 3000``, coarser while more than ``max_spans``
    bins and spans are left) into one bin per pixel of each rank and lane. A bin is drawn as its
    categories' times laid end to end (blank: time in no span). Spans as long as a pixel,
    and interrupted ones, stay as they are. Returns the parts to draw and a note saying so."""
    start, end = sp["start"].to_numpy(float), sp["end"].to_numpy(float)
    key, keep = lane * (depth.max() + 1) + depth, sp["interrupted"].to_numpy(bool)
    px = max(wall / _PIXELS, 1e-9)
    while True:
        first, count, g0, g1, comp, cnt = _merge(key, start, end, cat, keep, px, len(cats))
        gi, ci = np.nonzero((cnt > 0) & (count > 1)[:, None])   # one part per category in a bin
        if len(first) <= max_spans or px >= wall:
            break
        px *= 2
    w = comp[gi, ci]
    before = np.cumsum(w) - w
    new = np.flatnonzero(np.r_[True, gi[1:] != gi[:-1]])
    p0 = g0[gi] + before - np.repeat(before[new], np.diff(np.r_[new, len(gi)]))
    one = np.flatnonzero(count == 1)
    group = np.r_[one, gi]
    hover = np.empty(len(first), dtype=object)
    hover[one] = _span_hover(sp.iloc[first[one]])
    steps = sp["step"].to_numpy(float, na_value=np.nan)
    lo, hi = np.fmin.reduceat(steps, first), np.fmax.reduceat(steps, first)
    rank, comm = sp["rank"].to_numpy()[first], lane[first] % 2 == 1
    share = comp / np.maximum(comp.sum(axis=1, keepdims=True), 1e-300)
    for k in np.flatnonzero(count > 1):
        hover[k] = _merged_hover(rank[k], comm[k], count[k], lo[k], hi[k], g0[k], g1[k], share[k], cats, px)
    note = (f"⚠ {len(sp):,} spans: those shorter than {_dur(px)} merged, per rank and {_dur(px)} bin, "
            f"into {len(group):,} parts (hover says how many); choose ranks= or steps= to see every span")
    return (first[group], np.r_[g0[one], p0], np.r_[g1[one], p0 + w], np.r_[cat[first[one]], ci],
            hover[group], note)


def _merge(key, start, end, cat, keep, px, ncat):
    """Group runs of spans shorter than ``px`` on the same lane (``key``) by ``px``-wide bin;
    every other span is a group of its own. Input sorted by (key, start). Returns per group:
    first span, span count, start, end, and seconds and spans per category."""
    small = (end - start < px) & ~keep
    brk = np.r_[True, (key[1:] != key[:-1]) | ~small[1:] | ~small[:-1]]
    bins = np.floor(start / px)
    first = np.flatnonzero(brk | np.r_[True, bins[1:] != bins[:-1]])
    count = np.diff(np.r_[first, len(start)])
    flat = np.repeat(np.arange(len(first)), count) * ncat + cat
    comp = np.bincount(flat, weights=end - start, minlength=len(first) * ncat).reshape(-1, ncat)
    cnt = np.bincount(flat, minlength=len(first) * ncat).reshape(-1, ncat)
    return first, count, np.minimum.reduceat(start, first), np.maximum.reduceat(end, first), comp, cnt


def _depth(lane, start, end):
    """Per span, its level among overlapping spans of its lane: on a main lane (even ``lane``)
    how many enclosing spans are open; on a comm lane (odd) the lowest free track, so that
    concurrent buckets stack."""
    depth = np.zeros(len(start), dtype=int)
    order = np.lexsort((start, lane))
    s, e, ln = start[order], end[order], lane[order]
    big = float(e.max() - s.min()) + 1.0                        # per-lane running max of the ends
    reach = np.maximum.accumulate(e - s.min() + ln * big) - ln * big + s.min()
    for lo in np.searchsorted(ln, np.unique(ln[1:][(s[1:] < reach[:-1] - _EPS) & (ln[1:] == ln[:-1])])):
        ends: list[float] = []
        for i in order[lo: np.searchsorted(ln, ln[lo], side="right")]:
            if ln[lo] % 2:                                      # comm lane: first free track
                k = next((k for k, t in enumerate(ends) if t <= start[i] + _EPS), len(ends))
                ends[k:k + 1] = [end[i]]
            else:                                               # main lane: nesting stack
                while ends and ends[-1] <= start[i] + _EPS:
                    ends.pop()
                k = len(ends)
                ends.append(end[i])
            depth[i] = k
    return depth


def _spans(run) -> pd.DataFrame:
    sp = getattr(run, "spans", None)
    if sp is None or sp.empty:
        raise ValueError(f"run={getattr(run, 'path', run)!s}: it holds no spans to draw; did the "
                         "workload call gpuviz.run.trace.span (or was it stopped before its first step)?")
    return sp


def _lane_order(lane: str):
    """GPU streams by number, then the CPU's main thread, then other CPU threads."""
    parts = str(lane).split()
    num = int(parts[-1]) if parts and parts[-1].isdigit() else -1
    return (0 if str(lane).startswith("GPU") else 1 if "main" in str(lane) else 2, num, str(lane))


def _pick_ranks(run, ranks) -> list[int]:
    # An imported trace may hold a few ranks of a large job: only those are drawn.
    avail = sorted(set(run.ranks) | (set() if getattr(run, "imported", False) else set(range(run.world_size))))
    if ranks is None:
        return avail
    want = _as_ints(ranks, "ranks")
    bad = [r for r in want if r not in avail]
    if bad or not want:
        raise ValueError(f"ranks={ranks!r}: {bad or 'no rank'} not in this run; its ranks are "
                         f"{_ranges(avail)}")
    return want


def _as_ints(v, arg) -> list[int]:
    items = [v] if isinstance(v, (int, np.integer)) else list(v) if isinstance(v, Iterable) else None
    if items is None or not all(isinstance(i, (int, np.integer)) for i in items):
        raise ValueError(f"{arg}={v!r}: give an int or a list/range of ints")
    return list(dict.fromkeys(int(i) for i in items))


def _ranges(values) -> str:
    v = sorted(int(x) for x in values)
    if not v:
        return "none"
    return f"{v[0]}-{v[-1]}" if v == list(range(v[0], v[-1] + 1)) and len(v) > 2 else str(v)


def _span_hover(sp: pd.DataFrame) -> np.ndarray:
    names = {n: html.escape(str(n)) for n in sp["name"].unique()}
    attempt = sp["attempt"] if "attempt" in sp and sp["attempt"].nunique() > 1 else [None] * len(sp)
    return np.array([f"<b>{names[n]}</b> ({c})<br>rank {r}{', comm lane' if ln == 'comm' else ''}, "
            f"step {'—' if pd.isna(st) else st}" + ("" if at is None else f", attempt {at}")
            + f"<br>{_dur(d)} from {t:.6f} s<br>bytes: {_bytes(b)}"
            + (f"<br><b>interrupted</b> ({a.get('interrupted')}): the rank stopped here" if i else "")
            for n, c, r, ln, st, d, t, b, a, i, at in zip(
                sp["name"], sp["cat"], sp["rank"], sp["lane"], sp["step"], sp["dur"], sp["start"],
                sp["bytes"], sp["args"], sp["interrupted"], attempt, strict=True)], dtype=object)


def _merged_hover(rank, comm, n, lo, hi, t0, t1, share, cats, px) -> str:
    mix = ", ".join(f"{c} {x:.0%}" for c, x in zip(cats, share.tolist(), strict=True) if x >= 0.005)
    steps = "no step" if np.isnan(lo) else f"step {lo:.0f}" if lo == hi else f"steps {lo:.0f}–{hi:.0f}"
    return (f"<b>{n:,} spans merged</b> (each shorter than {_dur(px)})<br>rank {rank}"
            f"{', comm lane' if comm else ''}, {steps}<br>{t0:.4f}–{t1:.4f} s<br>{mix}")
