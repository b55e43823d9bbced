"""Injections acting in a running job: each rank sleeps, raises or hangs as told.

The launcher checks ``inject=[...]`` (:func:`gpuviz.sync.inject.validate`) and sends it to
every rank as ``$GPUVIZ_INJECT``; there the tracer makes an :class:`Injector` (a hook of
:mod:`gpuviz.run.hooks`), which acts at the start of each step.

>>> from gpuviz.run import hooks
>>> from gpuviz.sync.inject import slow_rank
>>> hooks.option("inject").check([slow_rank(1, 0.05)], 2)
[{'kind': 'slow', 'rank': 1, 'delay_s': 0.05}]
"""

from __future__ import annotations

import json
import os
import time

from gpuviz.run import hooks, trace
from gpuviz.sync.inject import ENV, InjectedFailure, Sampler, check_steps, targets, validate

hooks.register_option(hooks.Option("inject", ENV, lambda value, world: validate(value, world)))


class Injector(hooks.RankHook):
    """What one rank of a running job does at each step start (made by the tracer).

    ``specs`` is the whole job's list (checked against ``world_size``); only those that
    target ``rank`` act here. ``attempt`` is torchrun's restart count: failures act on
    attempt 0 only.
    """

    name = "inject"

    def __init__(self, specs: list[dict], rank: int, world_size: int, attempt: int = 0):
        self.specs = validate(specs, world_size)
        self.rank, self.attempt = rank, attempt
        self.mine = [(s, Sampler(s, rank)) for s in self.specs if targets(s, rank)]

    @classmethod
    def from_env(cls, rank: int, world_size: int, attempt: int = 0) -> Injector | None:
        text = os.environ.get(ENV)
        if not text:
            return None
        try:
            specs = json.loads(text)
        except ValueError:
            raise ValueError(f"${ENV}={text[:80]!r} is not JSON: a list of injections") from None
        return cls(specs, rank, world_size, attempt)

    def info(self) -> list[dict]:
        return self.specs

    def total_steps(self, total: int) -> None:
        check_steps(self.specs, total)

    def step_begins(self, step: int) -> None:
        """Sleep, raise or hang as this rank's injections say for the start of ``step``."""
        for spec, sampler in self.mine:
            kind = spec["kind"]
            if kind in ("slow", "jitter"):
                d = sampler.delay(step)
                with trace.span("injected delay", cat="compute", injected=True, kind=kind,
                                delay_s=round(d, 6)):
                    time.sleep(d)
            elif step == spec["step"] and kind == "fail" and self.attempt == 0:
                raise InjectedFailure(f"injected failure on rank {self.rank} at the start of step "
                                      f"{step} (inject.fail_at({self.rank}, {step}); first attempt only)")
            elif step == spec["step"] and kind == "hang":
                with trace.span("injected hang", cat="compute", injected=True, kind=kind):
                    while True:  # until the job is stopped; the watchdog still answers
                        time.sleep(0.1)


@hooks.register_rank_hook
def from_env(tracer) -> Injector | None:
    """The injector of ``tracer``'s rank, from ``$GPUVIZ_INJECT`` (None without one)."""
    return Injector.from_env(tracer.rank, tracer.world_size, tracer.attempt)
