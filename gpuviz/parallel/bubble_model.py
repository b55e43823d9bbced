"""The pipeline bubble predicted from what the run measured on its own machine.

The textbook bubble, ``(p-1)/(m+p-1)`` (:func:`gpuviz.parallel.pipeline.bubble_fraction`),
assumes equal stages, free transfers between them and one processor per stage. On a real
machine the stages differ (the first holds the embedding, the last the loss), every hop
from one stage to the next takes time, and a micro-batch has a fixed cost however small it
is. :func:`replay` plays the schedule again with the durations the trace measured for each
forward and backward, and the hop and per-operation gaps it measured between them: what the
bubble should be on this machine. :func:`bubble_model` does so for every pipelined step.

>>> durs = {(s, op, i): 1.0 for s in range(2) for op in "FB" for i in range(4)}
>>> round(replay("gpipe", 2, 4, durs)["bubble"], 3)    # equal stages, free hops: the formula
0.2
"""
from __future__ import annotations

from gpuviz.parallel.pipeline import bubble_fraction, schedule

__all__ = ["replay", "bubble_model"]


def replay(name: str, stages: int, micro_batches: int, durations: dict, hop: float = 0.0,
           gap: dict | None = None) -> dict:
    """Play schedule ``name`` with ``durations[(stage, "F"|"B", i)]`` seconds per operation,
    ``hop`` seconds from one stage's end of a micro-batch to the next stage's start on it,
    and ``gap[stage]`` seconds between two operations of one stage. Returns window (first
    start to last end), busy (per stage) and bubble (1 - busy/window, mean over stages)."""
    p, m, gap = stages, micro_batches, gap or {}
    end: dict = {}
    orders = {s: schedule(name, s, p, m) for s in range(p)}
    missing = [(s, op, i) for s in range(p) for op, i in orders[s] if (s, op, i) not in durations]
    if missing:
        raise ValueError(f"durations: no time for {len(missing)} operations, e.g. {missing[0]} "
                         "(give seconds for every (stage, 'F' or 'B', micro-batch))")
    pos = {s: 0 for s in range(p)}
    free = {s: 0.0 for s in range(p)}
    left = sum(len(o) for o in orders.values())
    while left:
        moved = False
        for s in range(p):
            while pos[s] < len(orders[s]):
                op, i = orders[s][pos[s]]
                dep = (s - 1, "F", i) if op == "F" else (s + 1, "B", i)
                if 0 <= dep[0] < p and dep not in end:
                    break                      # waits for a neighbour not yet played
                ready = end[dep] + hop if 0 <= dep[0] < p else 0.0
                start = max(free[s] + (gap.get(s, 0.0) if pos[s] else 0.0), ready)
                end[(s, op, i)] = free[s] = start + durations[(s, op, i)]
                pos[s] += 1
                left -= 1
                moved = True
        if not moved:
            raise ValueError(f"schedule={name!r} deadlocks with stages={p}, micro_batches={m}")
    window = max(end.values())
    busy = {s: sum(durations[(s, op, i)] for op, i in orders[s]) for s in range(p)}
    return {"window": window, "busy": busy,
            "bubble": sum(1 - b / window for b in busy.values()) / p}


def bubble_model(run):
    """Per pipelined step of ``run``: the measured bubble beside the formula and two
    replays with this run's measured durations: ``stages_only`` (measured forward and
    backward times, free hops) and ``predicted`` (plus the measured hop, the least time
    from a micro-batch's end on one stage to its start on the next, and each stage's least
    gap between two of its operations).

    Columns: step, schedule, stages, micro_batches, measured, formula, stages_only,
    predicted, hop_ms, gap_ms (mean over stages).

    >>> bubble_model(gpuviz.load_run("runs/pp"))   # doctest: +SKIP
    """
    import numpy as np
    import pandas as pd

    from gpuviz.parallel.pipeline import measured_bubble

    sp = run.spans
    args = sp["args"]
    work = sp[sp["name"].isin(["forward", "backward"]) &
              args.map(lambda a: isinstance(a, dict) and a.get("microbatch") is not None)]
    meas = measured_bubble(run).groupby("step")["bubble"].mean()
    rows = []
    for step, st in work.groupby("step"):
        a = st["args"]
        st = st.assign(stage=a.map(lambda d: int(d["stage"])), i=a.map(lambda d: int(d["microbatch"])),
                       op=st["name"].map({"forward": "F", "backward": "B"}))
        name, p, m = a.iloc[0].get("schedule"), int(st["stage"].max()) + 1, int(st["i"].nunique())
        key = {(r.stage, r.op, r.i): r for r in st.itertuples()}
        durs = {k: float(r.dur) for k, r in key.items()}
        prev_end = {}
        for s, mine in st.sort_values("start").groupby("stage"):
            ends = mine["end"].to_numpy()
            prev_end.update({(s, r.op, r.i): e for r, e in zip(mine.iloc[1:].itertuples(), ends[:-1], strict=True)})
        gaps, hops = {}, []
        idle = sp[(sp["step"] == step) & (sp["cat"] == "idle") & (sp["lane"] == "main")]
        for s, mine in st.sort_values("start").groupby("stage"):
            lo, hi = mine["end"].to_numpy()[:-1], mine["start"].to_numpy()[1:]
            mine_idle = idle[idle["rank"] == mine["rank"].iloc[0]]
            blocked = sum(float((mine_idle["end"].clip(upper=b) - mine_idle["start"].clip(lower=a)).clip(lower=0).sum())
                          for a, b in zip(lo, hi, strict=True))
            # each stage's own cost between two operations (launching sends, Python), not its waiting
            gaps[s] = max(float((hi - lo).sum()) - blocked, 0.0) / len(lo) if len(lo) else 0.0
        for (s, op, i), r in key.items():
            src = (s - 1, op, i) if op == "F" else (s + 1, op, i)
            if src not in key:
                continue
            h = r.start - key[src].end
            # on the critical path: the stage was free before its neighbour's part arrived
            if (s, op, i) not in prev_end or prev_end[(s, op, i)] + gaps[s] < key[src].end:
                hops.append(h)
        hop = max(float(np.median(hops)), 0.0) if hops else 0.0
        rows.append({"step": int(step), "schedule": name, "stages": p, "micro_batches": m,
                     "measured": float(meas.get(step, float("nan"))),
                     "formula": bubble_fraction(p, m),
                     "stages_only": replay(name, p, m, durs)["bubble"],
                     "predicted": replay(name, p, m, durs, hop, gaps)["bubble"],
                     "hop_ms": hop * 1e3, "gap_ms": sum(gaps.values()) / p * 1e3})
    return pd.DataFrame(rows)
