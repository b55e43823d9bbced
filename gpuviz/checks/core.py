"""What every check returns (:class:`Result`) and the helpers the checks share.

>>> Result(True, "2 + 2 = 4.")
Correct! 2 + 2 = 4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass
class Result:
    """The verdict of a check; true when correct. Shows itself in a notebook."""

    ok: bool
    message: str
    mistake: str | None = None
    """A short name for the mistake the check recognised (recorded in the learner's progress)."""

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return ("Correct! " if self.ok else "Not yet. ") + self.message

    def _repr_html_(self) -> str:
        import html

        colour, word = ("#2E7D32", "Correct!") if self.ok else ("#C62828", "Not yet.")
        return (f'<div style="border-left:4px solid {colour};padding:2px 8px">'
                f'<b style="color:{colour}">{word}</b> {html.escape(self.message)}</div>')


def _value(answer: Any, *args) -> Any:
    return answer(*args) if callable(answer) else answer


def _close(a: float, b: float, rtol: float) -> bool:
    return math.isclose(float(a), float(b), rel_tol=rtol, abs_tol=1e-12)


def _number(answer: Any, what: str) -> Result | None:
    if answer is None:
        return Result(False, f"Replace `None` with your {what}.")
    try:
        float(answer)
    except (TypeError, ValueError):
        return Result(False, f"Your {what} should be a number, not {type(answer).__name__} {answer!r}.")
    return None
