"""The tracer as workloads use it: ``from gpuviz import trace``.

Used from a workload (``gpuviz.launch`` starts the tracer for you)::

    from gpuviz.run import trace
    for step in range(10):
        with trace.span("forward"):
            loss = model(x).sum()
        with trace.span("backward"):
            loss.backward()
        trace.all_reduce_grads(model)
        trace.step()

Without a tracer (a plain ``python`` run) every function here is a cheap no-op. The
recorder itself is :mod:`gpuviz.run.tracer`; instrumented communication (``all_reduce``,
``all_reduce_grads``, ``backward``, ``ddp_comm_hook``) is :mod:`gpuviz.run.comm`.

>>> from gpuviz.run import trace
>>> with trace.span("forward"):
...     pass
>>> trace.step()
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from gpuviz.run.comm import all_reduce, all_reduce_grads, backward, ddp_comm_hook
from gpuviz.run.meta import collect_meta
from gpuviz.run.tracer import (
    COMM_LANE,
    MAIN_LANE,
    Tracer,
    get_tracer,
    set_tracer,
    span,
)
from gpuviz.run.watchdog import DUMP_REQUEST, start_watchdog

__all__ = ["span", "step", "init", "close", "counter", "set_total_steps", "resume",
           "get_tracer", "set_tracer", "flush_on_sigterm", "Tracer", "collect_meta",
           "start_watchdog", "all_reduce", "all_reduce_grads", "backward", "ddp_comm_hook",
           "MAIN_LANE", "COMM_LANE", "DUMP_REQUEST"]


def init(run_dir: str | os.PathLike | None = None, *, cuda: bool | None = None,
         total_steps: int | None = None, **info: Any) -> Tracer:
    """Start this rank's tracer (the launcher's worker does this for you).

    Call it after ``torch.distributed.init_process_group``; ``run_dir`` defaults to
    ``$GPUVIZ_RUN_DIR``. Under a plain ``torchrun`` a script can call it itself::

        dist.init_process_group("gloo"); trace.init("runs/mine", total_steps=100)
    """
    import torch.distributed as dist

    if run_dir is None:
        run_dir = os.environ.get("GPUVIZ_RUN_DIR")
        if not run_dir:
            raise ValueError("run_dir is not given and $GPUVIZ_RUN_DIR is not set: "
                             "pass the directory the rank files should go to")
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if cuda is None:
        cuda = bool(dist.is_initialized() and dist.get_backend() == "nccl")
    old = get_tracer()
    if old is not None and not old.closed:
        old.close()
    t = Tracer(run_dir, rank, world, cuda=cuda)
    set_tracer(t)
    t.start(total_steps=total_steps, **info)
    return t


def flush_on_sigterm() -> threading.Thread:
    """Make SIGTERM write the open spans before the process exits.

    Python runs signal handlers only between bytecodes, never while a rank is blocked
    in a collective; so SIGTERM is blocked here and taken by a thread with ``sigwait``.
    Call before any other thread starts (they inherit the blocked mask).
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def wait():
        signal.sigwait({signal.SIGTERM})
        t = get_tracer()
        if t is not None and not t.closed:
            try:
                t.write_open_spans("terminated")
            except Exception:  # noqa: BLE001 - exiting anyway
                pass
        os._exit(128 + signal.SIGTERM)

    th = threading.Thread(target=wait, name="gpuviz-sigterm", daemon=True)
    th.start()
    return th


def step(**args: Any) -> None:
    """End the current training step and write it to disk."""
    t = get_tracer()
    if t is not None:
        t.step(**args)


def set_total_steps(total: int) -> None:
    """Say how many steps the job will run (the launcher's progress bar; no step beyond it
    starts, and an injected failure or hang beyond it is a ValueError raised here)."""
    t = get_tracer()
    if t is not None:
        t.set_total_steps(total)


def resume(step: int) -> None:
    """Continue the step count at ``step`` after loading a checkpoint, so the steps of a
    restarted attempt keep their numbers (:func:`gpuviz.sync.checkpoint.load_latest` calls it)."""
    t = get_tracer()
    if t is not None:
        t.resume(step)


def counter(name: str, value: float) -> None:
    """Record a value on a counter track (power in W, memory in bytes...)."""
    t = get_tracer()
    if t is not None:
        t.counter(name, value)


def close() -> None:
    """Write what is left and close this rank's trace file."""
    t = get_tracer()
    if t is not None:
        t.close()
        set_tracer(None)

