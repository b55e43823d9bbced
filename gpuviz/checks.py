"""Self-checking exercises: each check says "Correct!" or what is wrong and why.

>>> from gpuviz import checks
>>> checks.ring_allreduce_bytes(1.5e6, nbytes=1e6, world=4)
Correct! Each rank sends 2(p-1)/p x 1e+06 = 1.5e+06 bytes in a ring all-reduce.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Result:
    """The verdict of a check; true when correct. Shows itself in a notebook."""

    ok: bool
    message: str

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


def idle_fraction(answer: float | Callable, run, rank: int = 0, rtol: float = 0.02) -> Result:
    """Check the fraction of ``rank``'s wall time spent waiting (``idle`` spans).

    ``answer`` is a number, or a function ``f(spans, rank)`` given ``run.spans``.
    """
    got = _value(answer, run.spans, rank)
    if (bad := _number(got, "fraction of time spent waiting")) is not None:
        return bad
    s = run.summary().loc[rank]
    want = s["idle"] / s["wall"]
    if _close(got, want, rtol):
        return Result(True, f"rank {rank} waited {s['idle']:.4f} s of {s['wall']:.4f} s: {want:.1%}.")
    if _close(got, s["idle"], rtol):
        return Result(False, "That is the time in seconds; divide by the rank's wall time.")
    if _close(got, (s["idle"] + s["comm"]) / s["wall"], rtol):
        return Result(False, "You counted communication as waiting; only `idle` spans are waiting.")
    if got > 1 or got < 0:
        return Result(False, f"A fraction lies between 0 and 1; you gave {got}.")
    return Result(False, f"You gave {float(got):.4g}. Sum `dur` of rank {rank}'s spans with cat == 'idle' "
                         "and divide by its wall time (the end of its last span).")


def ring_allreduce_bytes(answer: float | Callable, nbytes: float, world: int, rtol: float = 1e-6) -> Result:
    """Check the bytes each rank sends in a ring all-reduce of ``nbytes`` over ``world`` ranks.

    ``answer`` is a number or a function ``f(nbytes, world)``. The ring (Thakur,
    Rabenseifner & Gropp 2005) sends (p-1)/p of the data in its reduce-scatter and again
    in its all-gather.
    """
    got = _value(answer, nbytes, world)
    if (bad := _number(got, "number of bytes")) is not None:
        return bad
    want = 2 * (world - 1) / world * nbytes
    if _close(got, want, rtol):
        return Result(True, f"Each rank sends 2(p-1)/p x {nbytes:.4g} = {want:.4g} bytes in a ring all-reduce.")
    if _close(got, (world - 1) / world * nbytes, rtol):
        return Result(False, "That is one phase. A ring all-reduce is a reduce-scatter *then* an all-gather.")
    if _close(got, 2 * nbytes, rtol) or _close(got, 2 * (world - 1) * nbytes, rtol):
        return Result(False, "Each step moves one chunk of nbytes / p, not the whole buffer; "
                             "there are 2(p-1) steps.")
    return Result(False, f"You gave {float(got):.4g}. Split the buffer into p chunks; count the chunks "
                         "each rank sends in p-1 reduce-scatter steps and p-1 all-gather steps.")
