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
        """The verdict in colour; `code` in the message set as code, not as backticks.

        >>> "<code>None</code>" in Result(False, "Replace `None`.")._repr_html_()
        True
        """
        import html
        import re

        colour, word = ("#2E7D32", "Correct!") if self.ok else ("#C62828", "Not yet.")
        text = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(self.message))
        return (f'<div style="border-left:4px solid {colour};padding:2px 8px">'
                f'<b style="color:{colour}">{word}</b> {text}</div>')


class LearnerError(Exception):
    """The learner's own function raised: the check turns it into a one-line hint."""

    def __init__(self, exc: BaseException, fn, args: tuple):
        super().__init__(str(exc))
        self.exc, self.fn, self.args_given = exc, fn, args

    def result(self) -> Result:
        e = self.exc
        where = _learner_line(e, self.fn)
        what = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        msg = f"Your function raised {what}{where}."
        if isinstance(e, KeyError):
            msg += _columns_hint(e, self.fn, self.args_given)
        elif isinstance(e, (TypeError, AttributeError)):
            msg += " Check the types of what you were given: print them first."
        return Result(False, msg, mistake=f"raised {type(e).__name__}")


def _learner_line(e: BaseException, fn) -> str:
    """' (line N: `code`)' for the deepest frame of the traceback in the learner's file."""
    import linecache
    import traceback

    code = getattr(fn, "__code__", None)
    if code is None:
        return ""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == code.co_filename]
    if not frames:
        return ""
    f = frames[-1]
    line = (f.line or linecache.getline(f.filename, f.lineno)).strip()
    return f" in `{f.name}`, at `{line}`" if line else f" in `{f.name}`"


def _columns_hint(e: KeyError, fn, args: tuple) -> str:
    """For a missing column: the table it was looked up in, and its columns."""
    import inspect

    try:
        names = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        names = []
    key = e.args[0] if e.args else None
    for i, a in enumerate(args):
        cols = getattr(a, "columns", None)
        if cols is not None and key not in cols:
            name = names[i] if i < len(names) else f"argument {i + 1}"
            return f" `{name}` has no column {key!r}; its columns are {', '.join(map(str, cols))}."
    return ""


def _value(answer: Any, *args) -> Any:
    """The learner's answer: a value, or what their function returns for ``args``."""
    if not callable(answer):
        return answer
    try:
        return answer(*args)
    except Exception as e:   # the learner's code: a hint, not a traceback from inside gpuviz
        raise LearnerError(e, answer, args) from e


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
