"""A rank that does not end once its work is over is ended, its stacks logged.

Once a rank's work is over (its target returned or raised), the worker closes its trace
and destroys its process group, and the interpreter exits: it runs the exit handlers, then
frees every module and object, and the destructors of native objects (a process group's
backend, a DDP reducer) run there. A step of that which blocks (a communicator that waits
for a peer gone away) leaves a rank that has done everything and never ends, and a job
whose other ranks have left waits for it for ever. So the watchdog is armed twice: around
the worker's own closing (:func:`teardown`), and again as the exit handlers start
(:func:`watch_exit`: after the script's own threads have been joined and its own exit
handlers have run, which may take as long as they need). If the rank is still there
:data:`ENV` seconds later (default :data:`DEFAULT_S`), faulthandler writes every thread's
Python stack to the rank's log and, a second later, SIGALRM ends the process. Both are set
off by the kernel and a C thread, so they act while the interpreter is stuck in native
code. The launcher then names the rank, says why and shows the stacks
(:func:`gpuviz.run.failures.job_error`).

>>> grace_s({})
60.0
>>> grace_s({ENV: "off"}) is None
True
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import math
import os
import signal
import sys

#: Seconds a rank may take to end once its work is over; "off": no limit.
ENV = "GPUVIZ_EXIT_GRACE"
DEFAULT_S = 60.0
#: What the launcher says a rank that SIGALRM ended was (see :func:`arm`); ``{logs}``: where
#: the ranks' logs are.
WHY = (f"its work was over, but it had not ended ${ENV} seconds later (default "
       f"{DEFAULT_S:.0f}), so gpuviz's exit watchdog ended it; every thread's Python stack is "
       "in its log under {logs}, after the line 'Timeout'")


def grace_s(env=None) -> float | None:
    """The grace ``$GPUVIZ_EXIT_GRACE`` gives (None: "off"); a bad value is a ValueError
    naming the variable."""
    raw = (os.environ if env is None else env).get(ENV, "").strip()
    if raw == "":
        return DEFAULT_S
    if raw.lower() == "off":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"${ENV}={raw!r}: give the seconds a rank may take to end once its "
                         f"work is over (a number > 0; default {DEFAULT_S:.0f}), or 'off'")
    return value


def arm(seconds: float) -> None:
    """From now, end this process in ``seconds`` (plus one) unless it has exited, writing
    every thread's stack to stderr first."""
    try:
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
    except ValueError:   # not the main thread: faulthandler ends it (exit code 1) instead
        faulthandler.dump_traceback_later(seconds, exit=True, file=sys.__stderr__)
        return
    faulthandler.dump_traceback_later(seconds, exit=False, file=sys.__stderr__)
    signal.alarm(math.ceil(seconds) + 1)


def watch_exit(env=None) -> float | None:
    """Arm :func:`arm` when the interpreter starts exiting (an exit handler registered now,
    before any a script registers: those run first, this one after them). Returns the grace
    (None when ``$GPUVIZ_EXIT_GRACE`` is "off")."""
    seconds = grace_s(env)
    if seconds is not None:
        atexit.register(arm, seconds)
    return seconds


def disarm() -> None:
    """Undo :func:`arm`."""
    faulthandler.cancel_dump_traceback_later()
    signal.alarm(0)


@contextlib.contextmanager
def teardown(seconds: float | None):
    """Armed for ``seconds`` while inside (None: not armed): the worker's own closing."""
    if seconds is None:
        yield
        return
    arm(seconds)
    try:
        yield
    finally:
        disarm()
