"""Where a learner stands: every exercise check recorded in a small file in their folder.

Each call of a :mod:`gpuviz.checks` function appends one JSON line to
``gpuviz-progress.jsonl`` in the working folder (the notebook's, ``labs/``; or the file
``$GPUVIZ_PROGRESS_FILE`` names): the lab, the exercise, correct or not, the mistake the check
named (or its hint), the attempt number and the time. Appending a line never rewrites what
was recorded. :func:`progress` reads it back, lab by lab.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "p.jsonl")
>>> record("00", "idle_fraction", False, "seconds, not a fraction", path=path)
>>> record("00", "idle_fraction", True, None, path=path)
>>> progress(path)[["lab", "exercise", "attempts", "correct"]].head(2).to_dict("records")
[{'lab': '00', 'exercise': 'idle_fraction', 'attempts': 2, 'correct': True}, {'lab': '01', 'exercise': 'zero_bytes', 'attempts': 0, 'correct': False}]
"""

from __future__ import annotations

import getpass
import json
import os
import time
from pathlib import Path

FILE = "gpuviz-progress.jsonl"
ENV = "GPUVIZ_PROGRESS_FILE"

#: The exercises of each lab, in the order the labs set them (gpuviz.checks' names).
EXERCISES = {
    "00": ("idle_fraction",),
    "01": ("zero_bytes", "bubble_fraction", "gradient_sync"),
    "02": ("ring_allreduce_bytes", "best_bucket_size"),
    "03": ("straggler_wait", "redone_steps"),
    "04": ("energy_per_sample", "pareto_configs", "waiting_joules", "co2_grams"),
    "05": ("fits_in_memory", "mfu_from_throughput", "dominant_term", "best_layout",
           "expert_weights_gib"),
}
LAB_OF = {ex: lab for lab, exs in EXERCISES.items() for ex in exs}


def progress_path(path=None) -> Path:
    return Path(path or os.environ.get(ENV) or Path.cwd() / FILE)


def record(lab: str, exercise: str, ok: bool, mistake: str | None, path=None) -> None:
    """Append one check's outcome; never raises (a learner's exercise matters more)."""
    p = progress_path(path)
    try:
        attempt = 1 + sum(1 for r in read(p) if r.get("exercise") == exercise)
        line = {"lab": lab, "exercise": exercise, "ok": bool(ok), "mistake": mistake,
                "attempt": attempt, "time": round(time.time(), 3), "user": _user()}
        with open(p, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
            f.flush()
    except OSError:
        pass


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "?"


def read(path=None) -> list[dict]:
    """Every recorded line that parses (a line cut off mid-write is skipped)."""
    p = progress_path(path)
    if not p.exists():
        return []
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if isinstance(r, dict) and r.get("exercise"):
            out.append(r)
    return out


def progress(path=None):
    """One row per exercise of every lab: attempts, correct (ever), the last mistake, when
    first solved, in the labs' order; exercises not tried yet have 0 attempts."""
    import pandas as pd

    rows = read(path)
    out = []
    for lab, exs in EXERCISES.items():
        for ex in exs:
            mine = [r for r in rows if r["exercise"] == ex]
            solved = [r for r in mine if r.get("ok")]
            wrong = [r for r in mine if not r.get("ok")]
            out.append({"lab": lab, "exercise": ex, "attempts": len(mine), "correct": bool(solved),
                        "last_mistake": wrong[-1].get("mistake") if wrong else None,
                        "solved_at": min((r["time"] for r in solved), default=None)})
    return pd.DataFrame(out)


def summary(path=None) -> str:
    """Lab by lab: exercises solved of those set, and the attempts, as a few lines."""
    df = progress(path)
    lines = []
    for lab, g in df.groupby("lab", sort=True):
        tried = g[g["attempts"] > 0]
        todo = [e for e, c in zip(g["exercise"], g["correct"], strict=True) if not c]
        lines.append(f"Lab {lab}: {int(g['correct'].sum())} of {len(g)} solved, "
                     f"{int(tried['attempts'].sum())} attempts" + (f"; to do: {', '.join(todo)}" if todo else ""))
    return "\n".join(lines)
