"""A class's progress in one table: each learner's folder (their ``gpuviz-progress.jsonl``)
collected, one row per learner and exercise.

Why not nbgrader or otter-grader: both grade a notebook after it is handed in, by running it
again with hidden tests (nbgrader with its course database, release and collect steps;
otter in a grading container). Here the checks already run, live, on each learner's own
multi-process runs, and each seat keeps their outcomes as it goes; running every learner's
labs again would take minutes of four processes per learner. What is left is collecting
small files, which this module does.

>>> import tempfile, os
>>> from gpuviz.classroom.progress import record
>>> root = tempfile.mkdtemp()
>>> for who, ok in (("ada", True), ("bo", False)):
...     os.makedirs(f"{root}/{who}")
...     record("00", "idle_fraction", ok, None, path=f"{root}/{who}/gpuviz-progress.jsonl")
>>> t = grades([f"{root}/ada", f"{root}/bo"])
>>> t.loc[t["exercise"] == "idle_fraction", ["learner", "correct", "attempts"]].to_dict("records")
[{'learner': 'ada', 'correct': True, 'attempts': 1}, {'learner': 'bo', 'correct': False, 'attempts': 1}]
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from gpuviz.classroom.progress import FILE, progress


def find(folder) -> Path:
    """The progress file of a learner's folder (the file itself, or in the folder or below)."""
    p = Path(folder)
    if p.is_file():
        return p
    if not p.is_dir():
        raise FileNotFoundError(f"folder={str(p)!r} does not exist")
    found = sorted(p.rglob(FILE))
    if not found:
        raise FileNotFoundError(f"folder={str(p)!r} holds no {FILE}: the learner has not run a check yet")
    return found[0]


def grades(folders) -> pd.DataFrame:
    """One row per learner (the folder's name) and exercise: lab, exercise, attempts,
    correct, last mistake. A folder with no progress file is reported, not skipped silently:
    its learner appears with no attempts and ``missing=True``."""
    rows = []
    for folder in folders:
        name = Path(folder).name if Path(folder).is_dir() else Path(folder).parent.name
        try:
            df = progress(find(folder))
            missing = False
        except FileNotFoundError:
            df, missing = progress(Path(folder) / "none" / FILE), True
        rows.append(df.assign(learner=name, missing=missing))
    if not rows:
        raise ValueError("folders: give at least one learner's folder")
    out = pd.concat(rows, ignore_index=True)
    return out[["learner", "lab", "exercise", "attempts", "correct", "last_mistake", "solved_at", "missing"]]


def completion(table: pd.DataFrame) -> pd.DataFrame:
    """Per exercise: how many learners solved it, tried it, and the mean attempts of those
    who tried, in the labs' order."""
    g = table.groupby(["lab", "exercise"], sort=False)
    out = pd.DataFrame({"solved": g["correct"].sum(), "tried": g["attempts"].apply(lambda a: int((a > 0).sum())),
                        "learners": g["learner"].nunique(),
                        "mean_attempts": g["attempts"].apply(lambda a: float(a[a > 0].mean()) if (a > 0).any() else 0.0)})
    return out.reset_index()
