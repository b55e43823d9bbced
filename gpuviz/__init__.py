"""gpuviz: run real distributed training on whatever you have, trace every rank, see it.

>>> import gpuviz
>>> run = gpuviz.launch("gpuviz.workloads.mlp:train", nproc=4)  # doctest: +SKIP
>>> gpuviz.plot.timeline(run)                                    # doctest: +SKIP
"""

__version__ = "0.1.0"

from gpuviz.launch import LaunchError, RankFailed, RankHung, launch  # noqa: E402
from gpuviz.runs import Run, TraceError, TraceWarning, load_run  # noqa: E402

__all__ = ["launch", "load_run", "Run", "LaunchError", "RankFailed", "RankHung", "TraceError",
           "TraceWarning", "__version__"]
