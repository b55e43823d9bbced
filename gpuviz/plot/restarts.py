"""A run restarted after a failure, on one time axis: the failure and each restart marked
by a labelled line, and the dead time between attempts (every process stopped and started
again, often many seconds) cut to a short grey band, so that each attempt's steps keep
their width.

>>> import pandas as pd
>>> sp = pd.DataFrame({"attempt": [0, 0, 1], "start": [0.1, 0.3, 7.1], "end": [0.3, 0.4, 7.4]})
>>> {a: round(s, 3) for a, s in attempt_shifts(sp).items()}
{0: 0.0, 1: 6.676}
"""

from __future__ import annotations

import html

import pandas as pd

_RED = "#D62728"
KEEP = 0.04   # a cut gap is drawn as this fraction of the attempts' own time


def attempt_shifts(sp: pd.DataFrame, keep: float = KEEP) -> dict[int, float]:
    """Seconds to take from each attempt's times so that the gap before it shrinks to
    ``keep`` of the attempts' own drawn time (only a gap longer than that is cut);
    ``{}`` for a run of one attempt."""
    if "attempt" not in sp or sp["attempt"].nunique() < 2:
        return {}
    span = sp.groupby("attempt").agg(start=("start", "min"), end=("end", "max")).sort_index()
    shown = float((span["end"] - span["start"]).sum())
    out, shift, prev_end = {}, 0.0, None
    for attempt, r in span.iterrows():
        if prev_end is not None:
            gap = float(r["start"]) - prev_end
            shift += max(0.0, gap - keep * shown)
        out[int(attempt)] = shift
        prev_end = float(r["end"])
    return out


def shifted(times: pd.Series, attempts: pd.Series, shifts: dict[int, float]) -> pd.Series:
    """``times`` moved by their attempt's shift."""
    if not shifts:
        return times
    return times - attempts.map(shifts).fillna(0.0).astype(float)


def draw_restarts(fig, run, sp: pd.DataFrame, shifts: dict[int, float], t0: float, t1: float) -> int:
    """Each cut gap as a grey band saying how long it was; a line at each failure that ended
    an attempt and at each restart. Returns how many restarts the run had."""
    attempts = (getattr(run, "meta", None) or {}).get("attempts") or []
    if len(attempts) < 2:
        return 0
    ev = run.events
    for prev, att in zip(attempts, attempts[1:], strict=False):
        a, b = int(prev["attempt"]), int(att["attempt"])
        before, after = sp[sp["attempt"] == a], sp[sp["attempt"] == b]
        restart_x = float(att["offset_s"]) - shifts.get(b, 0.0)
        if shifts.get(b, 0.0) > shifts.get(a, 0.0) and len(before) and len(after):
            x0, x1 = float(before["end"].max()), float(after["start"].min())   # already shifted
            cut = shifts[b] - shifts[a] + (x1 - x0)
            fig.add_vrect(x0=x0, x1=x1, fillcolor="#999", opacity=0.18, line_width=0,
                          annotation_text=f"{cut:.1f} s cut", annotation_position="bottom",
                          annotation_font=dict(size=10, color="#555"))
            restart_x = x1   # its start-up fell in the cut: the line marks its first span
        err = ev[(ev["name"] == "error") & (ev["attempt"] == a)].sort_values("time")
        if len(err):
            e = err.iloc[0]
            what = str(e["args"].get("error", "?")).split(":")[0]
            _vline(fig, float(e["time"]) - shifts.get(a, 0.0), t0, t1, _RED,
                   f"failure: rank {e['rank']} ({what}), step {e['step']}", "top left",
                   html.escape(str(e["args"].get("error", "?")))[:300])
        res = ev[(ev["name"] == "resumed") & (ev["attempt"] == b)]
        resumed = f", resumed at step {int(res['step'].iloc[0])}" if len(res) else ", from step 0"
        _vline(fig, restart_x, t0, t1, "#2CA02C", f"restart {b}{resumed}", "top right",
               f"attempt {b} started {att['offset_s']:.3f} s after the first")
    return len(attempts) - 1


def _vline(fig, x, t0, t1, color, label, where, hover):
    if not t0 - 1e-9 <= x <= t1 + 1e-9:
        return  # outside the steps drawn
    fig.add_vline(x=x, line=dict(color=color, width=1.5, dash="dash"), annotation_text=label,
                  annotation_position=where, annotation_font=dict(color=color, size=11),
                  annotation_hovertext=hover)
