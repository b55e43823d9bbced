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

import math
import os
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from gpuviz.run.kineto import KINDS, GpuEvents, RankTrace, read_trace
from gpuviz.run.nccl_message import Annotations, message

SOURCE = "pytorch-profiler"
_TRACE_FILE = re.compile(r"\.json(\.gz)?$")
_STEP = re.compile(r"^ProfilerStep#(\d+)$")
_GPU_CATS = np.array(["compute", "optimizer", "data", "comm"], dtype=object)


def trace_files(path) -> list[Path]:
    """The profiler trace files a folder (or a list of files) holds, in name order."""
    if isinstance(path, (list, tuple)):
        files = [Path(p) for p in path]
        for p in files:
            if not p.is_file():
                raise FileNotFoundError(f"path={str(p)!r} is not a file")
        return files
    path = Path(path)
    if path.is_file():
        return [path]
    return sorted(p for p in path.iterdir()
                  if p.is_file() and _TRACE_FILE.search(p.name) and p.name != "run.json")


def import_traces(path, problems: list[str] | None = None):
    """Read every rank's trace; return ``(raw, problems, spans)``: each rank's metadata and
    step events (gpuviz's format), what went wrong (by file), and every span as one
    DataFrame (columns as :attr:`Run.spans`), built column by column, not event by event.

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
    if not reduced:
        raise ValueError(f"path={str(path)!r}: no file holds a readable PyTorch profiler trace "
                         f"({'; '.join(problems[:3])})")
    traces = _one_job([r.t for r in reduced.values()], problems)
    _give_ranks(traces, problems)
    ranks = sorted((reduced[id(t)] for t in traces), key=lambda r: r.rank)
    world = max([t.world_size or 0 for t in traces] + [max(r.rank for r in ranks) + 1])
    _number_collectives(ranks, problems)
    clock, error_us = _align(ranks, problems)
    t0 = min(r.first + r.offset for r in ranks if r.first is not None)
    extra = {"source": SOURCE, "world_size": world, "clock": clock, "clock_error_us": error_us,
             "ranks_present": len(ranks)}
    raw = {r.rank: r.meta_events(t0, extra) for r in ranks}
    frames = [r.frame(t0) for r in ranks]      # each rank's kernels freed once in its frame
    # a column at a time, each rank's copy dropped once joined: never two copies whole
    cols = {}
    for col in list(frames[0].columns):
        cols[col] = pd.concat([f[col] for f in frames], ignore_index=True)
        for f in frames:
            del f[col]
    return raw, problems, pd.DataFrame(cols, copy=False)


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
        launch = np.array([t.launches.get(c, (x, None))[0] for c, x in zip(t.gpu.corr, t.gpu.ts, strict=True)],
                          dtype=float)
        opt = _inside(launch, *_windows(t.cpu, lambda s: s.startswith("Optimizer.")))
        data = _inside(launch, *_windows(t.cpu, lambda s: s.startswith("enumerate(DataLoader)")))
        step_i = _inside(launch, st, se)
        # each kernel's category as an index into _GPU_CATS (a str object per kernel costs 64 bytes)
        self.gpu_cat = np.where(opt >= 0, 1, np.where(data >= 0, 2, 0)).astype(np.int8)
        self.gpu_step = [steps[i][0] if i >= 0 else None for i in step_i]
        self.comm: list[dict | None] = [None] * n
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
        t.cpu, t.launches = [], {}   # all that is needed is kept above: free the rest
        self.device = _device_name(t)

    @property
    def rank(self) -> int:
        return self.t.rank

    def collectives(self):
        """(group, seq) -> index into gpu, for the NCCL kernels numbered by _number_collectives."""
        return {(c["group"], c["seq"]): i for i, c in enumerate(self.comm) if c and "seq" in c}

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
        for ts, dur, step in zip(t.gpu.ts, t.gpu.dur, self.gpu_step, strict=True):
            if step is not None:
                ends[step] = max(ends.get(step, -math.inf), ts + dur)
        for n, s, e in self.steps:
            out.append({"ph": "i", "name": "step_end", "ts": max(e, ends.get(n, e)) + off, "pid": rank,
                        "args": {"step": n, "cpu_start_us": s + off}})
        return out

    def frame(self, t0: float) -> pd.DataFrame:
        """Every span of this rank as columns (seconds from the job's start); the kernels'
        arrays are freed. Spans of one kind share one ``args`` dict (read, never written)."""
        t, off = self.t, self.offset - t0
        g, n = t.gpu, len(t.gpu)
        lane_names = {k: sys.intern(self._lane_name(k)) for k in self._lanes()}
        shared: dict = {}
        stream = [None if x < 0 else x for x in g.stream]
        kinds = [KINDS[k] for k in g.kind]
        args = [({"stream": st, "kind": kd, **{k: v for k, v in c.items() if v is not None}}
                 if (c := self.comm[i]) else shared.setdefault((st, kd), {"stream": st, "kind": kd}))
                for i, (st, kd) in enumerate(zip(stream, kinds, strict=True))]
        lanes = [lane_names[("gpu", st)] for st in stream]
        names = list(np.asarray(g.names, dtype=object)[np.frombuffer(g.name, np.int64)]) if n else []
        cats, steps = list(_GPU_CATS[self.gpu_cat]), list(self.gpu_step)
        nbytes = [c.get("bytes") if c else None for c in self.comm]
        cpu_ts, cpu_dur = [], []
        st = np.array([s for _, s, _ in self.steps], dtype=float)
        for tid, ops in self.cpu_top.items():
            for ts, dur, name, *_ in ops:
                i = int(np.searchsorted(st, ts, "right")) - 1
                lanes.append(lane_names[("cpu", tid)])
                steps.append(self.steps[i][0] if i >= 0 and ts <= self.steps[i][2] else None)
                names.append(name)
                cats.append(_cpu_cat(name))
                cpu_ts.append(ts)
                cpu_dur.append(dur)
                nbytes.append(None)
                args.append(shared.setdefault(("cpu", tid), {"thread": tid}))
        start = (np.concatenate([np.frombuffer(g.ts, float) if n else np.zeros(0), np.asarray(cpu_ts, float)])
                 + off) / 1e6
        dur = np.concatenate([np.frombuffer(g.dur, float) if n else np.zeros(0), np.asarray(cpu_dur, float)]) / 1e6
        m = len(start)
        df = pd.DataFrame({
            "rank": np.full(m, self.rank), "lane": lanes, "step": pd.array(steps, dtype="Int64"),
            "name": names, "cat": cats, "start": start, "end": start + dur, "dur": dur,
            "bytes": pd.array(nbytes, dtype="Int64"), "args": args,
            "interrupted": np.zeros(m, bool), "attempt": np.zeros(m, np.int64)})
        t.gpu, self.cpu_top, self.comm = GpuEvents(), {}, []
        # in time order (the loader then need not sort every rank's spans at once)
        return df.sort_values("start", kind="stable", ignore_index=True)


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


# -- across ranks ----------------------------------------------------------------------------------

def _number_collectives(ranks: list[_Rank], problems: list[str]) -> None:
    """Number each rank's collectives per group in GPU order; where the ranks disagree on the
    sequence of collectives the numbers are dropped (no waits are split there)."""
    seqs: dict[str, dict[int, list[tuple[str, int]]]] = defaultdict(dict)
    for r in ranks:
        order = sorted((g[0], i) for i, g in enumerate(r.t.gpu) if r.comm[i] is not None)
        per: dict[str, list] = defaultdict(list)
        for _, i in order:
            c = r.comm[i]
            c["seq"] = len(per[c["group"]])
            c["collective_seq"] = c["seq"]
            per[c["group"]].append((c["collective"], i))
        for grp, lst in per.items():
            seqs[grp][r.rank] = lst
    for grp, by_rank in seqs.items():
        kinds = {rk: [c for c, _ in lst] for rk, lst in by_rank.items()}
        if len({tuple(v) for v in kinds.values()}) > 1:
            problems.append(f"process group {grp}: the ranks' traces hold different sequences of "
                            "collectives (different steps profiled?); the wait inside each "
                            "collective is not split from its transfer")
            for rk, lst in by_rank.items():
                r = next(x for x in ranks if x.rank == rk)
                for _, i in lst:
                    r.comm[i].pop("seq", None)
                    r.comm[i]["auto"] = False


def _node_of(r: _Rank) -> int | None:
    n = len(r.t.devices)
    return r.rank // n if n else None


def _align(ranks: list[_Rank], problems: list[str]) -> tuple[str, float | None]:
    """Put every rank on one clock: ranks of a node share theirs; other nodes are shifted so
    that their collectives end when the first node's do. Returns (clock, error in us)."""
    nodes = {_node_of(r) for r in ranks}
    if None in nodes:
        if len(ranks) > 1:
            problems.append("the traces do not say how many GPUs a node has (no deviceProperties); "
                            "their clocks are taken as one (as on one node)")
        return "as recorded (node layout unknown)", None
    if len(nodes) == 1:
        return "shared (one node)", 0.0
    ref = [r for r in ranks if _node_of(r) == min(nodes)]
    ref_end: dict = defaultdict(list)
    for r in ref:
        for key, i in r.collectives().items():
            ref_end[key].append(r.t.gpu[i][0] + r.t.gpu[i][1])
    worst = 0.0
    for node in sorted(nodes - {min(nodes)}):
        members = [r for r in ranks if _node_of(r) == node]
        diffs = [np.median(ref_end[k]) - (m.t.gpu[i][0] + m.t.gpu[i][1])
                 for m in members for k, i in m.collectives().items() if k in ref_end]
        if not diffs:
            problems.append(f"node {node} (ranks {[m.rank for m in members]}) shares no collective "
                            "with the first node; its clock is left as recorded")
            continue
        shift = float(np.median(diffs))
        worst = max(worst, float(np.max(np.abs(np.asarray(diffs) - shift))))
        for m in members:
            m.offset = shift
    return "aligned on shared collectives across nodes", worst


def is_trace_folder(path) -> bool:
    """A folder of profiler traces rather than a gpuviz run (no rank*.jsonl in it)."""
    if isinstance(path, (list, tuple)):
        return True
    p = Path(path)
    if p.is_file():
        return True
    if not p.is_dir():
        return False
    names = os.listdir(p)
    return not any(n.startswith("rank") and n.endswith(".jsonl") for n in names) and any(
        _TRACE_FILE.search(n) and n != "run.json" for n in names)
