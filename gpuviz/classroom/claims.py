"""What a lab says about its run, computed from the run: sentences that flip with the outcome.

A lab never types a measured number, a direction ("faster", "grows") or a comparison into
its prose. It writes the sentence here, from the values of the run in front of the reader:

- :meth:`Claims.either`: one of two sentences, chosen by a condition on the run's values;
  ``expect=`` marks a claim the lab's teaching relies on (the audit fails when it flips);
- :meth:`Claims.within`: a prediction beside its measurement, and whether they agree within
  the tolerance the lab states (the audit fails when they do not);
- :meth:`Claims.value`: a sentence that states measured values.

Each claim renders as Markdown (prose in the book and in JupyterLab) and, where
``$GPUVIZ_CLAIMS_FILE`` names a file (the book's build does), appends one JSON line to it:
the lab, the claim's id, its values, its sentence and whether it holds. ``gpuviz audit``
(:mod:`gpuviz.classroom.audit`) lists them.

>>> say = Claims("00")
>>> print(say.either("faster", 0.8 < 1.2, "{a:.1f} s is faster than {b:.1f} s.",
...                  "{a:.1f} s is slower than {b:.1f} s.", a=0.8, b=1.2))
0.8 s is faster than 1.2 s.
>>> c = say.within("wait", predicted=0.10, measured=0.11, tolerance=0.2,
...                text="predicted {predicted_ms:.0f} ms, measured {measured_ms:.0f} ms")
>>> c.holds, str(c)
(True, 'predicted 100 ms, measured 110 ms (within the 20% this lab allows).')
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

ENV = "GPUVIZ_CLAIMS_FILE"


@dataclass
class Claim:
    """One sentence a lab shows, and the values it was computed from."""

    lab: str
    id: str
    kind: str
    text: str
    values: dict = field(default_factory=dict)
    holds: bool = True
    expect: object = None

    def __str__(self) -> str:
        return self.text

    def _repr_markdown_(self) -> str:
        return self.text

    def record(self) -> dict:
        return {"lab": self.lab, "id": self.id, "kind": self.kind, "holds": bool(self.holds),
                "expect": self.expect, "text": self.text,
                "values": {k: _plain(v) for k, v in self.values.items()},
                "time": round(time.time(), 3)}


@dataclass
class Paragraph:
    """Claims and fixed prose shown as one paragraph."""

    parts: tuple

    def __str__(self) -> str:
        return " ".join(str(p) for p in self.parts)

    def _repr_markdown_(self) -> str:
        return str(self)


class Claims:
    """The claims of one lab (``Claims("03")``); each method records and returns a Claim."""

    def __init__(self, lab: str, path=None):
        self.lab = str(lab)
        self.path = path

    def either(self, id: str, condition, if_true: str, if_false: str, expect=None,
               **values) -> Claim:
        """``if_true`` when ``condition`` holds, else ``if_false``, formatted with ``values``.

        ``expect=True`` (or False) says which outcome the lab's teaching needs: the claim then
        holds only with that outcome, and the audit names it when the run disagrees.
        """
        cond = bool(condition)
        text = (if_true if cond else if_false).format(**values)
        holds = True if expect is None else cond == bool(expect)
        return self._keep(Claim(self.lab, id, "either", text, dict(values, condition=cond),
                                holds, expect))

    def within(self, id: str, predicted: float, measured: float, tolerance: float,
               text: str, *, points: bool = False, **values) -> Claim:
        """A prediction beside its measurement: holds when ``|measured/predicted - 1| <= tolerance``,
        or with ``points=True`` (for fractions of a whole, such as a step's bubble) when
        ``|measured - predicted| <= tolerance``, in percentage points.

        ``text`` is formatted with ``predicted``, ``measured``, their ``_ms`` forms, ``ratio``
        and ``values``; the sentence then says whether they agree within the tolerance.

        >>> str(Claims("01").within("b", 0.25, 0.31, 0.1, "bubble {measured:.0%}", points=True))
        'bubble 31% (within the 10 percentage points this lab allows).'
        """
        _check_tolerance(tolerance)
        ratio = measured / predicted if predicted else math.inf
        if points:
            holds = math.isfinite(measured - predicted) and abs(measured - predicted) <= tolerance
            allowed = f"{tolerance * 100:.0f} percentage points"
        else:
            holds = math.isfinite(ratio) and abs(ratio - 1) <= tolerance
            allowed = f"{tolerance:.0%}"
        vals = dict(values, predicted=predicted, measured=measured, ratio=ratio,
                    predicted_ms=predicted * 1e3, measured_ms=measured * 1e3,
                    tolerance=tolerance, **({"points": measured - predicted} if points else {}))
        verdict = (f"within the {allowed} this lab allows" if holds else
                   f"outside the {allowed} this lab allows: see why below")
        body = text.format(**vals).rstrip(". ")
        return self._keep(Claim(self.lab, id, "within", f"{body} ({verdict}).", vals, holds,
                                expect=tolerance))

    def value(self, id: str, text: str, **values) -> Claim:
        """A sentence stating measured ``values`` (nothing to hold beyond being computed)."""
        return self._keep(Claim(self.lab, id, "value", text.format(**values), values))

    def _keep(self, claim: Claim) -> Claim:
        path = self.path or os.environ.get(ENV)
        if path:
            try:
                with open(Path(path), "a", encoding="utf-8") as f:
                    f.write(json.dumps(claim.record()) + "\n")
            except OSError:
                pass    # a lab's prose matters more than its audit line
        return claim


def paragraph(*parts) -> Paragraph:
    """Join claims and fixed sentences into one Markdown paragraph (a cell's last line)."""
    return Paragraph(parts)


def _check_tolerance(tolerance) -> None:
    if not (isinstance(tolerance, (int, float)) and 0 < tolerance < 10):
        raise ValueError(f"tolerance={tolerance!r}: a fraction > 0, such as 0.2 for 20%")


def _plain(v):
    """A JSON-ready form of a value (numpy and pandas scalars become Python numbers)."""
    if hasattr(v, "item") and not isinstance(v, (list, dict, str)):
        try:
            v = v.item()
        except (ValueError, TypeError):
            return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return str(v)
