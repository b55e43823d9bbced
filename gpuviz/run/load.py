"""Load a run directory (``rank{R}.jsonl`` files) into a :class:`Run` of DataFrames.

>>> run = load_run("runs/20261122-101500-train")   # doctest: +SKIP
>>> run.spans.head()                                 # doctest: +SKIP
>>> run.summary()                                    # doctest: +SKIP
>>> run.to_perfetto("trace.json")                    # open in ui.perfetto.dev  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from gpuviz.run.categories import CATEGORIES
from gpuviz.run.collectives import bus_factor, collective_in
from gpuviz.run.events import read_rank_file
from gpuviz.run.intervals import innermost, intersect, length, sort_spans, split_automatic, union
from gpuviz.run.meta import MAX_WORLD, merge_meta, run_json_problems

SPAN_COLUMNS = ["rank", "lane", "step", "name", "cat", "start", "end", "dur", "bytes", "args"]
_RANK_FILE = re.compile(r"^rank(\d+)\.jsonl$")


class TraceError(ValueError):
    """A run directory or trace file that cannot be read."""


class TraceWarning(UserWarning):
    """Part of a trace was unreadable and was left out (the message says what)."""


@dataclass
class Run:
    """One job's traces: every rank's spans, counters and events, and its metadata.

    Times are seconds from the aligned start (every rank left a barrier at 0). After an
    elastic restart, each attempt's times are shifted by its wall-clock start, so every
    attempt lies on one axis; ``attempt`` (in spans, events, counters) says which it was.

    Analyses of a topic are functions over a Run, in the topic's folder:
    ``gpuviz.energy.attribution.joules(run, "rank")``, ``gpuviz.sync.stragglers.waiting(run)``.
    """

    path: Path
    spans: pd.DataFrame
    counters: pd.DataFrame
    events: pd.DataFrame
    meta: dict
    problems: list[str] = field(default_factory=list)
    raw: dict[int, list[dict]] = field(default_factory=dict, repr=False)

    @property
    def world_size(self) -> int:
        """Ranks in the job: the metadata's count where it is sane, else the highest rank + 1."""
        least = max(self.raw, default=-1) + 1
        w = self.meta.get("world_size")
        if isinstance(w, int) and not isinstance(w, bool) and least <= w <= MAX_WORLD:
            return w
        return least

    @property
    def ranks(self) -> list[int]:
        return sorted(self.raw)

    @property
    def imported(self) -> bool:  # read from PyTorch profiler traces, not recorded by gpuviz
        return self.meta.get("source") == "pytorch-profiler"

    @property
    def main_lanes(self) -> list[str]:
        """A rank's own timeline: ``main``, or an imported trace's CUDA streams."""
        lanes = sorted(ln for ln in self.spans["lane"].unique() if str(ln).startswith("GPU stream"))
        return (lanes or ["CPU main thread"]) if self.imported else ["main"]

    def __repr__(self) -> str:
        return (f"Run({str(self.path)!r}, world_size={self.world_size}, "
                f"backend={self.meta.get('backend')!r}, spans={len(self.spans)}, "
                f"steps={self.steps()}, status={self.meta.get('status', 'unknown')!r})")

    def steps(self) -> int:
        """Number of distinct steps rank 0 (or the lowest rank present) finished."""
        ends = self.events[self.events["name"] == "step_end"]
        if ends.empty:
            return 0
        return int(ends.loc[ends["rank"] == ends["rank"].min(), "step"].nunique())

    def summary(self) -> pd.DataFrame:
        """Seconds per rank in each category, untraced time, wall time and overlap.

        ``compute`` ... ``io`` and ``untraced`` (time in no span) split the rank's main
        thread and add up to ``wall``; a nested span's time belongs to the innermost
        span. ``comm_lane`` is communication running beside the main thread (DDP's
        gradient buckets) and ``overlap`` the fraction of it hidden behind compute.

        On a run imported from PyTorch profiler traces the split is the GPU's instead
        (:func:`gpuviz.run.device_time.gpu_summary`): its streams' kernels, ``idle`` the
        waits inside collectives and the gaps with no kernel (``idle_gaps``).

        >>> run.summary()[["compute", "comm", "idle", "overlap"]]   # doctest: +SKIP
        """
        if self.imported:
            from gpuviz.run.device_time import gpu_summary
            return gpu_summary(self)
        rows = []
        for rank in self.ranks:
            s = self.spans[self.spans["rank"] == rank]
            main, side = s[s["lane"] == "main"], s[(s["lane"] == "comm") & (s["cat"] == "comm")]
            pieces = innermost(main)
            row = {"rank": rank, **{cat: 0.0 for cat in CATEGORIES}}
            for a, b, cat in pieces:
                row[cat] = row.get(cat, 0.0) + (b - a)
            side_iv = union(side[["start", "end"]].to_numpy())
            compute_iv = union(np.asarray([(a, b) for a, b, c in pieces if c == "compute"],
                                           dtype=float).reshape(-1, 2))
            side_total = length(side_iv)
            hidden = length(intersect(side_iv, compute_iv))
            if len(s):
                wall = float(s["end"].max() - min(0.0, s["start"].min()))
            else:
                wall = 0.0
            row["untraced"] = max(0.0, wall - sum(b - a for a, b, _ in pieces))
            row["wall"] = wall
            row["comm_lane"] = side_total
            row["overlap"] = hidden / side_total if side_total > 0 else 0.0
            rows.append(row)
        cols = ["rank", *CATEGORIES, "untraced", "wall", "comm_lane", "overlap"]
        return pd.DataFrame(rows, columns=cols).set_index("rank")

    def waits(self, name: str = "wait for others") -> pd.DataFrame:
        """Each rank's wait before each collective, measured and as predicted by arrivals.

        A rank that reaches the barrier at ``arrival`` can leave only when the last rank
        arrives, so its predicted wait is ``last_arrival - arrival``; ``measured`` is
        the span's duration (it also holds the barrier's own latency).

        >>> run.waits().groupby("rank")[["predicted", "measured"]].sum()  # doctest: +SKIP
        """
        w = self.spans[(self.spans["name"] == name) & (self.spans["cat"] == "idle")]
        w = w[["rank", "step", "start", "dur", "attempt"]].rename(columns={"start": "arrival", "dur": "measured"})
        w["last_arrival"] = w.groupby(["attempt", "step"])["arrival"].transform("max")
        w["predicted"] = w["last_arrival"] - w["arrival"]
        return w.reset_index(drop=True)

    def comm(self) -> pd.DataFrame:
        """Every collective with its bytes, algorithm and bus bandwidth (bytes/s).

        algbw = bytes / time; busbw = algbw x nccl-tests' factor for the collective
        (:func:`gpuviz.run.collectives.bus_factor`): the bytes each rank's link carries. p is
        the span's ``world`` argument, else the run's world size. On imported GPU traces
        the time is the NCCL kernel's after the last rank arrived.
        """
        sp = self.spans
        c = sp[(sp["cat"] == "comm") & sp["bytes"].notna()].copy()
        coll = [a["collective"] if isinstance(a.get("collective"), str) else collective_in(n)
                for a, n in zip(c["args"], c["name"], strict=True)]   # an auto span's is True
        c["collective"] = pd.array(coll, dtype=object)
        c = c[c["collective"].notna() & (c["dur"] > 0)]
        # A span from a subgroup (gpuviz.sharing.bench) names its own world size.
        p = np.array([a.get("world") or self.world_size for a in c["args"]], dtype=float)
        c["world"], c["algbw"] = p.astype(int), c["bytes"].astype(float) / c["dur"]
        c["busbw"] = c["algbw"] * np.array([bus_factor(k, q) for k, q in zip(c["collective"], p, strict=True)])
        return c[["rank", "lane", "step", "name", "collective", "world", "bytes", "dur", "algbw",
                  "busbw"]].reset_index(drop=True)

    def errors(self) -> pd.DataFrame:
        """Each rank's recorded exception, earliest first (the first is the root cause)."""
        e = self.events[self.events["name"] == "error"]
        out = pd.DataFrame({
            "rank": e["rank"].to_numpy(), "step": e["step"].to_numpy(), "time": e["time"].to_numpy(),
            "attempt": e["attempt"].to_numpy(),
            "error": [a.get("error", "") for a in e["args"]],
            "traceback": [a.get("traceback", "") for a in e["args"]],
        })
        return out.sort_values("time", kind="stable").reset_index(drop=True)

    def missing_ranks(self) -> str:
        """The ranks of the job that wrote no trace, as ranges ("ranks 2, 5 to 7"); "" if none.

        >>> Run(Path("."), None, None, None, {"world_size": 8}, raw={0: [], 1: [], 3: [], 4: []}).missing_ranks()
        'ranks 2, 5 to 7'
        """
        present, world, parts, lo = sorted(self.raw), self.world_size, [], 0
        for r in [*present, world]:
            if r > lo:
                parts.append(str(lo) if r - 1 == lo else f"{lo} to {r - 1}")
            lo = r + 1
        if not parts:
            return ""
        return ("rank " if world - len(present) == 1 else "ranks ") + ", ".join(parts)

    def where_report(self) -> str:
        """Where each rank was when the launcher asked (after a timeout), one line each."""
        lines = []
        where = self.events[self.events["name"] == "where"]
        if missing := self.missing_ranks():
            lines.append(f"{missing}: wrote no trace at all")
        for rank in self.ranks:
            w = where[where["rank"] == rank]
            if w.empty:
                cut = self.spans[(self.spans["rank"] == rank) & self.spans["interrupted"]]
                if len(cut):
                    c = cut.iloc[-1]
                    lines.append(f"rank {rank}: step {c['step']}, stopped in span {c['name']!r} "
                                 f"({c['cat']}) after {c['dur']:.1f} s (did not answer the report request)")
                else:
                    lines.append(f"rank {rank}: did not answer the report request")
                continue
            a = w.iloc[-1]["args"]
            spans_open = [o for o in a.get("open_spans", [])]
            if not spans_open:
                lines.append(f"rank {rank}: step {a.get('step')}, in no span; its Python stack:\n"
                             + _indent(_last_frames(a.get("main_stack", ""))))
                continue
            inner = spans_open[-1]
            waiting = inner["cat"] in ("comm", "idle")
            path = " > ".join(o["name"] for o in spans_open)
            lines.append(f"rank {rank}: step {a.get('step')}, in span {inner['name']!r} ({inner['cat']}) "
                         f"for {inner['since_s']:.1f} s [{path}]"
                         + ("" if waiting else "  <- not in a collective: the others wait for it"))
        return "\n".join(lines)

    def to_perfetto(self, path: str | os.PathLike) -> Path:
        """Write one merged Chrome trace JSON (pid = rank) for Perfetto or chrome://tracing."""
        out = []
        for rank in self.ranks:
            out.append({"ph": "M", "name": "process_name", "pid": rank, "args": {"name": f"rank {rank}"}})
            out.append({"ph": "M", "name": "process_sort_index", "pid": rank, "args": {"sort_index": rank}})
            out.append({"ph": "M", "name": "thread_name", "pid": rank, "tid": 0, "args": {"name": "main"}})
            out.append({"ph": "M", "name": "thread_name", "pid": rank, "tid": 1, "args": {"name": "comm"}})
            out += [e for e in self.raw[rank] if e.get("ph") == "M" and e.get("name") == "thread_name"]
            if self.imported:   # its spans are held in the DataFrame only
                from gpuviz.run.export import span_events
                out += span_events(self, rank)
            offsets = {a["attempt"]: a["offset_s"] * 1e6 for a in self.meta.get("attempts") or []}
            shift = 0.0
            for e in self.raw[rank]:
                if e.get("ph") == "M" and e.get("name") == "process_name":  # an attempt begins
                    shift = offsets.get(int((e.get("args") or {}).get("attempt") or 0), 0.0)
                elif e.get("ph") in ("X", "i", "C"):
                    out.append({**e, "ts": round(e["ts"] + shift, 3)} if shift else e)
        path = Path(path)
        path.write_text(json.dumps({"traceEvents": out, "displayTimeUnit": "ms",
                                    "otherData": _jsonable(self.meta)}), encoding="utf-8")
        return path


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def _last_frames(stack: str, n: int = 6) -> str:
    return "\n".join(stack.strip().splitlines()[-2 * n:])


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=str))


def load_run(path, strict: bool = False) -> Run:
    """Load a run: every ``rank{R}.jsonl`` in a gpuviz run directory, or PyTorch profiler
    traces of a real job (a folder or a list of ``.json`` / ``.json.gz`` files, one per rank;
    see :mod:`gpuviz.run.imported`).

    Unreadable lines (a rank killed mid-write, a corrupt file) and files (not a trace,
    truncated, another job's) are dropped with a :class:`TraceWarning` that says which;
    ``strict=True`` raises :class:`TraceError` instead. What is valid always loads.

    >>> gpu = load_run("profiler_traces/")             # doctest: +SKIP
    """
    from gpuviz.run.kineto import is_trace_folder

    if is_trace_folder(path):
        return _load_traces(path, strict)
    path = Path(path)
    if not path.is_dir():
        raise TraceError(f"path={str(path)!r} is not a run directory (it should hold rank*.jsonl files)")
    files = sorted((int(m.group(1)), p) for p in path.iterdir() if (m := _RANK_FILE.match(p.name)))
    if not files:
        raise TraceError(f"path={str(path)!r} holds no rank*.jsonl trace files")
    for (r1, p1), (r2, p2) in zip(files, files[1:], strict=False):
        if r1 == r2:
            raise TraceError(f"{p1.name} and {p2.name} in {path} are both rank {r1}: remove the "
                             "one that does not belong to this run")
    raw, problems = {}, []
    for rank, p in files:
        events, dropped = read_rank_file(p)
        problems += dropped
        if not events:
            problems.append(f"{p.name}: no readable events; rank {rank} left out")
            continue
        raw[rank] = events
    problems += run_json_problems(path, raw)
    if problems:
        msg = f"{path}: " + "; ".join(problems)
        if strict:
            raise TraceError(msg)
        warnings.warn(msg, TraceWarning, stacklevel=2)
    if not raw:
        raise TraceError(f"path={str(path)!r}: no rank file holds a readable event")
    return _build(path, raw, problems)


def _load_traces(path, strict: bool) -> Run:
    from gpuviz.run.imported import import_traces

    problems: list[str] = []
    try:
        raw, problems, spans = import_traces(path, problems)
    except (ValueError, FileNotFoundError) as e:
        raise TraceError(str(e)) from None
    where = Path(path[0]).parent if isinstance(path, (list, tuple)) else Path(path)
    if problems:
        msg = f"{where}: " + "; ".join(problems)
        if strict:
            raise TraceError(msg)
        warnings.warn(msg, TraceWarning, stacklevel=3)
    return _build(where, raw, problems, spans)


def _attempt_starts(raw: dict[int, list[dict]]) -> dict[int, float]:
    """Wall-clock time 0 of each attempt: rank 0's, which every rank received at alignment."""
    starts: dict[int, float] = {}
    fallback: dict[int, float] = {}
    for evs in raw.values():
        attempt = 0
        for e in evs:
            if e.get("ph") != "M":
                continue
            args = e.get("args") or {}
            if e.get("name") == "process_name":
                attempt = int(args.get("attempt") or 0)
                if args.get("wall_time"):
                    fallback[attempt] = min(fallback.get(attempt, np.inf), float(args["wall_time"]))
            elif e.get("name") == "gpuviz_meta" and args.get("start_time"):
                starts[attempt] = min(starts.get(attempt, np.inf), float(args["start_time"]))
    return {**fallback, **starts}


def _build(path: Path, raw: dict[int, list[dict]], problems: list[str], more=None) -> Run:
    """The Run of ``raw`` events, with ``more`` spans already in a DataFrame (imported)."""
    spans, counters, events = [], [], []
    meta_by_rank: dict[int, dict] = {}
    attempts: dict[int, dict] = {}
    starts = _attempt_starts(raw)
    base = starts[min(starts)] if starts else 0.0
    for rank, evs in raw.items():
        attempt, shift = 0, 0.0
        # Imported traces name their lanes (GPU streams, CPU threads); gpuviz's are tid 0 and 1.
        lanes = {e.get("tid"): str((e.get("args") or {}).get("name")) for e in evs
                 if e.get("ph") == "M" and e.get("name") == "thread_name"}
        for e in evs:
            ph, args = e.get("ph"), e.get("args") or {}
            if ph == "X":
                ts, dur = float(e["ts"]) / 1e6 + shift, float(e.get("dur", 0.0)) / 1e6
                lane = lanes.get(e.get("tid")) or ("comm" if e.get("tid") == 1 else "main")
                spans.append((rank, lane, args.get("step"),
                              e.get("name", "?"), e.get("cat", "compute"), ts, ts + dur, dur,
                              args.get("bytes"), args, attempt))
            elif ph == "C":
                for k, v in args.items():
                    counters.append((rank, k, float(e["ts"]) / 1e6 + shift, float(v), attempt))
            elif ph == "i":
                events.append((rank, e.get("name"), args.get("step"), float(e["ts"]) / 1e6 + shift,
                               args, attempt))
            elif ph == "M" and e.get("name") == "process_name":
                # Each process (each elastic attempt) opens its part of the file with this event.
                attempt = int(args.get("attempt") or 0)
                shift = starts.get(attempt, base) - base
                attempts.setdefault(attempt, {"attempt": attempt, "offset_s": shift,
                                              "start_time": starts.get(attempt), "pids": {}})
            elif ph == "M" and e.get("name") == "gpuviz_meta":
                meta_by_rank.setdefault(rank, {}).update(args)
                if "pid" in args and attempt in attempts:
                    attempts[attempt]["pids"][rank] = args["pid"]
    sp = pd.DataFrame(spans, columns=[*SPAN_COLUMNS, "attempt"])
    sp["step"] = pd.array(sp["step"], dtype="Int64")
    sp["bytes"] = pd.array([None if b is None or pd.isna(b) else int(b) for b in sp["bytes"]],
                           dtype="Int64")
    sp["interrupted"] = [bool(a.get("interrupted")) for a in sp["args"]]
    sp["attempt"] = sp.pop("attempt")  # after "interrupted": the documented columns come first
    if more is not None and sp.empty:   # imported: sorted, waits split (gpuviz.run.imported)
        sp = more
    else:   # automatic spans: the waits for the last rank are idle
        sp = split_automatic(sort_spans(sp if more is None else pd.concat([sp, more], ignore_index=True)), consume=True)
    ct = pd.DataFrame(counters, columns=["rank", "name", "time", "value", "attempt"])
    ev = pd.DataFrame(events, columns=["rank", "name", "step", "time", "args", "attempt"])
    ev["step"] = pd.array(ev["step"], dtype="Int64")   # instants without a step are <NA>, not float NaN
    meta = merge_meta(path, meta_by_rank)
    meta["start_time"] = base or meta["start_time"]
    meta["attempts"] = [attempts[k] for k in sorted(attempts)] or [
        {"attempt": 0, "offset_s": 0.0, "start_time": meta["start_time"], "pids": meta["pids"]}]
    meta["restarts"] = max(a["attempt"] for a in meta["attempts"])
    return Run(path=path, spans=sp, counters=ct, events=ev, meta=meta, problems=problems, raw=raw)
