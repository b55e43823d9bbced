"""Self-checking exercises: each check says "Correct!" or what is wrong and why.

>>> from gpuviz import checks
>>> checks.ring_allreduce_bytes(1.5e6, nbytes=1e6, world=4)
Correct! Each rank sends 2(p-1)/p x 1e+06 = 1.5e+06 bytes in a ring all-reduce.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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


def best_bucket_size(answer: float | Callable, sweep, tolerance: float = 0.25) -> Result:
    """Check a predicted best DDP bucket size (MB) against a measured sweep.

    ``sweep`` is :func:`gpuviz.bucketing.bucket_sweep`'s table; ``answer`` a number of MB
    or a function ``f(sweep)``. It is judged on **exposed communication** (``exposed_ms``,
    the all-reduce time a step waits for after its last gradient), the time bucketing is
    meant to hide: the answer, taken to the nearest measured size, is right when its
    exposed time is within ``tolerance`` (a fraction) of the best measured, since noise
    makes neighbours near-equal.

    >>> import pandas as pd
    >>> sweep = pd.DataFrame({"bucket_mb": [0.1, 1, 10, 100], "n_buckets": [152, 38, 4, 1],
    ...                       "exposed_ms": [700.0, 175.0, 45.0, 120.0]})
    >>> best_bucket_size(10, sweep).ok, best_bucket_size(0.1, sweep).ok
    (True, False)
    """
    got = _value(answer, sweep)
    if (bad := _number(got, "best bucket size in MB")) is not None:
        return bad
    got = float(got)
    if not math.isfinite(got) or got <= 0:
        return Result(False, f"A bucket size is a positive number of MB (DDP's bucket_cap_mb); you gave {got:g}.")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance >= 0:
        raise ValueError(f"tolerance={tolerance!r}: give a fraction >= 0, e.g. 0.25")
    need = {"bucket_mb", "n_buckets", "exposed_ms"}
    if not hasattr(sweep, "columns") or not need <= set(sweep.columns) or len(sweep) == 0:
        raise ValueError("sweep: give the table of gpuviz.bucketing.bucket_sweep(run), with columns "
                         f"{sorted(need)}")
    rows = sweep.sort_values("bucket_mb").reset_index(drop=True)
    sizes = rows["bucket_mb"].astype(float)
    near = rows.loc[(sizes.map(math.log) - math.log(got)).abs().idxmin()]
    best = rows.loc[rows["exposed_ms"].astype(float).idxmin()]
    limit = float(best["exposed_ms"]) * (1 + tolerance)
    fine = [f"{s:g}" for s, e in zip(sizes, rows["exposed_ms"], strict=True) if e <= limit]
    def describe(r) -> str:
        n = int(r["n_buckets"])
        return (f"{r['bucket_mb']:g} MB ({n} bucket{'' if n == 1 else 's'}): "
                f"{float(r['exposed_ms']):.1f} ms of exposed communication")

    which = "" if math.isclose(got, near["bucket_mb"]) else f"your {got:g} MB is nearest to "
    at = which + describe(near)
    if near["bucket_mb"] != best["bucket_mb"]:
        at += f"; the best measured is {describe(best)}"
    else:
        at += ", the lowest measured"
    if near["exposed_ms"] <= limit:
        return Result(True, f"{at[0].upper()}{at[1:]}. Within {tolerance:.0%} of the best: "
                            f"{', '.join(fine)} MB.")
    if near["bucket_mb"] < best["bucket_mb"]:
        return Result(False, f"Too small: {at}. Each bucket's all-reduce pays the latency alpha, so "
                             f"{int(near['n_buckets'])} buckets pay it {int(near['n_buckets'])} times "
                             "(n_buckets x alpha); fewer, bigger buckets pay it less often.")
    hidden = (f" Here {float(near['overlap']):.0%} of the communication was hidden."
              if "overlap" in rows else "")
    return Result(False, f"Too large: {at}. A bucket's all-reduce starts only when all its gradients "
                         "are ready, so big buckets start late: with one bucket, at the end of backward, "
                         f"and none of it overlaps with backward.{hidden}")


def bubble_fraction(answer: float | Callable, stages: int, micro_batches: int,
                    rtol: float = 0.01) -> Result:
    """Check the predicted pipeline bubble: the share of a step each stage idles.

    ``answer`` is a fraction or a function ``f(stages, micro_batches)``. GPipe (Huang et
    al. 2019): with p stages and m micro-batches a step lasts m + p - 1 slots and each
    stage works in m of them.

    >>> bubble_fraction(3 / 11, stages=4, micro_batches=8)
    Correct! With p = 4 stages and m = 8 micro-batches, (p-1)/(m+p-1) = 3/11 = 27.3% of each stage's step is bubble.
    """
    from gpuviz.parallel.pipeline import bubble_fraction as formula

    want = formula(stages, micro_batches)
    got = _value(answer, stages, micro_batches)
    if (bad := _number(got, "bubble fraction")) is not None:
        return bad
    p, m = stages, micro_batches
    if _close(got, want, rtol):
        return Result(True, f"With p = {p} stages and m = {m} micro-batches, (p-1)/(m+p-1) = "
                            f"{p - 1}/{m + p - 1} = {want:.1%} of each stage's step is bubble.")
    if _close(got, want * 100, rtol):
        return Result(False, "That looks like a percentage; give a fraction between 0 and 1.")
    if _close(got, (p - 1) / m, rtol):
        return Result(False, "(p-1)/m compares the bubble with the work; the fraction is of the whole "
                             "step, work plus bubble: (p-1)/(m+p-1).")
    if _close(got, (p - 1) / p, rtol):
        return Result(False, "That is the bubble with one micro-batch; micro-batches let stages overlap.")
    return Result(False, f"You gave {float(got):.4g}. Count slots: the first stage starts at once, the "
                         f"last after p-1 slots; the step lasts m+p-1 slots and each stage works in m.")


def zero_bytes(answer: float | Callable, n_params: float, world: int, stage: int,
               rtol: float = 0.01) -> Result:
    """Check the model-state bytes per rank (fp32 Adam: 4 + 4 + 8 bytes per parameter) under
    ZeRO ``stage`` (Rajbhandari et al. 2020); ``answer`` in bytes or ``f(n_params, world, stage)``.

    >>> zero_bytes(16e9 / 8 + 0, n_params=1e9, world=8, stage=3).ok
    True
    """
    from gpuviz.parallel.zero import zero_memory

    want = zero_memory(n_params, world, stage)
    got = _value(answer, n_params, world, stage)
    if (bad := _number(got, "bytes per rank")) is not None:
        return bad
    parts = ", ".join(f"{k} {v / 1e9:.3g} GB" for k, v in want.items() if k != "total")
    if _close(got, want["total"], rtol):
        return Result(True, f"ZeRO-{stage} on {world} ranks holds {want['total'] / 1e9:.3g} GB per rank "
                            f"({parts}).")
    for s in range(4):
        if s != stage and _close(got, zero_memory(n_params, world, s)["total"], rtol):
            return Result(False, f"That is ZeRO-{s}'s memory. Stage {stage} shards "
                                 + ("the optimizer state" if stage == 1 else
                                    "optimizer state and gradients" if stage == 2 else
                                    "optimizer state, gradients and parameters" if stage == 3 else
                                    "nothing") + ".")
    for scale, unit in ((1e9, "GB"), (2**30, "GiB")):
        if _close(got * scale, want["total"], rtol):
            return Result(False, f"Give bytes, not {unit}: multiply by {scale:.4g}.")
    return Result(False, f"You gave {float(got):.4g} bytes. Per parameter: 4 bytes of weight, 4 of "
                         "gradient, 8 of Adam state; divide by the ranks what the stage shards.")


def gradient_sync(answer: str | Callable, nproc: int = 2, timeout: float = 120.0) -> Result:
    """Run the learner's ``sync_gradients(model)`` on ``nproc`` real ranks inside data-parallel
    training, and compare with one process training on the whole batch.

    ``answer`` is the function itself (defined in a notebook cell; its source, after
    ``import torch`` and ``import torch.distributed as dist``, is what the ranks run) or
    the path of a Python file that defines it. Correct means: after it, every rank's
    gradients are the average over the ranks, so the trained parameters equal the
    single-process ones.
    """
    import inspect
    import json
    import tempfile
    import textwrap

    import gpuviz

    if callable(answer):
        try:
            source = textwrap.dedent(inspect.getsource(answer))
        except (OSError, TypeError):
            return Result(False, "Cannot read your function's source; define it with `def` in a cell.")
        if answer.__name__ != "sync_gradients":
            source += f"\n\nsync_gradients = {answer.__name__}\n"
        folder = Path(tempfile.mkdtemp(prefix="gpuviz-exercise-"))
        path = folder / "sync_gradients.py"
        path.write_text("import torch\nimport torch.distributed as dist\n\n" + source, encoding="utf-8")
    elif isinstance(answer, (str, Path)):
        path = Path(answer)
        if not path.is_file():
            return Result(False, f"There is no file {str(answer)!r}; pass your function, or a file that defines it.")
    else:
        return Result(False, "Pass your function sync_gradients (or the path of a file that defines it).")
    try:
        run = gpuviz.launch("gpuviz.workloads.exercises:gradient_sync", nproc=nproc,
                            args={"path": str(path)}, timeout=timeout, progress=False, stream=False)
    except gpuviz.RankHung as e:
        return Result(False, "The job hung: some rank waited in a collective that another rank never "
                             "called. Every rank must make the same collective calls in the same order.\n"
                             + str(e).splitlines()[0])
    except gpuviz.RankFailed as e:
        return Result(False, "Your function raised an error on a rank:\n" + str(e).split("\n\n")[0])
    found = [json.loads((run.path / f"exercise_rank{r}.json").read_text()) for r in range(nproc)]
    if any(f["grads_missing"] for f in found):
        return Result(False, "After your function some parameter has no gradient (p.grad is None); "
                             "average the gradients in place, keep them.")
    worst_mean = max(max(f["grad_vs_mean"]) for f in found)
    worst_sum = max(max(f["grad_vs_sum"]) for f in found)
    diff = max(f["param_diff"] for f in found)
    if worst_mean < 1e-5 and diff < 1e-4:
        return Result(True, f"On {nproc} ranks every gradient is the average, and after "
                            f"{len(found[0]['grad_vs_mean'])} Adam steps the parameters match one process "
                            f"on the whole batch (largest difference {diff:.1e}).")
    if worst_sum < 1e-5:
        return Result(False, "Your gradients are the *sum* over ranks. Each rank's loss is already a "
                             f"mean over its slice: divide the sum by the world size ({nproc}).")
    return Result(False, f"After your function the gradients differ from the average over ranks by up "
                         f"to {worst_mean:.3g}, and the parameters from one process by {diff:.3g}. "
                         "Use dist.all_reduce on every p.grad, then divide by dist.get_world_size().")


def straggler_wait(answer: float | Callable, mean_s: float, nproc: int, rtol: float = 0.01) -> Result:
    """Check the expected wait (seconds) of a rank in a collective of ``nproc`` ranks, when
    every rank is late by an independent exponential delay of mean ``mean_s``.

    ``answer`` is a number of seconds, or a function ``f(mean_s, n)`` (then it is also
    tried at other rank counts). The right value is :func:`gpuviz.stragglers.expected_wait`:
    E[max of N] - E[X] = mean x (H_N - 1), H_N = 1 + 1/2 + ... + 1/N (the largest order
    statistic; David & Nagaraja, "Order Statistics", 2003).

    >>> straggler_wait(0.010 * (1 / 2 + 1 / 3 + 1 / 4), mean_s=0.010, nproc=4)
    Correct! With N = 4 ranks and exponential delays of mean 10 ms, a rank waits E[max] - E[X] = 10 ms x (H_4 - 1) = 10.83 ms per step.
    >>> straggler_wait(0.010 * (1 + 1 / 2 + 1 / 3 + 1 / 4), mean_s=0.010, nproc=4).ok
    False
    """
    from gpuviz.stragglers import expected_wait, harmonic

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


# The energy lab's checks live beside the code they check; re-exported here.
from gpuviz.energy_checks import co2_grams, energy_per_sample, pareto_configs, waiting_joules  # noqa: E402, F401
from gpuviz.model_checks import best_layout, dominant_term, fits_in_memory, mfu_from_throughput  # noqa: E402, F401
