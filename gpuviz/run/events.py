"""One rank's trace file, read line by line: every event checked, a bad one dropped and
named (file and line), never the whole run.

>>> check_event({"ph": "X", "name": "forward", "ts": 10.0, "dur": 5.0, "args": {"step": 0}})
>>> check_event({"ph": "X", "name": "forward", "ts": float("nan"), "dur": 5.0})
'ts=nan is not a finite number'
>>> check_event({"ph": "C", "name": "power", "ts": 1.0, "args": {"power W": "high"}})
"counter value 'power W'='high' is not a finite number"
"""

from __future__ import annotations

import json
import math
from pathlib import Path

#: Event phases a rank writes (Chrome trace event format): complete spans, instants,
#: counters, metadata.
PHASES = ("X", "i", "C", "M")


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_event(e) -> str | None:
    """Why ``e`` is not a valid trace event, or None when it is."""
    if not isinstance(e, dict):
        return f"a {type(e).__name__}, not an event object"
    ph = e.get("ph")
    if ph not in PHASES:
        return f"ph={ph!r} is not one of {', '.join(PHASES)}"
    args = e.get("args", {})
    if args is not None and not isinstance(args, dict):
        return f"args is a {type(args).__name__}, not an object"
    for key in ("pid", "tid"):
        if key in e and (not isinstance(e[key], int) or isinstance(e[key], bool)):
            return f"{key}={e[key]!r} is not an integer"
    if ph == "M":
        return None
    if not _finite(e.get("ts")):
        return f"ts={e.get('ts')!r} is not a finite number" if "ts" in e else "no ts"
    if ph == "X" and "dur" in e and not (_finite(e["dur"]) and e["dur"] >= 0):
        return f"dur={e['dur']!r} is not a finite number >= 0"
    step = (args or {}).get("step")
    if step is not None and (not isinstance(step, int) or isinstance(step, bool)):
        return f"step={step!r} is not an integer"
    if ph == "C":
        for k, v in (args or {}).items():
            if not _finite(v):
                return f"counter value {k!r}={v!r} is not a finite number"
    return None


def read_rank_file(path: Path) -> tuple[list[dict], list[str]]:
    """Parse one ``rank{R}.jsonl``; return the valid events and a list of what was dropped."""
    events, problems = [], []
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    truncated = bool(lines and lines[-1])  # a last line with no newline: cut off mid-write
    for no, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            e = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            what = "truncated last line" if truncated and no == len(lines) else "unreadable line"
            problems.append(f"{path.name} line {no}: {what} dropped ({raw[:60]!r})")
            continue
        why = check_event(e)
        if why is None:
            events.append(e)
        else:
            problems.append(f"{path.name} line {no}: {why}; event dropped ({raw[:60]!r})")
    return events, problems
