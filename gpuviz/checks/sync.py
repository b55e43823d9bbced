"""Checks for Lab 03, sync: the wait for the slowest rank, the steps a restart redoes.

>>> from gpuviz import checks    # every check, by name
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from gpuviz.checks.core import Result, _close, _number, _value


def straggler_wait(answer: float | Callable, mean_s: float, nproc: int, rtol: float = 0.01) -> Result:
    """Check the expected wait (seconds) of a rank in a collective of ``nproc`` ranks, when
    every rank is late by an independent exponential delay of mean ``mean_s``.

    ``answer`` is a number of seconds, or a function ``f(mean_s, n)`` (then it is also
    tried at other rank counts). The right value is :func:`gpuviz.sync.stragglers.expected_wait`:
    E[max of N] - E[X] = mean x (H_N - 1), H_N = 1 + 1/2 + ... + 1/N (the largest order
    statistic; David & Nagaraja, "Order Statistics", 2003).

    >>> straggler_wait(0.010 * (1 / 2 + 1 / 3 + 1 / 4), mean_s=0.010, nproc=4)
    Correct! With N = 4 ranks and exponential delays of mean 10 ms, a rank waits E[max] - E[X] = 10 ms x (H_4 - 1) = 10.83 ms per step.
    >>> straggler_wait(0.010 * (1 + 1 / 2 + 1 / 3 + 1 / 4), mean_s=0.010, nproc=4).ok
    False
    """
    from gpuviz.sync.order_stats import expected_wait, harmonic

    if isinstance(mean_s, bool) or not isinstance(mean_s, (int, float)) or not mean_s > 0:
        raise ValueError(f"mean_s={mean_s!r}: give the mean delay in seconds, > 0")
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 2:
        raise ValueError(f"nproc={nproc!r}: give a number of ranks >= 2 (someone to wait for)")

    def want(n: int) -> float:
        return expected_wait({"dist": "exponential", "mean_s": mean_s}, n)

    def ms(x: float) -> str:
        return f"{x * 1e3:.3g} ms"

    got = _value(answer, mean_s, nproc)
    if (bad := _number(got, "expected wait in seconds")) is not None:
        return bad
    got, n, mu = float(got), nproc, mean_s
    if _close(got, want(n), rtol):
        if callable(answer):
            for other in (2, 3, 8, 64, 1024):
                try:
                    theirs = float(answer(mean_s, other))
                except Exception as e:  # noqa: BLE001 - the learner's code: say what it raised
                    return Result(False, f"Right at N = {n}, but at N = {other} your function raised "
                                         f"{type(e).__name__}: {e}")
                if not _close(theirs, want(other), rtol):
                    hint = ""
                    if _close(theirs, mu * (math.log(other) + 0.5772156649 - 1), rtol):
                        hint = (" That is the approximation H_N ~ ln N + 0.577, good only for large N; "
                                "use the exact sum 1 + 1/2 + ... + 1/N.")
                    return Result(False, f"Right at N = {n}, but at N = {other} your function gives "
                                         f"{ms(theirs)} and the order statistics {ms(want(other))}.{hint}")
        return Result(True, f"With N = {n} ranks and exponential delays of mean {ms(mu)}, a rank waits "
                            f"E[max] - E[X] = {ms(mu)} x (H_{n} - 1) = {want(n) * 1e3:.2f} ms per step.")
    h, euler = harmonic(n), 0.5772156649
    if got < 0:
        return Result(False, f"A wait cannot be negative; you gave {got:g} s.")
    if _close(got, want(n) * 1e3, rtol):
        return Result(False, "That is the right number in milliseconds; give seconds (divide by 1000).")
    if _close(got, mu * h, rtol) or _close(got, mu * (math.log(n) + euler), rtol):
        return Result(False, f"That is E[max of N] = mu H_N = {ms(mu * h)}: when the *last* rank arrives, "
                             "counted from the start of the step. A rank waits from its own arrival, on "
                             "average E[X] = mu after the start: subtract it.")
    if _close(got, mu * math.log(n), rtol):
        return Result(False, "mu ln N says how the wait grows, not what it is: E[max of N] = mu H_N with "
                             "H_N = 1 + 1/2 + ... + 1/N (about ln N + 0.577), and a rank waits "
                             "E[max] - E[X].")
    if _close(got, mu * (math.log(n) + euler - 1), rtol):
        return Result(False, f"Close: you used H_N ~ ln N + 0.577, good for large N. At N = {n} the exact "
                             f"H_{n} = {h:.4f} gives {want(n) * 1e3:.2f} ms.")
    if _close(got, mu * harmonic(n - 1), rtol):
        return Result(False, "That is E[max] of the *other* N-1 ranks' delays. A rank waits until the last "
                             "of all N arrives, minus its own delay: E[max of N] - E[X].")
    if _close(got, mu, rtol):
        return Result(False, "That is one rank's own mean delay. The collective waits for the slowest "
                             "of N: compare E[max of N] with E[X].")
    if _close(got, mu * n, rtol) or _close(got, mu * (n - 1), rtol):
        return Result(False, "That grows in proportion to N. Ranks are late at the same time, not one "
                             "after another: the step waits for the *maximum* of N delays, which grows "
                             "like ln N.")
    if got == 0:
        return Result(False, "Every rank waits unless it is the last to arrive: with random delays the "
                             "others wait for the slowest on every step.")
    return Result(False, f"You gave {ms(got)}. The last of N ranks arrives E[max of N] after the step "
                         "starts; for exponential delays E[max] = mu (1 + 1/2 + ... + 1/N); a rank "
                         "waits E[max] - E[X].")


def redone_steps(answer: Any, run) -> Result:
    """Check which steps a restarted run computed twice: those done after the last checkpoint
    before the failure, lost with the failure and run again.

    ``run`` is a run of ``gpuviz.workloads.mlp:train`` with ``checkpoint_every`` and one
    elastic restart. ``answer`` is a list of step numbers, or a function
    ``f(every, fail_step)`` (then also tried on other cases). Checkpoint k holds the
    state after k steps (steps 0..k-1, saved at the end of step k-1), so a failure as step
    f starts resumes from the largest multiple of ``every`` not above f.

    >>> _redo_rule(every=4, fail_step=7), _redo_rule(every=4, fail_step=8)
    ([4, 5, 6], [])
    """
    every = (run.meta.get("args") or {}).get("checkpoint_every")
    ev = run.events
    ends = ev[(ev["name"] == "step_end") & (ev["rank"] == 0)]
    if not every or run.meta.get("restarts", 0) < 1 or run.errors().empty:
        raise ValueError(f"run={run.path}: give a run that checkpointed (args checkpoint_every=k) and "
                         "restarted after a failure (max_restarts=1, inject=[inject.fail_at(...)])")
    first = run.errors().iloc[0]
    fail = int(first["step"])
    done = {a: set(map(int, e["step"])) for a, e in ends.groupby("attempt")}
    measured = sorted(done.get(0, set()) & set().union(*(s for a, s in done.items() if a > 0)))
    case = f"checkpoints every {every} steps, failure as step {fail} started"

    def as_steps(value) -> list[int] | Result:
        if value is None:
            return Result(False, "Replace `None` with your list of steps.")
        if isinstance(value, int) and not isinstance(value, bool):
            return Result(False, f"{value} looks like a count; give the steps themselves, e.g. "
                                 "list(range(a, b)).")
        if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
            return Result(False, f"Give a list of step numbers, not {type(value).__name__} {value!r}.")
        try:
            steps = [int(v) for v in value]
        except (TypeError, ValueError):
            return Result(False, f"Give a list of integers (step numbers); you gave {value!r}.")
        return sorted(set(steps))

    def call(e: int, f: int):
        try:
            return as_steps(_value(answer, e, f))
        except Exception as err:  # noqa: BLE001 - the learner's code: say what it raised
            err = getattr(err, "exc", err)   # a LearnerError carries what their function raised
            return Result(False, f"With every = {e} and a failure at step {f} your function raised "
                                 f"{type(err).__name__}: {err}")

    got = call(every, fail)
    if isinstance(got, Result):
        return got
    if got == measured:
        if callable(answer):
            for e, f in ((every, every * 2), (every, every - 1), (every + 1, 3 * every + 2)):
                theirs = call(e, f)
                if isinstance(theirs, Result) and theirs.message.startswith("With every"):
                    return theirs
                if isinstance(theirs, Result) or theirs != _redo_rule(e, f):
                    return Result(False, f"Right for this run ({case}), but with every = {e} and a "
                                         f"failure at step {f} your function gives {theirs} and the "
                                         f"restart redoes {_redo_rule(e, f)}.")
        ckpt = every * (fail // every)
        if ckpt == 0:
            return Result(True, f"With {case}, no checkpoint was saved yet: the restart began again at "
                                f"step 0 and ran steps {_span(measured)} a second time.")
        return Result(True, f"With {case}, the restart loaded checkpoint {ckpt} (the state after steps "
                            f"0 to {ckpt - 1}) and ran {_span(measured)} a second time; every step "
                            f"before {ckpt} was kept.")
    ckpt = every * (fail // every)
    if got == list(range(ckpt, fail + 1)):
        return Result(False, f"Step {fail} failed as it started: it never finished in the first attempt, "
                             "so running it after the restart is its first time, not a second.")
    if got == list(range(0, fail)) and ckpt > 0:
        return Result(False, f"The restart does not start from scratch: it loads checkpoint {ckpt}, so "
                             f"steps before {ckpt} are kept.")
    if got in (list(range(ckpt + 1, fail)), list(range(ckpt + 1, fail + 1))):
        return Result(False, f"Checkpoint {ckpt} is the state after {ckpt} steps (0..{ckpt - 1}): the "
                             f"first step run again is step {ckpt} itself.")
    return Result(False, f"You gave {got}; with {case} the run computed {measured} twice. Find the last "
                         "checkpoint saved before the failure (checkpoint k = the state after k steps).")


def _redo_rule(every: int, fail_step: int) -> list[int]:
    """Steps run twice when a run saving every ``every`` steps fails as ``fail_step`` starts."""
    return list(range(every * (fail_step // every), fail_step))


def _span(steps: list[int]) -> str:
    if not steps:
        return "no step"
    if steps == list(range(steps[0], steps[-1] + 1)) and len(steps) > 2:
        return f"steps {steps[0]} to {steps[-1]}"
    return ("step " if len(steps) == 1 else "steps ") + ", ".join(map(str, steps))
