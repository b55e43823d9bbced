"""Read one PyTorch profiler (Kineto) trace file, streamed: what a rank's GPU and CPU did.

The file is the Chrome-trace JSON that ``torch.profiler`` writes (``.json`` or ``.json.gz``),
one per rank. It is parsed event by event (``ijson``), never held whole: only the GPU
kernels, the kernel launches, the CPU ops and the annotations that the import needs are
kept, each as a small tuple. Every variant seen in real traces is read: ``distributedInfo``
missing, rank-only or full; times as integers or floats; ``pid``/``tid`` as numbers or
strings; NCCL kernel names before and after NCCL 2.19; message sizes on kernels or only on
``nccl:*`` annotations. :func:`trace_files` lists a folder's trace files.

>>> collective_of("ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevKernelArgsStorage<4096ul>)")
'all_reduce'
>>> collective_of("ncclKernel_SendRecv_RING_SIMPLE_Sum_int8_t(ncclDevComm*, unsigned long, ncclWork*)")
'send_recv'
>>> rank_from_name("worker3_step_12.1694128201557.pt.trace.json"), rank_from_name("x.json")
(3, None)
"""

from __future__ import annotations

import gzip
import os
import re
import sys
import zlib
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import ijson
import numpy as np

#: Kineto categories of work on the GPU.
GPU_CATS = {"kernel": "kernel", "Kernel": "kernel", "gpu_memcpy": "memcpy", "Memcpy": "memcpy",
            "gpu_memset": "memset", "Memset": "memset"}
_CPU_CATS = {"cpu_op", "user_annotation", "Operator", "python_function"}
_RUNTIME_CATS = {"cuda_runtime", "cuda_driver", "Runtime", "Driver"}

#: Bytes per element of the dtypes that profiler traces name (kernel args, ``Input type``).
DTYPE_BYTES = {
    "float": 4, "float32": 4, "f32": 4, "int": 4, "int32": 4, "i32": 4, "u32": 4, "uint32": 4,
    "half": 2, "float16": 2, "f16": 2, "bfloat16": 2, "bf16": 2, "c10::half": 2,
    "c10::bfloat16": 2, "short": 2, "int16": 2,
    "double": 8, "float64": 8, "f64": 8, "long": 8, "int64": 8, "i64": 8, "u64": 8,
    "long int": 8, "uint64": 8,
    "byte": 1, "char": 1, "int8": 1, "int8_t": 1, "uint8": 1, "uint8_t": 1, "i8": 1, "u8": 1,
    "signed char": 1, "unsigned char": 1, "bool": 1, "float8_e4m3fn": 1, "float8_e5m2": 1,
    "f8e4m3": 1, "f8e5m2": 1,
}

# NCCL <= 2.18: ncclKernel_AllReduce_RING_LL_Sum_float(...); newer: ncclDevKernel_AllReduce_Sum_f32_RING_LL(...)
_NCCL_KERNEL = re.compile(r"^nccl(?:Dev)?Kernel_([A-Za-z]+)")
_TRACE_FILE = re.compile(r"\.json(\.gz)?$")
_RANK_IN_NAME = re.compile(r"(?:worker|rank)[-_]?(\d+)(?![\d])", re.IGNORECASE)
_COLLECTIVES = {  # lower-cased, without '_' -> the name nccl-tests uses
    "allreduce": "all_reduce", "allgather": "all_gather", "allgatherbase": "all_gather",
    "allgatherintotensor": "all_gather", "allgatherintotensorcoalesced": "all_gather",
    "reducescatter": "reduce_scatter", "reducescatterbase": "reduce_scatter",
    "reducescattertensor": "reduce_scatter", "reducescattertensorcoalesced": "reduce_scatter",
    "alltoall": "all_to_all", "alltoallv": "all_to_all", "alltoallbase": "all_to_all",
    "broadcast": "broadcast", "reduce": "reduce", "sendrecv": "send_recv", "send": "send_recv",
    "recv": "send_recv", "barrier": "barrier", "gather": "gather", "scatter": "scatter",
    "allreducecoalesced": "all_reduce",
}


def collective_of(name: str) -> str | None:
    """The collective an NCCL kernel, an ``nccl:*`` annotation or a ``Collective name`` is."""
    m = _NCCL_KERNEL.match(name)
    key = m.group(1) if m else name.split(":", 1)[1] if name.startswith("nccl:") else name
    return _COLLECTIVES.get(key.lower().replace("_", "").strip())


def is_nccl_kernel(name: str) -> bool:
    return bool(_NCCL_KERNEL.match(name))


def rank_from_name(name: str) -> int | None:
    """The rank a file name states (``worker3...``, ``rank-3...``, ``rank3``), or None."""
    m = _RANK_IN_NAME.search(name)
    return int(m.group(1)) if m else None


def dtype_bytes(dtype) -> int | None:
    return DTYPE_BYTES.get(str(dtype).lower().replace("torch.", "").strip()) if dtype else None


KINDS = ("kernel", "memcpy", "memset")


class GpuEvents:
    """A rank's GPU events in flat arrays (about 37 bytes each, not a tuple of objects);
    indexing or iterating gives ``(ts, dur, name, stream, correlation, kind, comm args)``.

    >>> g = GpuEvents(); g.append(1.0, 2.0, "k", 7, 3, "kernel", None); g[0]
    (1.0, 2.0, 'k', 7, 3, 'kernel', None)
    """

    def __init__(self):
        self.ts, self.dur = array("d"), array("d")
        self.stream, self.corr, self.name = array("q"), array("q"), array("i")
        self.kind = array("b")
        self.names: list[str] = []
        self._name_ix: dict[str, int] = {}
        self.comm: dict[int, dict] = {}

    def append(self, ts, dur, name, stream, corr, kind, comm) -> None:
        ix = self._name_ix.get(name)
        if ix is None:
            ix = self._name_ix[name] = len(self.names)
            self.names.append(name)
        if comm is not None:
            self.comm[len(self.ts)] = comm
        self.ts.append(ts)
        self.dur.append(dur)
        self.name.append(ix)
        self.stream.append(-1 if stream is None else stream)
        self.corr.append(-1 if corr is None else corr)
        self.kind.append(KINDS.index(kind))

    def __len__(self) -> int:
        return len(self.ts)

    def drop_correlations(self) -> None:
        """Free the correlation ids once the launches they name are matched (8 bytes an event)."""
        self.corr = None

    def __getitem__(self, i: int):
        st, c = self.stream[i], -1 if self.corr is None else self.corr[i]
        return (self.ts[i], self.dur[i], self.names[self.name[i]], None if st < 0 else st,
                None if c < 0 else c, KINDS[self.kind[i]], self.comm.get(i))

    def __iter__(self):
        return (self[i] for i in range(len(self.ts)))


class Launches:
    """The CPU launch of each GPU event, by correlation id, in flat arrays (a dict of tuples
    costs about 180 bytes a launch). ``get`` answers like ``dict.get``: ``(ts, tid)``.

    >>> la = Launches(); la.append(7, 10.0, 3); la.get(7), la.get(8)
    ((10.0, 3), None)
    """

    def __init__(self):
        self.corr, self.ts, self.tid = array("q"), array("d"), array("q")
        self._order = None

    def append(self, corr: int, ts: float, tid: int | None) -> None:
        self.corr.append(corr)
        self.ts.append(ts)
        self.tid.append(-1 if tid is None else tid)
        self._order = None

    def __len__(self) -> int:
        return len(self.corr)

    def _find(self, corrs) -> np.ndarray:
        """Index of each correlation's launch (its last, as a dict keeps), or -1."""
        q = np.asarray(corrs, dtype=np.int64)
        if not len(self.corr):
            return np.full(len(q), -1)
        keys = np.frombuffer(self.corr, np.int64)
        if self._order is None:
            self._order = np.argsort(keys, kind="stable")
        sorted_keys = keys[self._order]
        at = np.maximum(np.searchsorted(sorted_keys, q, side="right") - 1, 0)
        return np.where(sorted_keys[at] == q, self._order[at], -1)

    def times(self, corrs, default) -> np.ndarray:
        """Each correlation's launch time, else the same place of ``default``."""
        at = self._find(corrs)
        if not len(self.ts):
            return np.asarray(default, dtype=float)
        return np.where(at >= 0, np.frombuffer(self.ts, float)[np.maximum(at, 0)],
                        np.asarray(default, dtype=float))

    def get(self, corr):
        if corr is None or corr < 0:
            return None
        i = int(self._find([corr])[0])
        return None if i < 0 else (self.ts[i], None if self.tid[i] < 0 else self.tid[i])


@dataclass
class RankTrace:
    """What one file holds, reduced to what the import uses. Times are the file's microseconds."""

    path: Path
    rank: int | None = None
    rank_from: str = ""
    info: dict = field(default_factory=dict)        # distributedInfo as written
    devices: list = field(default_factory=list)     # deviceProperties as written
    gpu: GpuEvents = field(default_factory=GpuEvents)  # (ts, dur, name, stream, corr, kind, comm args)
    launches: Launches = field(default_factory=Launches)  # correlation -> (ts, tid) of the CPU launch
    cpu: list = field(default_factory=list)         # (ts, dur, name, tid, cat, args or None)
    problems: list = field(default_factory=list)
    events_read: int = 0

    @property
    def world_size(self) -> int | None:
        w = self.info.get("world_size")
        return w if isinstance(w, int) and not isinstance(w, bool) and w > 0 else None


def _open(path: Path):
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _num(v) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if x == x and abs(x) != float("inf") else None


def _int(v) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


# Kernel and annotation args that describe a collective's message (kept; the rest dropped).
_COMM_KEYS = ("Collective name", "In msg nelems", "Out msg nelems", "Group size", "dtype",
              "Process Group Name", "Process Group Ranks", "Input Dims", "Input type")
_KEEP_CPU = ("nccl:", "record_param_comms", "c10d::")


def read_trace(path: str | Path) -> RankTrace:
    """Read one profiler trace; what cannot be read is listed in ``problems`` (named by file).

    >>> t = read_trace("worker0.pt.trace.json.gz")     # doctest: +SKIP
    >>> t.rank, len(t.gpu), t.info.get("nccl_version")  # doctest: +SKIP
    """
    path = Path(path)
    t = RankTrace(path=path)
    try:
        found = _read_header(path, t)
        if found is None:
            t.problems.append(f"{path.name}: not a PyTorch profiler trace (no traceEvents list)")
            return t
        _read_events(path, t, found)
    except (ijson.JSONError, ijson.IncompleteJSONError, EOFError, OSError, zlib.error,
            UnicodeDecodeError, ValueError) as e:
        cut = isinstance(e, EOFError) or "premature EOF" in str(e)
        what = "truncated or corrupt" if t.events_read or cut else "not readable JSON"
        why = " ".join(str(e).split())[:80]
        t.problems.append(f"{path.name}: {what} ({type(e).__name__}: {why}); "
                          f"{t.events_read} events before it kept")
    if not t.info:
        found_info_later(path, t)
    r = t.info.get("rank")
    if isinstance(r, int) and not isinstance(r, bool) and r >= 0:
        t.rank, t.rank_from = r, "distributedInfo"
    elif (r := rank_from_name(path.name)) is not None:
        t.rank, t.rank_from = r, "file name"
    return t


def _read_header(path: Path, t: RankTrace) -> str | None:
    """Top-level keys before the events (Kineto writes its metadata first). Returns the
    prefix of the events (``traceEvents.item``, or ``item`` for a bare JSON array)."""
    key, builder = None, None
    with _open(path) as f:
        for prefix, event, value in ijson.parse(f, use_float=True):
            if prefix == "":
                if event == "start_array":
                    return "item"
                if event == "map_key":
                    _keep(t, key, builder)
                    key, builder = value, ijson.ObjectBuilder()
                    if value == "traceEvents":
                        return "traceEvents.item"
                elif event == "end_map":
                    _keep(t, key, builder)
                    return None
                elif event != "start_map":
                    return None
            elif builder is not None:
                builder.event(event, value)
    return None


def _keep(t: RankTrace, key, builder) -> None:
    if builder is None or not hasattr(builder, "value"):
        return
    if key == "distributedInfo" and isinstance(builder.value, dict):
        t.info = builder.value
    elif key == "deviceProperties" and isinstance(builder.value, list):
        t.devices = builder.value


def found_info_later(path: Path, t: RankTrace) -> bool:
    """``distributedInfo`` written after the events (not Kineto's order, but valid JSON)."""
    try:
        with _open(path) as f:
            info = next(ijson.items(f, "distributedInfo", use_float=True), None)
    except (ijson.JSONError, EOFError, OSError, zlib.error, ValueError):
        return False
    if isinstance(info, dict):
        t.info = info
        return True
    return False


def _read_events(path: Path, t: RankTrace, prefix: str) -> None:
    intern = sys.intern
    gpu, cpu, launches = t.gpu, t.cpu, t.launches
    with _open(path) as f:
        for e in ijson.items(f, prefix, use_float=True):
            t.events_read += 1
            if not isinstance(e, dict) or e.get("ph") != "X":
                continue
            cat = e.get("cat")
            ts, dur = _num(e.get("ts")), _num(e.get("dur", 0.0))
            if ts is None or dur is None or dur < 0:
                continue
            args = e.get("args") or {}
            if cat in GPU_CATS:
                name = str(e.get("name", "?"))
                stream = _int(args.get("stream", e.get("tid")))
                comm = None
                if GPU_CATS[cat] == "kernel" and is_nccl_kernel(name):
                    comm = {k: args[k] for k in _COMM_KEYS if k in args}
                gpu.append(ts, dur, name, stream, _int(args.get("correlation")), GPU_CATS[cat], comm)
            elif cat in _RUNTIME_CATS:
                c = _int(args.get("correlation"))
                if c is not None:
                    launches.append(c, ts, _int(e.get("tid")))
            elif cat in _CPU_CATS:
                name = str(e.get("name", "?"))
                keep = {k: args[k] for k in _COMM_KEYS if k in args} if name.startswith(_KEEP_CPU) else None
                cpu.append((ts, dur, intern(name), _int(e.get("tid")), intern(str(cat)), keep))


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
