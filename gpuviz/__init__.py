"""gpuviz: run real distributed training on whatever you have, trace every rank, see it.

>>> import gpuviz
>>> run = gpuviz.launch("gpuviz.workloads.mlp:train", nproc=4)  # doctest: +SKIP
>>> gpuviz.plot.timeline(run)                                    # doctest: +SKIP

Names load on first use, so a worker that imports ``gpuviz.trace`` does not pay for
pandas and plotly.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Imported here, not lazily: importing the submodule gpuviz.launch would otherwise
# replace the package's ``launch`` attribute (the function) with the module.
from gpuviz.launch import InjectionError, LaunchError, RankFailed, RankHung, launch  # noqa: E402

_NAMES = {"load_run": "gpuviz.runs", "Run": "gpuviz.runs", "TraceError": "gpuviz.runs",
          "TraceWarning": "gpuviz.runs"}
_MODULES = {"plot", "checks", "hardware", "model", "trace", "runs", "bench", "bucketing",
            "parallel", "scaling", "inject", "checkpoint", "stragglers", "relaxed",
            "energy", "attribution", "carbon", "at_scale", "widgets"}

__all__ = ["launch", "LaunchError", "RankFailed", "RankHung", "InjectionError", *_NAMES, *sorted(_MODULES),
           "__version__"]


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    if name in _MODULES:
        return importlib.import_module(f"gpuviz.{name}")
    raise AttributeError(f"module 'gpuviz' has no attribute {name!r}")
