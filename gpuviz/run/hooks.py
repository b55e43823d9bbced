"""Where topics plug into the run engine: options of ``launch`` and hooks on every rank.

The engine (:mod:`gpuviz.run`) imports no topic. A topic that needs the engine to do
something for it registers here, and ``gpuviz/__init__.py`` imports that topic, so the
registrations are in place wherever gpuviz is imported: in the notebook and in every
worker. Two topics use it: fault injection (:mod:`gpuviz.sync.inject`: a delay, failure
or hang at the start of a step) and energy (:mod:`gpuviz.energy.sampler`: a meter read at
the end of each step); the engine's own torch.profiler option (:mod:`gpuviz.run.profiling`)
uses it too.

>>> from gpuviz.run import hooks
>>> sorted(hooks.OPTIONS)        # registered by the topics that gpuviz imports
['energy', 'inject', 'profile']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class OptionError(ValueError):
    """A launch option that the workload itself rules out, found by a rank once the
    workload said how many steps it runs (an injection at a step beyond its last)."""


@dataclass(frozen=True)
class Option:
    """A keyword of :func:`gpuviz.launch` that a topic owns."""

    name: str
    """The keyword, e.g. ``"inject"``."""
    env: str
    """The environment variable that takes the checked value to every rank (as JSON)."""
    check: Callable[[Any, int], Any]
    """``check(value, world_size)``: the value as it goes to the ranks (JSON-able; None
    sends nothing), or a ValueError that names the argument and what is allowed."""


class RankHook:
    """What a topic does on every rank of a traced job; each method may be left as is.

    A hook is made by its factory at the tracer's start (``factory(tracer)``, None for
    "nothing to do on this rank").
    """

    #: the key of this hook's facts in ``Run.meta``
    name = "hook"

    def info(self) -> dict | None:
        """Facts to record in the rank's metadata under :attr:`name`."""
        return None

    def step_begins(self, step: int) -> None:
        """A step starts (after the tracer's start, each ``trace.step()``, a resume)."""

    def total_steps(self, total: int) -> None:
        """The workload said how many steps it runs; raise :class:`OptionError` if that
        rules out what this hook was asked to do."""

    def sample(self) -> None:
        """A step ended: record what is due."""

    def flush(self) -> None:
        """The rank is stopping (an error, a hang report, an interrupt): record everything
        held so far, as the rank may not live to close; :meth:`sample` unless overridden."""
        self.sample()

    def close(self) -> None:
        """The tracer closes."""


OPTIONS: dict[str, Option] = {}
RANK_HOOKS: list[Callable[[Any], RankHook | None]] = []


def register_option(option: Option) -> Option:
    """Make ``option.name`` a keyword that :func:`gpuviz.launch` checks and sends to ranks."""
    OPTIONS[option.name] = option
    return option


def register_rank_hook(factory: Callable[[Any], RankHook | None]):
    """Call ``factory(tracer)`` when each rank's tracer starts (usable as a decorator)."""
    if factory not in RANK_HOOKS:
        RANK_HOOKS.append(factory)
    return factory


def option(name: str) -> Option:
    """The registered option ``name``, or an error that says which topic provides it."""
    try:
        return OPTIONS[name]
    except KeyError:
        raise RuntimeError(f"launch option {name!r} is not registered: import gpuviz (its "
                           f"topics register {sorted(OPTIONS) or 'nothing yet'})") from None
