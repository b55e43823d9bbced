"""The hang report's watchdog: a thread on every rank that answers the launcher's request.

When a job stops making progress, the launcher creates :data:`DUMP_REQUEST` in the run
directory; each rank's watchdog sees it and writes a ``where`` event (open spans, every
thread's Python stack) with :meth:`gpuviz.run.tracer.Tracer.report_where`.

>>> DUMP_REQUEST
'.gpuviz-dump-request'
"""

from __future__ import annotations

import threading
import time

#: A file the launcher creates to ask every rank to report where it is (hang report).
DUMP_REQUEST = ".gpuviz-dump-request"


def start_watchdog(t, interval: float = 0.2) -> threading.Thread:
    """A daemon thread that answers the launcher's hang-report request for tracer ``t``.

    It runs while the main thread is blocked inside a collective (those release the GIL).
    """
    request = t.run_dir / DUMP_REQUEST

    def watch():
        answered = False
        while not t.closed:
            if request.exists() and not answered:
                t.report_where()
                answered = True
            time.sleep(interval)

    th = threading.Thread(target=watch, name="gpuviz-watchdog", daemon=True)
    th.start()
    return th
