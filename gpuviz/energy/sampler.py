"""Energy on every rank of a traced job: a meter sampled beside the tracer.

``gpuviz.launch(..., energy="auto" | "zeus" | "estimate" | "off")`` is checked here and
reaches each rank as ``$GPUVIZ_ENERGY``; each rank's tracer then starts a sampler (a hook
of :mod:`gpuviz.run.hooks`), which writes the ``energy J`` track: a
:class:`CompiledSampler` for the estimate meter where its C thread can be built here (it
never takes the GIL between steps), else a :class:`Sampler`, a Python thread. The rank's
metadata says which (``run.meta["energy"]["thread"]``, and ``why_python``).

>>> from gpuviz.run import hooks
>>> hooks.option("energy").check("estimate", 4)
'estimate'
"""

from __future__ import annotations

import os
import threading
import time

from gpuviz.energy import native
from gpuviz.energy.meters import (
    DEFAULT_PERIOD_S,
    ENV,
    PERIOD_ENV,
    EnergyError,
    EstimateMeter,
    Meter,
    check_meter,
    make_meter,
)
from gpuviz.run import hooks

hooks.register_option(hooks.Option("energy", ENV, lambda value, world: check_meter(value)))


class Sampler(hooks.RankHook):
    """Reads a meter every ``period_s`` on a daemon thread and records the tracer's
    ``energy J`` counter track; :meth:`sample` reads it now (step ends)."""

    name = "energy"
    #: how the readings are taken, for the rank's metadata
    thread = "Python thread"

    def __init__(self, tracer, meter: Meter, period_s: float = DEFAULT_PERIOD_S):
        if isinstance(period_s, bool) or not isinstance(period_s, (int, float)) or not period_s > 0:
            raise ValueError(f"period_s={period_s!r}: give a sampling period in seconds > 0")
        self.tracer, self.meter, self.period_s = tracer, meter, float(period_s)
        self._lock = threading.Lock()
        self.why_python = ""
        self._start()

    def _start(self) -> None:
        self._stop = threading.Event()
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
            self._record(self.tracer.now(), joules)
            return joules

    def _record(self, ts: float, joules: float) -> None:
        """The ``energy J`` counter of one reading at ``ts`` (us); the power between two
        readings is derived from it when the run is read (:func:`gpuviz.energy.attribution.power`)."""
        self.tracer._emit(("energy", ts, {"energy J": round(joules, 6)}))   # a C event

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.sample()

    def info(self) -> dict:
        """The meter, the sampling period and the thread, for the rank's metadata."""
        return {**self.meter.describe(), "period_s": self.period_s, "thread": self.thread,
                **({"why_python": self.why_python} if self.why_python else {})}

    def close(self) -> None:
        """Take a last sample and stop the thread."""
        self._stop.set()
        self._thread.join(timeout=2 * self.period_s + 1.0)
        self.sample()
        self.meter.close()


class CompiledSampler(Sampler):
    """The estimate meter read by a compiled thread (:mod:`gpuviz.energy.native`): the same
    track as :class:`Sampler`, with no Python woken between steps. A step's end adds a
    reading of its own (two clock reads); the thread's readings are taken into the trace
    at a step's end at most every :attr:`take_every_s`, not at every step (a call into C
    there runs when the step's kernels have left little of the interpreter in the CPU's
    caches), and all of them when the rank stops or the tracer closes."""

    thread = "compiled thread"
    #: how often a step's end takes the compiled thread's readings into the trace
    take_every_s = 0.5

    def _start(self) -> None:
        self._readings = native.Readings(self.period_s)
        self._mine: list[tuple[float, float, None]] = []   # the steps' own readings
        self._taken = 0.0
        self._take()

    def sample(self) -> None:
        t = time.perf_counter()
        with self._lock:
            self._mine.append((t, time.process_time(), None))
        if t - self._taken >= self.take_every_s:
            self._take()

    def _take(self) -> None:
        with self._lock:
            rows = sorted(self._readings.take() + self._mine, key=lambda r: r[0])
            self._mine = []
            self._taken = time.perf_counter()
            origin = self.tracer.origin_ns / 1e9
            for (t, _, _), joules in zip(rows, self.meter.at_many(rows), strict=True):
                self._record((t - origin) * 1e6, joules)

    def flush(self) -> None:
        self.sample()
        self._take()

    def close(self) -> None:
        self.flush()
        if self._readings.lost():   # memory ran out: say so rather than draw a gap silently
            self.tracer.instant("energy readings lost", count=self._readings.lost())
        self._readings.close()
        self.meter.close()


def make_sampler(tracer, meter: Meter, period_s: float = DEFAULT_PERIOD_S) -> Sampler:
    """The sampler for ``meter``: the compiled thread for the estimate meter where it can be
    built here, else the Python thread (whose ``info()`` says why)."""
    why = "the compiled thread reads the estimate meter only"
    if isinstance(meter, EstimateMeter):
        if native.load() is not None:
            try:
                return CompiledSampler(tracer, meter, period_s)
            except RuntimeError as e:   # the thread did not start: the Python one will
                why = str(e)
        else:
            why = native.why_not()
    sampler = Sampler(tracer, meter, period_s)
    sampler.why_python = why
    return sampler


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
    return make_sampler(tracer, meter, max(period, meter.update_period_s))
