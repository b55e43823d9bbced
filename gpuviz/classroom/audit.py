"""The audit: every claim the labs made in a run of them, its values, and whether it holds.

The book's build runs every lab with ``$GPUVIZ_CLAIMS_FILE`` set (``book/_build/claims.jsonl``);
``make audit`` builds the book and prints this table; ``make test`` asserts that every claim
holds (``tests/test_book.py``). A claim fails when an outcome the lab relies on flipped
(``expect``) or a prediction left the tolerance the lab states.

>>> import json, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "claims.jsonl")
>>> lines = [{"lab": "00", "id": "wait", "kind": "within", "holds": False, "expect": 0.2,
...           "text": "...", "values": {"predicted": 1.0, "measured": 1.5, "ratio": 1.5}}]
>>> _ = open(path, "w").write("".join(json.dumps(x) + "\\n" for x in lines))
>>> report = audit(path, labs=("00", "01"))
>>> report.ok
False
>>> for problem in report.problems: print(problem)
lab 01: no claims recorded (did it run with GPUVIZ_CLAIMS_FILE set?)
lab 00 claim 'wait': measured/predicted = 1.5, outside the tolerance of 20%
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from gpuviz.classroom.claims import ENV

LABS = ("00", "01", "02", "03", "04", "05")


@dataclass
class Audit:
    """The claims table (one row per claim: the last run of each lab) and what failed."""

    table: pd.DataFrame
    problems: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        t = self.table
        rows = []
        for _, r in t.iterrows():
            mark = "ok  " if r["holds"] else "FAIL"
            rows.append(f"{mark} lab {r['lab']}  {r['id']:<28} {_values(r)}\n       {r['text']}")
        head = f"{len(t)} claims from {t['lab'].nunique() if len(t) else 0} labs"
        tail = ["", "every claim holds"] if self.ok else ["", "FAILED:", *self.problems]
        return "\n".join([head, *rows, *tail])


def read(path) -> pd.DataFrame:
    """The claims recorded in ``path``, the latest run of each lab only."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no claims file; build the book (make audit) or run the labs "
                         "with GPUVIZ_CLAIMS_FILE set")
    recs = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                recs.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{p} line {n}: not JSON ({e.msg})") from None
    t = pd.DataFrame(recs, columns=["lab", "id", "kind", "holds", "expect", "text", "values", "time"])
    # A lab run twice (a re-executed notebook) keeps its latest value of each claim.
    return t.drop_duplicates(["lab", "id"], keep="last").reset_index(drop=True)


def audit(path, labs=LABS) -> Audit:
    """Read the claims file and list every claim that fails, and every lab that made none."""
    t = read(path)
    problems = [f"lab {lab}: no claims recorded (did it run with {ENV} set?)"
                for lab in labs if lab not in set(t["lab"])]
    for _, r in t[~t["holds"].astype(bool)].iterrows():
        v = r["values"] or {}
        if r["kind"] == "within" and "points" in v:
            problems.append(f"lab {r['lab']} claim {r['id']!r}: measured - predicted = "
                            f"{v['points'] * 100:+.1f} percentage points, outside the tolerance of "
                            f"{float(r['expect']) * 100:.0f}")
        elif r["kind"] == "within":
            problems.append(f"lab {r['lab']} claim {r['id']!r}: measured/predicted = "
                            f"{v.get('ratio', float('nan')):.3g}, outside the tolerance of "
                            f"{float(r['expect']):.0%}")
        else:
            problems.append(f"lab {r['lab']} claim {r['id']!r}: the lab relies on it being "
                            f"{r['expect']}, this run gave {v.get('condition')}: {r['text']}")
    return Audit(t, problems)


def _values(r) -> str:
    v = {k: x for k, x in (r["values"] or {}).items() if not k.endswith("_ms")}
    return ", ".join(f"{k}={x:.4g}" if isinstance(x, float) else f"{k}={x}" for k, x in v.items())

