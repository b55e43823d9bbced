"""A run imported from profiler traces, written out: its spans as Chrome trace events (for
Perfetto) and as a gpuviz run directory that :func:`gpuviz.load_run` reads back.

>>> write_run_dir(gpuviz.load_real("dlrm-8xV100"), "runs/imported")   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def span_events(run, rank: int) -> list[dict]:
    """An imported run's spans of ``rank`` as Chrome trace events (``tid``: the lane), for
    Perfetto and for writing a run directory."""
    tids = {(e.get("args") or {}).get("name"): e.get("tid") for e in run.raw[rank]
            if e.get("ph") == "M" and e.get("name") == "thread_name"}
    sp = run.spans[run.spans["rank"] == rank]
    out = []
    for name, cat, lane, step, start, dur, nb, args in zip(
            sp["name"], sp["cat"], sp["lane"], sp["step"], sp["start"], sp["dur"], sp["bytes"], sp["args"],
            strict=True):
        a = dict(args)
        if step is not pd.NA and not pd.isna(step):
            a["step"] = int(step)
        if nb is not pd.NA and not pd.isna(nb):
            a["bytes"] = int(nb)
        out.append({"ph": "X", "name": name, "cat": cat, "ts": round(start * 1e6, 3),
                    "dur": round(dur * 1e6, 3), "pid": rank, "tid": tids.get(lane, 0), "args": a})
    return out


def write_run_dir(run, out) -> Path:
    """Write an imported run as a gpuviz run directory (``rank{R}.jsonl``), which
    :func:`gpuviz.load_run` reads back as the same run.

    """
    import json

    out = Path(out)
    if out.exists() and any(out.glob("rank*.jsonl")):
        raise FileExistsError(f"out={str(out)!r} already holds a run (rank*.jsonl); choose a new folder")
    out.mkdir(parents=True, exist_ok=True)
    for rank, events in run.raw.items():
        tmp = out / f".rank{rank}.jsonl.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for e in [*events, *span_events(run, rank)]:
                f.write(json.dumps(e, separators=(",", ":")) + "\n")
        tmp.replace(out / f"rank{rank}.jsonl")
    return out
