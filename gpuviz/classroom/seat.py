"""How large the labs' jobs are on this seat: one setting an instructor can lower.

Every lab takes its rank count from :func:`ranks`, which reads ``$GPUVIZ_LAB_RANKS``:
4 by default, 2 on a crowded server. Each rank keeps the work the lab gives it (its share of
the batch, its steps), so lowering the setting halves both the processes a seat starts and
the job's total work. Sweeps over rank counts keep the counts the seat allows
(:func:`counts`), and a job that runs twice the ranks to show waiting grow (Lab 03) runs
``2 * ranks()``.

``gpuviz doctor --seats N`` says when a server is too small for N seats at the default, and
the instructor's guide (``book/teaching/guide.md``) says how to set it for a room:

.. code-block:: bash

    export GPUVIZ_LAB_RANKS=2    # before starting JupyterLab; every lab then runs 2 ranks

>>> import os; saved = os.environ.pop(ENV, None)   # the doctest puts it back below
>>> ranks(), counts(1, 2, 4), counts(2, 4, 8, most=2 * ranks())
(4, (1, 2, 4), (2, 4, 8))
>>> os.environ[ENV] = "2"
>>> ranks(), counts(1, 2, 4), counts(2, 4, 8, most=2 * ranks())
(2, (1, 2), (2, 4))
>>> del os.environ[ENV]
>>> if saved is not None: os.environ[ENV] = saved
"""

from __future__ import annotations

import os

ENV = "GPUVIZ_LAB_RANKS"
DEFAULT = 4
ALLOWED = (2, 4)


def ranks() -> int:
    """The ranks each lab's jobs run on: ``$GPUVIZ_LAB_RANKS`` (2 or 4), 4 when it is unset.

    >>> ranks() in ALLOWED
    True
    """
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return DEFAULT
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value not in ALLOWED:
        raise ValueError(f"{ENV}={raw!r}: the labs run on {' or '.join(map(str, ALLOWED))} ranks; "
                         f"unset it for the default of {DEFAULT}")
    return value


def counts(*candidates: int, most: int | None = None) -> tuple[int, ...]:
    """The ``candidates`` (rank counts of a sweep) that are at most ``most`` (default: :func:`ranks`).

    >>> counts(1, 2, 4, most=2)
    (1, 2)
    """
    if not candidates or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in candidates):
        raise ValueError(f"candidates={candidates!r}: give one or more rank counts, each an integer >= 1")
    limit = ranks() if most is None else most
    kept = tuple(n for n in candidates if n <= limit)
    if not kept:
        raise ValueError(f"candidates={candidates!r}: none is at most {limit} ranks")
    return kept


def describe() -> str:
    """One sentence for a lab's setup cell: how many ranks its jobs run on, and why.

    >>> describe().startswith("This lab's jobs run on")
    True
    """
    n = ranks()
    if os.environ.get(ENV, "").strip():
        return f"This lab's jobs run on {n} ranks: {ENV} sets it (the default is {DEFAULT})."
    return (f"This lab's jobs run on {n} ranks, the default (an instructor can set {ENV}=2 "
            "for a crowded server).")
