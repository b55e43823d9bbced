"""Energy on every rank of a traced job: a meter sampled beside the tracer.

``gpuviz.launch(..., energy="auto" | "zeus" | "estimate" | "off")`` is checked here and
reaches each rank as ``$GPUVIZ_ENERGY``; each rank's tracer then starts a :class:`Sampler`
(a hook of :mod:`gpuviz.run.hooks`), which writes the ``energy J`` and ``power W`` tracks.

>>> from gpuviz.run import hooks
>>> hooks.option("energy").check("estimate", 4)
'estimate'
"""

from __future__ import annotations

import os
import threading

from gpuviz.energy.meters import (
    DEFAULT_PERIOD_S,
    ENV,
    PERIOD_ENV,
    THREAD_PERIOD_S,
    EnergyError,
    Meter,
    check_meter,
    make_meter,
)
from gpuviz.run import hooks

hooks.register_option(hooks.Option("energy", ENV, lambda value, world: check_meter(value)))


class Sampler(hooks.RankHook):
    """Reads a meter about every ``period_s`` and records the tracer's ``energy J`` and
    ``power W`` counter tracks; :meth:`sample` reads it now (step ends).

    The readings are taken between spans, on the thread that runs them: when a span starts
    or ends ``period_s`` or more after the last reading (:meth:`Tracer.run_between_spans
    <gpuviz.run.tracer.Tracer.run_between_spans>`). A daemon thread wakes every
    ``thread_period_s`` and reads the meter only if nothing has for two periods (a long
    span, a rank blocked in a collective). A thread that wakes to read must take the
    interpreter from the training loop; ``benchmarks/trace_parts.py`` measures what each
    reading costs the step.
    """

    name = "energy"

    def __init__(self, tracer, meter: Meter, period_s: float = DEFAULT_PERIOD_S,
                 thread_period_s: float = THREAD_PERIOD_S):
        for name, v in (("period_s", period_s), ("thread_period_s", thread_period_s)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{name}={v!r}: give a sampling period in seconds > 0")
        self.tracer, self.meter, self.period_s = tracer, meter, float(period_s)
        self.thread_period_s = max(float(thread_period_s), self.period_s)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last: tuple[float, float] | None = None
        self.sample()
        self._thread = threading.Thread(target=self._run, name="gpuviz-energy", daemon=True)
        self._thread.start()

    def sample(self) -> float | None:
        """Read the meter now and record it; returns the cumulative joules (None on failure)."""
        with self._lock:
            try:
                joules = self.meter.read()
            except EnergyError as e:   # record it and go on: the run matters more
                self.tracer.instant("energy counter error", error=str(e))
                return None
            ts = self.tracer.now()
            t = self.tracer
            t._emit({"ph": "C", "name": "energy", "ts": round(ts, 3), "pid": t.rank,
                     "args": {"energy J": round(joules, 6)}})
            if self._last is not None and ts > self._last[0]:
                watts = (joules - self._last[1]) / ((ts - self._last[0]) / 1e6)
                t._emit({"ph": "C", "name": "power", "ts": self._last[0], "pid": t.rank,
                         "args": {"power W": round(watts, 4)}})
            self._last = (ts, joules)
            if not self._stop.is_set():
                t.run_between_spans(self.sample, ts + 1e6 * self.period_s)
            return joules

    def _run(self) -> None:
        while not self._stop.wait(self.thread_period_s):
            if self._last is None or self.tracer.now() - self._last[0] >= 2e6 * self.period_s:
                self.sample()

    def info(self) -> dict:
        """The meter and the sampling periods, for the rank's metadata."""
        return {**self.meter.describe(), "period_s": self.period_s,
                "thread_period_s": self.thread_period_s}

    def close(self) -> None:
        """Take a last sample and stop the thread."""
        self._stop.set()
        self.tracer.run_between_spans(None)
        self._thread.join(timeout=2 * self.thread_period_s + 1.0)
        self.sample()
        self.meter.close()


@hooks.register_rank_hook
def start_sampler(tracer) -> Sampler | None:
    """The sampler this rank's environment asks for (``$GPUVIZ_ENERGY``, default ``auto``;
    ``$GPUVIZ_ENERGY_PERIOD`` seconds), or None when it is ``off``."""
    name = os.environ.get(ENV, "auto")
    period = float(os.environ.get(PERIOD_ENV, DEFAULT_PERIOD_S))
    gpu = None
    if tracer.cuda:   # an NCCL job: this rank's GPU; a CPU job on a GPU machine measures no GPU
        import torch

        gpu = torch.cuda.current_device()
    meter = make_meter(name, warn=False, gpu_index=gpu)
    if meter is None:
        return None
    return Sampler(tracer, meter, max(period, meter.update_period_s))
