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
    EnergyError,
    Meter,
    check_meter,
    make_meter,
)
from gpuviz.run import hooks

hooks.register_option(hooks.Option("energy", ENV, lambda value, world: check_meter(value)))


class Sampler(hooks.RankHook):
    """Reads a meter every ``period_s`` on a daemon thread and records the tracer's
    ``energy J`` and ``power W`` counter tracks; :meth:`sample` reads it now (step ends)."""

    name = "energy"

    def __init__(self, tracer, meter: Meter, period_s: float = DEFAULT_PERIOD_S):
        if isinstance(period_s, bool) or not isinstance(period_s, (int, float)) or not period_s > 0:
            raise ValueError(f"period_s={period_s!r}: give a sampling period in seconds > 0")
        self.tracer, self.meter, self.period_s = tracer, meter, float(period_s)
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
            return joules

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.sample()

    def info(self) -> dict:
        """The meter and the sampling period, for the rank's metadata."""
        return {**self.meter.describe(), "period_s": self.period_s}

    def close(self) -> None:
        """Take a last sample and stop the thread."""
        self._stop.set()
        self._thread.join(timeout=2 * self.period_s + 1.0)
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
