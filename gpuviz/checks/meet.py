"""Checks for Lab 00, meet your cluster: the idle fraction of a rank.

>>> from gpuviz import checks    # every check, by name
"""

from __future__ import annotations

from collections.abc import Callable

from gpuviz.checks.core import Result, _close, _number, _value


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
    all_idle = run.summary()["idle"].sum()
    traced = s["wall"] - s["untraced"]
    mistakes = [
        (s["idle"], "seconds", "That is the time in seconds; divide by the rank's wall time."),
        ((s["idle"] + s["comm"]) / s["wall"], "counted comm",
         "You counted communication as waiting; only `idle` spans are waiting."),
        (s["idle"] / traced, "divided by traced time",
         f"You divided by the time in spans ({traced:.4f} s); the wall time ({s['wall']:.4f} s) "
         "also holds the untraced time, from 0 to the end of the rank's last span."),
        (all_idle / s["wall"], "all ranks",
         f"You added up the idle spans of every rank; keep only rank {rank}'s "
         "(spans[spans['rank'] == rank])."),
    ]
    for value, mistake, hint in mistakes:
        if _close(got, value, rtol):
            return Result(False, hint, mistake=mistake)
    if got > 1 or got < 0:
        return Result(False, f"A fraction lies between 0 and 1; you gave {got}.")
    return Result(False, f"You gave {float(got):.4g}. Sum `dur` of rank {rank}'s spans with cat == 'idle' "
                         "and divide by its wall time (the end of its last span).")
