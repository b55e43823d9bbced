"""Workers that stop by themselves when the process that launched them is gone.

torchrun runs in a session of its own, so a launcher that is killed (a notebook kernel
restarted, ``gpuviz run`` killed by a scheduler) takes no worker with it. Every worker of a
job started by :func:`gpuviz.launch` therefore watches its launcher (``$GPUVIZ_LAUNCHER``:
pid and start time, so a reused pid does not fool it); when it is gone, the worker records
it, marks ``run.json`` ``"launcher gone"``, and torchrun is asked to
stop every worker, each of which writes its open spans first.

>>> launcher_alive(f"{os.getpid()}:{psutil.Process().create_time()}")
True
>>> launcher_alive("999999999:0")
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


def launcher_alive(spec: str) -> bool:
    """Whether the process ``spec`` (``"PID:CREATE_TIME"``) still runs."""
    pid, _, created = spec.partition(":")
    try:
        p = psutil.Process(int(pid))
        return abs(p.create_time() - float(created)) < 0.01 and p.status() != psutil.STATUS_ZOMBIE
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
