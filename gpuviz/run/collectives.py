"""Collectives by their nccl-tests names, and the bus-bandwidth factor of each.

>>> bus_factor("all_reduce", 4), bus_factor("all_gather", 4), bus_factor("broadcast", 4)
(1.5, 0.75, 1.0)
"""

from __future__ import annotations

#: The collectives a bus bandwidth is defined for, by nccl-tests' names.
COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "all_to_all", "reduce",
               "send_recv")
_SPLIT = {"all_gather", "reduce_scatter", "all_to_all"}  # S is split into `world` equal parts


def bus_factor(op: str, world: int) -> float:
    """busbw / algbw for ``op`` on ``world`` ranks (nccl-tests, doc/PERFORMANCE.md:
    github.com/NVIDIA/nccl-tests/blob/master/doc/PERFORMANCE.md); send/recv moves S once.
    """
    if op == "all_reduce":
        return 2 * (world - 1) / world
    if op in _SPLIT:
        return (world - 1) / world
    if op in ("broadcast", "reduce", "send_recv"):
        return 1.0
    raise ValueError(f"op={op!r}: use one of {', '.join(COLLECTIVES)}")


def collective_in(name: str) -> str | None:
    """The collective a span's name states (``all_reduce``, ``ddp bucket all_reduce``...)."""
    name = str(name)
    found = next((c for c in COLLECTIVES if c in name), None)
    if found is None and name in ("send", "recv", "isend", "irecv"):
        return "send_recv"   # a point-to-point call: S moves once
    return found
