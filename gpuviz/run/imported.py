"""PyTorch profiler traces of a real multi-GPU job, one file per rank, as a gpuviz run.

Each rank's GPU kernels become spans on a lane per CUDA stream: NCCL kernels are ``comm``
(the collective, its bytes from the message size and dtype), kernels launched inside the
profiler's ``Optimizer.*`` or ``enumerate(DataLoader)`` annotations are ``optimizer`` and
``data``, every other kernel (and memory copy or set) is ``compute``. Time on no stream is
the GPU's idle time (:func:`gpu_summary`). Steps come from ``ProfilerStep#N``; the CPU's
top-level ops lie on a lane per CPU thread. Ranks of one node share their clock; across
nodes each node is shifted so that the collectives they share end together, and what is
left over is recorded as the alignment error. A collective found on every rank is split,
as in gpuviz's own traces, into the wait for the last rank (``wait for others``, idle) and
the transfer after it.

>>> run = import_traces("traces/")        # one trace per rank  # doctest: +SKIP
>>> run.meta["source"], run.meta["gpu"]   # doctest: +SKIP
('pytorch-profiler', 'Tesla V100-SXM2-32GB')
"""

from __future__ import annotations

import ctypes
import math
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from gpuviz.run.kineto import KINDS, GpuEvents, Launches, RankTrace, read_trace, trace_files
from gpuviz.run.nccl_message import Annotations, message
from gpuviz.run.rank_alignment import align, last_arrivals, number_collectives

SOURCE = "pytorch-profiler"
_STEP = re.compile(r"^ProfilerStep#(\d+)$")
_GPU_CATS = np.array(["compute", "optimizer", "data", "comm"], dtype=object)
_WAIT = "wait for others"


def import_traces(path, problems: list[str] | None = None):
    """Read every rank's trace; return ``(raw, problems, spans)``: each rank's metadata and
    step events (gpuviz's format), what went wrong (by file), and every span as one
    DataFrame (columns as :attr:`Run.spans`), each column allocated once and written rank by rank.

    Raises :class:`ValueError` (the loader turns it into a TraceError) where nothing can be
    loaded or two files claim one rank.
    """
    problems = [] if problems is None else problems
    files = trace_files(path)
    if not files:
        raise ValueError(f"path={str(path)!r} holds no .json or .json.gz profiler trace")
    reduced: dict[int, _Rank] = {}
    for f in files:
        t = read_trace(f)
        problems += t.problems
        if not t.gpu and not t.cpu:
            if not t.problems:
                problems.append(f"{f.name}: no profiler events; left out")
            continue
        if not t.gpu:
            problems.append(f"{f.name}: no GPU kernels (a CPU-only profile); only its CPU ops load")
        reduced[id(t)] = _Rank(t)    # at once: a file's CPU ops and launches are freed here
        _give_back_freed_memory()
    if not reduced:
        raise ValueError(f"path={str(path)!r}: no file holds a readable PyTorch profiler trace "
                         f"({'; '.join(problems[:3])})")
    traces = _one_job([r.t for r in reduced.values()], problems)
    _give_ranks(traces, problems)
    ranks = sorted((reduced[id(t)] for t in traces), key=lambda r: r.rank)
    world = max([t.world_size or 0 for t in traces] + [max(r.rank for r in ranks) + 1])
    number_collectives(ranks, problems)
    clock, error_us = align(ranks, problems)
    last = last_arrivals(ranks)
    for r in ranks:
        r.split_waits(last)
    t0 = min(r.first + r.offset for r in ranks if r.first is not None)
    extra = {"source": SOURCE, "world_size": world, "clock": clock, "clock_error_us": error_us,
             "ranks_present": len(ranks)}
    raw = {r.rank: r.meta_events(t0, extra) for r in ranks}
    total = sum(r.rows for r in ranks)
    out = {"rank": np.empty(total, np.int64), "start": np.empty(total), "end": np.empty(total),
           "step": np.empty(total, np.int64), "bytes": np.empty(total, np.int64),
           **{c: np.empty(total, object) for c in ("lane", "name", "cat", "args")}}
    at = 0
    for r in ranks:      # each rank written in place, its kernels freed: no copy of the whole
        at = r.fill(out, at, t0)
        _give_back_freed_memory()
    step, nbytes = out.pop("step"), out.pop("bytes")
    start, end = out.pop("start"), out.pop("end")
    text = {col: _text(out.pop(col)) for col in ("lane", "name", "cat")}
    spans = pd.DataFrame({
        "rank": out.pop("rank"), "lane": text.pop("lane"), "step": pd.arrays.IntegerArray(step, step < 0),
        "name": text.pop("name"), "cat": text.pop("cat"), "start": start, "end": end, "dur": end - start,
        "bytes": pd.arrays.IntegerArray(nbytes, nbytes < 0), "args": out.pop("args"),
        "interrupted": np.zeros(total, bool), "attempt": np.zeros(total, np.int64)}, copy=False)
    return raw, problems, spans


def _text(values: np.ndarray):
    """A column of names as pandas' default string dtype; without a copy where that dtype
    keeps Python strings in an object array (no pyarrow)."""
    dtype = pd.Series(["x"]).dtype
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "python":
        return pd.arrays.StringArray(values, dtype=dtype, copy=False)
    return pd.array(values, dtype=dtype)


def _give_back_freed_memory() -> None:
    """Return the heap pages freed so far to the system. glibc keeps freed memory for reuse,
    so without this a rank's freed events would still count in the process's memory while
    the next one is read. Elsewhere (no glibc) it does nothing."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None


# -- which files belong together ------------------------------------------------------------------

def _job_key(t: RankTrace):
    pgs = t.info.get("pg_config")
    sizes = tuple(sorted((str(p.get("pg_name")), p.get("pg_size")) for p in pgs
                         if isinstance(p, dict))) if isinstance(pgs, list) else ()
    return (t.world_size, t.info.get("backend"), sizes)


def _one_job(traces: list[RankTrace], problems: list[str]) -> list[RankTrace]:
    """Keep the traces of the job most files belong to (by world size, backend, groups)."""
    keys = Counter(_job_key(t) for t in traces)
    if len(keys) == 1:
        return traces
    # A file that states less (no world size) joins any job.
    best = max(keys, key=lambda k: (k[0] is not None, keys[k]))
    keep = [t for t in traces if _job_key(t) == best or t.world_size is None]
    for t in traces:
        if t not in keep:
            problems.append(f"{t.path.name}: from another job (world_size={t.world_size}, "
                            f"backend={t.info.get('backend')!r}; the others have "
                            f"world_size={best[0]}); left out")
    return keep


def _give_ranks(traces: list[RankTrace], problems: list[str]) -> None:
    seen: dict[int, Path] = {}
    for t in traces:
        if t.rank is None:
            continue
        if t.rank in seen:
            raise ValueError(f"{seen[t.rank].name} and {t.path.name} both hold rank {t.rank} "
                             f"(from their {t.rank_from}): remove the one that does not belong")
        seen[t.rank] = t.path
    free = (r for r in range(1 << 20) if r not in seen)
    for t in traces:
        if t.rank is None:
            t.rank, t.rank_from = next(free), "file order"
            problems.append(f"{t.path.name}: names no rank (no distributedInfo, no rank in its "
                            f"name); taken as rank {t.rank}")


# -- one rank ------------------------------------------------------------------------------------

def _windows(cpu, test) -> tuple[np.ndarray, np.ndarray]:
    w = sorted((ts, ts + dur) for ts, dur, name, *_ in cpu if test(name))
    s = np.array([a for a, _ in w], dtype=float)
    e = np.maximum.accumulate(np.array([b for _, b in w], dtype=float)) if w else np.zeros(0)
    return s, e


def _inside(t: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Index of the window holding each time (or -1)."""
    if not len(starts):
        return np.full(len(t), -1)
    i = np.searchsorted(starts, t, side="right") - 1
    ok = (i >= 0) & (t <= ends[np.maximum(i, 0)])
    return np.where(ok, i, -1)


class _Rank:
    """One rank's trace turned into spans (still in the file's microseconds)."""

    def __init__(self, t: RankTrace):
        self.t, self.offset = t, 0.0
        steps = sorted((int(m.group(1)), ts, ts + dur) for ts, dur, name, *_ in t.cpu
                       if (m := _STEP.match(name)))
        self.steps = steps
        st = np.array([s for _, s, _ in steps], dtype=float)
        se = np.array([e for _, _, e in steps], dtype=float)
        n = len(t.gpu)
        ts = np.frombuffer(t.gpu.ts, dtype=float) if n else np.zeros(0)
        launch = t.launches.times(np.frombuffer(t.gpu.corr, np.int64) if n else [], ts)
        opt = _inside(launch, *_windows(t.cpu, lambda s: s.startswith("Optimizer.")))
        data = _inside(launch, *_windows(t.cpu, lambda s: s.startswith("enumerate(DataLoader)")))
        step_i = _inside(launch, st, se)
        del launch
        # each kernel's category as an index into _GPU_CATS (a str object per kernel costs 64 bytes)
        self.gpu_cat = np.where(opt >= 0, 1, np.where(data >= 0, 2, 0)).astype(np.int8)
        # each kernel's profiler step (they are numbered from 0), or -1
        ids = np.array([s for s, _, _ in steps] or [-1], dtype=np.int64)
        self.gpu_step = np.where(step_i >= 0, ids[np.maximum(step_i, 0)], -1).astype(np.int32)
        self.comm: dict[int, dict] = {}   # NCCL kernels only: index -> the collective's message
        ann = Annotations(t.cpu)
        for i in sorted(t.gpu.comm):
            g = t.gpu[i]
            self.gpu_cat[i] = 3
            self.comm[i] = message(g, ann.around(t.launches.get(g[4])), t)
        firsts = ([float(ts.min())] if n else []) + ([min(c[0] for c in t.cpu)] if t.cpu else [])
        self.first = min(firsts, default=None)
        main = Counter(c[3] for c in t.cpu if _STEP.match(c[2])).most_common(1)
        self.main_tid = main[0][0] if main else None
        self.threads = sorted({c[3] for c in t.cpu}, key=lambda x: (x != self.main_tid, x is None, x))
        self.cpu_top = _top_level(t.cpu)
        t.cpu, t.launches = [], Launches()   # all that is needed is kept above: free the rest
        t.gpu.drop_correlations()
        self.device = _device_name(t)
        self.waits: list[tuple[int, float]] = []   # (kernel, when the last rank arrived)

    @property
    def rank(self) -> int:
        return self.t.rank

    @property
    def rows(self) -> int:
        return len(self.t.gpu) + len(self.waits) + sum(len(ops) for ops in self.cpu_top.values())

    def collectives(self):
        """(group, seq) -> index into gpu, for the NCCL kernels numbered by number_collectives."""
        return {(c["group"], c["seq"]): i for i, c in self.comm.items() if "seq" in c}

    def _lanes(self) -> dict:
        streams = sorted({None if x < 0 else x for x in set(self.t.gpu.stream)}, key=lambda s: (s is None, s))
        lane = {("gpu", s): 2 + i for i, s in enumerate(streams)}
        lane.update({("cpu", c): 2 + len(streams) + i for i, c in enumerate(self.threads)})
        return lane

    def _lane_name(self, key) -> str:
        if key[0] == "gpu":
            return f"GPU stream {key[1]}"
        return "CPU main thread" if self.main_tid is not None and key[1] == self.main_tid else f"CPU thread {key[1]}"

    def meta_events(self, t0: float, extra: dict) -> list[dict]:
        """The rank's metadata, its lanes' names and a ``step_end`` per profiler step."""
        t, rank, off = self.t, self.rank, self.offset - t0
        meta = {**extra, "rank": rank, "backend": t.info.get("backend"), "gpu": self.device,
                "nccl_version": t.info.get("nccl_version"), "file": t.path.name,
                "rank_from": t.rank_from, "clock_offset_us": self.offset,
                "device_name": self.device, "devices_on_node": len(t.devices) or None}
        out = [{"ph": "M", "name": "process_name", "pid": rank, "args": {"name": f"rank {rank}", "attempt": 0}},
               {"ph": "M", "name": "gpuviz_meta", "pid": rank, "args": meta}]
        out += [{"ph": "M", "name": "thread_name", "pid": rank, "tid": tid, "args": {"name": self._lane_name(k)}}
                for k, tid in self._lanes().items()]
        ends: dict[int, float] = {}
        if len(t.gpu):
            end = np.frombuffer(t.gpu.ts, float) + np.frombuffer(t.gpu.dur, float)
            known = self.gpu_step >= 0
            for step, e in zip(self.gpu_step[known].tolist(), end[known].tolist(), strict=True):
                ends[step] = max(ends.get(step, -math.inf), e)
        for n, s, e in self.steps:
            out.append({"ph": "i", "name": "step_end", "ts": max(e, ends.get(n, e)) + off, "pid": rank,
                        "args": {"step": n, "cpu_start_us": s + off}})
        return out

    def split_waits(self, last: dict) -> None:
        """Find each collective this rank started before the last rank of its group did
        (``last``: :func:`gpuviz.run.rank_alignment.last_arrivals`): the wait, then the transfer."""
        g = self.t.gpu
        for i, c in self.comm.items():
            if "seq" in c:
                arrive = last.get((g.names[g.name[i]], c["group"], c["seq"]), -math.inf) - self.offset
                if g.ts[i] < arrive < g.ts[i] + g.dur[i]:
                    self.waits.append((i, arrive))

    def fill(self, out: dict, at: int, t0: float) -> int:
        """Write every span of this rank into the columns ``out`` from row ``at``, in time
        order (seconds from the job's start); return the next free row. The kernels' arrays
        are freed. Spans of one kind share one ``args`` dict (read, never written). The
        kernels' columns are made by indexing small tables, not an object per kernel."""
        t, off = self.t, self.offset - t0
        g, n = t.gpu, len(t.gpu)
        lane_names = {k: sys.intern(self._lane_name(k)) for k in self._lanes()}
        stream = np.frombuffer(g.stream, np.int64) if n else np.zeros(0, np.int64)
        kind = np.frombuffer(g.kind, np.int8) if n else np.zeros(0, np.int8)
        streams, s_ix = np.unique(stream, return_inverse=True)
        keys = [(None if x < 0 else int(x), KINDS[k]) for x in streams for k in range(len(KINDS))]
        table = _objects([{"stream": st, "kind": kd} for st, kd in keys])
        args = table[s_ix * len(KINDS) + kind]
        lanes = _objects([lane_names[("gpu", st)] for st, _ in keys[::len(KINDS)]])[s_ix]
        for i, c in self.comm.items():
            args[i] = {**table[s_ix[i] * len(KINDS) + kind[i]], **{k: v for k, v in c.items() if v is not None}}
        names = np.asarray(g.names, dtype=object)[np.frombuffer(g.name, np.int32)] if n else _objects([])
        cats, steps = _GPU_CATS[self.gpu_cat], self.gpu_step
        nbytes = np.full(n, -1, np.int64)
        for i, c in self.comm.items():
            if c.get("bytes") is not None:
                nbytes[i] = int(c["bytes"])
        gts = np.array(g.ts, dtype=float) if n else np.zeros(0)
        gend = gts + (np.frombuffer(g.dur, float) if n else 0.0)
        more = []   # (lane, step, name, cat, ts, end, args): the waits, then the CPU's ops
        for i, arrive in self.waits:   # the wait for the last rank, then the transfer
            more.append((lanes[i], steps[i], _WAIT, "idle", gts[i], arrive, args[i]))
            gts[i] = arrive
        st = np.array([s for _, s, _ in self.steps], dtype=float)
        shared: dict = {}
        for tid, ops in self.cpu_top.items():
            for ts, dur, name, *_ in ops:
                i = int(np.searchsorted(st, ts, "right")) - 1
                more.append((lane_names[("cpu", tid)], self.steps[i][0] if i >= 0 and ts <= self.steps[i][2] else -1,
                             name, _cpu_cat(name), ts, ts + dur, shared.setdefault(tid, {"thread": tid})))
        t.gpu, self.cpu_top, self.comm, self.gpu_step, self.gpu_cat = GpuEvents(), {}, {}, None, None
        m = list(zip(*more, strict=True)) or [[]] * 7
        start = (np.concatenate([gts, np.asarray(m[4], float)]) + off) / 1e6
        stop = (np.concatenate([gend, np.asarray(m[5], float)]) + off) / 1e6
        del gts, gend
        order = np.argsort(start, kind="stable")   # in time order: the loader need not sort
        end = at + len(order)
        rows = slice(at, end)
        out["rank"][rows] = self.rank
        for col, mine, extra in (("start", start, None), ("end", stop, None), ("step", steps, m[1]),
                                 ("bytes", nbytes, [-1] * len(more)), ("lane", lanes, m[0]),
                                 ("name", names, m[2]), ("cat", cats, m[3]), ("args", args, m[6])):
            if extra is not None:
                mine = np.concatenate([mine, np.asarray(extra, dtype=out[col].dtype) if out[col].dtype != object
                                       else _objects(extra)])
            out[col][rows] = mine[order]
            del mine
        return end


def _objects(values: list) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def _cpu_cat(name: str) -> str:
    if name.startswith("Optimizer."):
        return "optimizer"
    if name.startswith("enumerate(DataLoader)"):
        return "data"
    if name.startswith(("nccl:", "record_param_comms", "c10d::")):
        return "comm"
    return "compute"


def _top_level(cpu) -> dict:
    """Per CPU thread, the ops no other op encloses (the profiler's step windows dropped)."""
    by: dict = defaultdict(list)
    for c in cpu:
        if not _STEP.match(c[2]) and not c[2].startswith("PyTorch Profiler"):
            by[c[3]].append(c)
    out = {}
    for tid, ops in by.items():
        ops.sort(key=lambda c: (c[0], -c[1]))
        keep, end = [], -math.inf
        for c in ops:
            if c[0] >= end:
                keep.append(c)
                end = c[0] + c[1]
        out[tid] = keep
    return out


def _device_name(t: RankTrace) -> str | None:
    devs = [d for d in t.devices if isinstance(d, dict)]
    if not devs:
        return None
    names = {str(d.get("name")) for d in devs if d.get("name")}
    return names.pop() if len(names) == 1 else ", ".join(sorted(names)) or None
