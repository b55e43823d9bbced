"""An NCCL kernel's message: its collective, bytes (as nccl-tests counts them), group and
group size, from the kernel's own args or, where it has none, the CPU annotations around
its launch (``nccl:*``, ``record_param_comms``, ``c10d::*``).

>>> _nelems([[4, 1024], [3]])
4096
"""

from __future__ import annotations

import numpy as np

from gpuviz.run.kineto import RankTrace, collective_of, dtype_bytes


class Annotations:
    """The CPU ops that describe collectives (``nccl:*``, ``record_param_comms``, ``c10d::*``),
    to find the ones around a kernel's launch."""

    def __init__(self, cpu):
        self.ops = sorted((c for c in cpu if c[5] is not None), key=lambda c: c[0])
        self.starts = np.array([c[0] for c in self.ops], dtype=float)

    def around(self, launch) -> list:
        if launch is None or not len(self.ops):
            return []
        ts, tid = launch
        hi = int(np.searchsorted(self.starts, ts, side="right"))
        out = [c for c in self.ops[max(0, hi - 16):hi]
               if c[0] <= ts <= c[0] + c[1] and (tid is None or c[3] == tid)]
        return sorted(out, key=lambda c: -c[0])   # innermost first


def _nelems(dims) -> int | None:
    if not isinstance(dims, list) or not dims or not isinstance(dims[0], list) or not dims[0]:
        return None
    return int(np.prod([int(x) for x in dims[0]]))


def message(g, around: list, t: RankTrace) -> dict:
    """A collective's name, bytes (nccl-tests' S), group and group size from the kernel's args
    and, where it has none, from the annotations around its launch."""
    kargs = g[6] or {}
    sources = [kargs] + [c[5] for c in around]
    names = [kargs.get("Collective name")] + [c[2] for c in around] + [g[2]]
    coll = next((c for n in names if n and (c := collective_of(str(n))) and c != "send_recv"), None)
    coll = coll or collective_of(g[2]) or "unknown"
    group = next((str(s["Process Group Name"]) for s in sources if "Process Group Name" in s), "0")
    size = next((int(s["Group size"]) for s in sources if _num_ok(s.get("Group size"))), None)
    if size is None:
        pgs = [p for p in t.info.get("pg_config") or [] if isinstance(p, dict)
               and str(p.get("pg_name")) == group]
        size = pgs[0].get("pg_size") if pgs else t.world_size
    nbytes, how = None, None
    for s in sources:
        el = dtype_bytes(s.get("dtype"))
        if el and _num_ok(s.get("In msg nelems")):
            n_in, n_out = int(s["In msg nelems"]), int(s.get("Out msg nelems") or s["In msg nelems"])
            nbytes = (n_out if coll == "all_gather" else n_in) * el
            how = "message size on the kernel" if s is kargs else "message size on record_param_comms"
            break
    if nbytes is None and coll == "all_gather":
        # c10d's _allgather_base_ lists (output, input): the output is S, their ratio the group
        for s in sources:
            dims = s.get("Input Dims")
            if isinstance(dims, list) and len(dims) >= 2 and all(isinstance(d, list) and d for d in dims[:2]):
                n_out, n_in = int(np.prod(dims[0])), int(np.prod(dims[1]))
                el = dtype_bytes((s.get("Input type") or [None])[0])
                if el and n_in and n_out > n_in and n_out % n_in == 0:
                    nbytes, size, how = n_out * el, n_out // n_in, "output dims of c10d::_allgather_base_"
                    break
    if nbytes is None:
        for s in sources:
            n, el = _nelems(s.get("Input Dims")), dtype_bytes((s.get("Input type") or [None])[0])
            if n and el:
                nbytes = n * el * (size if coll == "all_gather" and size else 1)
                how = "input dims on the nccl annotation"
                break
    return {"collective": coll, "bytes": nbytes, "world": size, "group": group, "bytes_from": how}


def _num_ok(v) -> bool:
    try:
        return v is not None and float(v) == float(v)
    except (TypeError, ValueError):
        return False
