"""gpuviz: run real distributed training on whatever you have, trace every rank, see it.

>>> import gpuviz
>>> run = gpuviz.launch("gpuviz.workloads.mlp:train", nproc=4)  # doctest: +SKIP
>>> gpuviz.plot.timeline(run)                                    # doctest: +SKIP

One folder per topic, each matching a lab, above the run engine:

- ``run/``: start jobs (torchrun), record every rank, load a run (the engine; no topic);
- ``parallel/`` (Lab 01), ``sharing/`` (02), ``sync/`` (03), ``energy/`` (04), ``plan/`` (05);
- ``checks/`` (the exercises), ``plot/`` (the figures), ``widgets.py``, ``cli.py``;
- ``workloads/``: the training code the labs run on every rank.

Names load on first use, so a worker that imports ``gpuviz.run.trace`` does not pay for
pandas and plotly.
"""

from __future__ import annotations

import importlib

# The topics that plug into the engine register their launch options and rank hooks when
# imported (gpuviz.run.hooks); importing them here puts those in place in every process.
import gpuviz.energy.sampler  # noqa: F401
import gpuviz.run.profiling  # noqa: F401
import gpuviz.sync.injector  # noqa: F401
from gpuviz._version import __version__
from gpuviz.run.failures import InjectionError, LaunchError, RankFailed, RankHung
from gpuviz.run.launch import launch

_NAMES = {"load_run": "gpuviz.run.load", "Run": "gpuviz.run.load", "load_real": "gpuviz.run.recorded",
          "doctor": "gpuviz.classroom.doctor",
          "TraceError": "gpuviz.run.load", "TraceWarning": "gpuviz.run.load"}
_MODULES = {"run": "gpuviz.run", "trace": "gpuviz.run.trace", "parallel": "gpuviz.parallel",
            "sharing": "gpuviz.sharing", "sync": "gpuviz.sync", "energy": "gpuviz.energy",
            "plan": "gpuviz.plan", "checks": "gpuviz.checks", "plot": "gpuviz.plot",
            "widgets": "gpuviz.widgets", "workloads": "gpuviz.workloads",
            "classroom": "gpuviz.classroom"}

__all__ = ["launch", "LaunchError", "RankFailed", "RankHung", "InjectionError", *_NAMES,
           *sorted(_MODULES), "__version__"]


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    raise AttributeError(f"module 'gpuviz' has no attribute {name!r}")
