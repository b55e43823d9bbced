"""Workers that stop by themselves when the process that launched them is gone.

torchrun runs in a session of its own, so a launcher that is killed (a notebook kernel
restarted, ``gpuviz run`` killed by a scheduler) takes no worker with it. Every worker of a
job started by :func:`gpuviz.launch` therefore watches its launcher (``$GPUVIZ_LAUNCHER``:
pid and start, so a reused pid does not fool it); when it is gone, the worker records
it, marks ``run.json`` ``"launcher gone"``, and torchrun is asked to
stop every worker, each of which writes its open spans first.

A process's start is read where no clock change moves it: on Linux, in clock ticks since
boot from ``/proc/PID/stat``. psutil's ``create_time`` adds the boot time worked out from
the wall clock at each call, which moves when the clock is adjusted (psutil issue #2526),
so a check on it can call a live launcher gone (a test's job was once stopped as "launcher
gone" while its launcher ran).

>>> launcher_alive(launcher_spec())
True
>>> launcher_alive("999999999:ticks0")
False
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import psutil

from gpuviz.run.files import update_json

#: Set by the launcher: ``"PID:CREATE_TIME"`` of the process that called ``launch``.
ENV = "GPUVIZ_LAUNCHER"
#: The status ``run.json`` gets when the launcher died before the job ended.
STATUS = "launcher gone"


_PROC = os.path.isdir("/proc/self")


def _ticks(pid: int) -> str | None:
    """``"ticks N"``: when process ``pid`` started, in clock ticks since boot (Linux's
    ``/proc/PID/stat``, field 22: nothing changes it); None where it cannot be read."""
    if not _PROC:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:   # the name (field 2) may hold spaces
            return f"ticks {int(f.read().rsplit(b')', 1)[1].split()[19])}"
    except (OSError, IndexError, ValueError):
        return None


def launcher_spec(pid: int | None = None) -> str:
    """``"PID:START"`` of process ``pid`` (default: this one), for ``$GPUVIZ_LAUNCHER``:
    its start in clock ticks where Linux gives it, else psutil's ``create_time``."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{_ticks(pid) or repr(psutil.Process(pid).create_time())}"


def launcher_alive(spec: str) -> bool:
    """Whether the process ``spec`` (``"PID:START"``, :func:`launcher_spec`) still runs."""
    pid, _, then = spec.partition(":")
    try:
        if then.startswith("ticks"):
            same = _ticks(int(pid)) == then
        else:   # create_time moves with the wall clock: a second either way is the same start
            same = abs(psutil.Process(int(pid)).create_time() - float(then)) < 1.0
        return same and psutil.Process(int(pid)).status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, ValueError):
        return False


def watch_launcher(on_gone: Callable[[], None], interval: float = 0.5) -> threading.Thread | None:
    """Call ``on_gone`` (on a daemon thread) once the launcher named by ``$GPUVIZ_LAUNCHER``
    is gone; None when there is none to watch (a job started by plain torchrun)."""
    spec = os.environ.get(ENV)
    if not spec:
        return None

    def watch() -> None:
        while launcher_alive(spec):
            time.sleep(interval)
        on_gone()

    th = threading.Thread(target=watch, name="gpuviz-launcher-watch", daemon=True)
    th.start()
    return th


def stop_orphaned_job(tracer=None, grace: float = 10.0) -> None:
    """What a worker does when its launcher is gone: record it, mark ``run.json``, ask
    torchrun (its parent) to stop every worker, and exit."""
    if tracer is not None and not tracer.closed:
        tracer.instant("launcher gone", cat="event")
        tracer._write_now()   # the open spans follow on SIGTERM, from torchrun
    run_json = os.environ.get("GPUVIZ_RUN_JSON")
    if run_json:   # whichever worker notices first, before any is stopped (all write the same)
        try:
            update_json(run_json, status=STATUS, finished_at=time.time(),
                        note="the process that launched the job ended before it; torchrun and "
                             "every worker were stopped")
        except OSError:
            pass
    try:
        os.kill(os.getppid(), signal.SIGTERM)   # torchrun: it stops every worker, us too
    except OSError:
        pass
    time.sleep(grace)                           # torchrun is gone already: go alone
    if tracer is not None and not tracer.closed:
        tracer.write_open_spans(STATUS)
    os._exit(128 + signal.SIGTERM)
