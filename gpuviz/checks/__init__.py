"""Self-checking exercises: each check says "Correct!" or what is wrong and why.

One module per lab: :mod:`~gpuviz.checks.meet` (Lab 00), :mod:`~gpuviz.checks.parallel`
(01), :mod:`~gpuviz.checks.sharing` (02), :mod:`~gpuviz.checks.sync` (03),
:mod:`~gpuviz.checks.energy` (04), :mod:`~gpuviz.checks.plan` (05); every check is here by
its name, and returns a :class:`~gpuviz.checks.core.Result`. Each call through this
package is recorded in the learner's progress file (:mod:`gpuviz.classroom.progress`).

>>> from gpuviz import checks
>>> checks.ring_allreduce_bytes(1.5e6, nbytes=1e6, world=4)
Correct! Each rank sends 2(p-1)/p x 1e+06 = 1.5e+06 bytes in a ring all-reduce.
"""

import functools

from gpuviz.checks.core import LearnerError, Result
from gpuviz.checks.energy import co2_grams, energy_per_sample, pareto_configs, waiting_joules
from gpuviz.checks.meet import idle_fraction
from gpuviz.checks.parallel import bubble_fraction, gradient_sync, zero_bytes
from gpuviz.checks.plan import (
    best_layout,
    dominant_term,
    expert_weights_gib,
    fits_in_memory,
    mfu_from_throughput,
)
from gpuviz.checks.sharing import best_bucket_size, ring_allreduce_bytes
from gpuviz.checks.sync import redone_steps, straggler_wait
from gpuviz.classroom import progress as _progress


def _recorded(check):
    """``check`` that also records its outcome in the learner's progress file
    (:mod:`gpuviz.classroom.progress`)."""
    @functools.wraps(check)
    def recorded(*args, **kwargs):
        try:
            result = check(*args, **kwargs)
        except LearnerError as e:    # the learner's function raised: say what and where
            result = e.result()
        _progress.record(_progress.LAB_OF.get(check.__name__, "?"), check.__name__, bool(result),
                         None if result else (result.mistake or result.message[:160]))
        return result

    return recorded


for _name in _progress.LAB_OF:
    globals()[_name] = _recorded(globals()[_name])

__all__ = ["Result", "idle_fraction", "bubble_fraction", "zero_bytes", "gradient_sync",
           "ring_allreduce_bytes", "best_bucket_size", "straggler_wait", "redone_steps",
           "energy_per_sample", "waiting_joules", "pareto_configs", "co2_grams", "fits_in_memory",
           "mfu_from_throughput", "dominant_term", "best_layout", "expert_weights_gib"]
