"""Checks for Lab 01, parallelism: the pipeline bubble, ZeRO's bytes per rank, and a
gradient sync written by the learner, run on real ranks.

>>> from gpuviz import checks    # every check, by name
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from gpuviz.checks.core import Result, _close, _number, _value


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
    import tempfile
    import textwrap

    if callable(answer):
        try:
            source = textwrap.dedent(inspect.getsource(answer))
        except (OSError, TypeError):
            return Result(False, "Cannot read your function's source; define it with `def` in a cell.")
        if answer.__name__ != "sync_gradients":
            source += f"\n\nsync_gradients = {answer.__name__}\n"
        folder = Path(tempfile.mkdtemp(prefix="gpuviz-exercise-"))   # removed when the job ends
        path = folder / "sync_gradients.py"
        path.write_text("import torch\nimport torch.distributed as dist\n\n" + source, encoding="utf-8")
    elif isinstance(answer, (str, Path)):
        path = Path(answer)
        if not path.is_file():
            return Result(False, f"There is no file {str(answer)!r}; pass your function, or a file that defines it.")
    else:
        return Result(False, "Pass your function sync_gradients (or the path of a file that defines it).")
    try:
        return _judge_gradient_sync(path, nproc, timeout)
    finally:
        if callable(answer):   # the folder written above
            shutil.rmtree(path.parent, ignore_errors=True)


def _judge_gradient_sync(path: Path, nproc: int, timeout: float) -> Result:
    import json

    import gpuviz

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
