"""One rank's recorder: the :class:`Tracer`, the :class:`span` timer, and its metadata.

Each rank appends Chrome-trace events (``ph``, ``name``, ``cat``, ``ts``/``dur`` in
microseconds, ``pid`` = rank, ``tid`` = lane) to ``rank{R}.jsonl`` in the run directory.
Events are kept in memory and written at every step, so a crash keeps all steps before
it; on SIGTERM (torchrun stopping the job) the open spans are written too, marked
``interrupted``. Time 0 is one instant on every rank (:mod:`gpuviz.run.clock`). On CUDA,
spans are timed with CUDA events on the current stream, not by when the host launched
the work.

Lanes: ``tid`` 0 is the rank's main thread (compute, data, optimizer, waiting);
``tid`` 1 is communication that runs beside it (DDP's gradient buckets).

A step starts at the tracer's start and after each step; there the hooks that topics
registered (:mod:`gpuviz.run.hooks`: injected delays, energy samples) run. After an
elastic restart (torchrun's ``--max-restarts``) the new attempt appends to the same rank
file, its events marked with the attempt number, and :meth:`Tracer.resume` continues the
step count from a checkpoint.

Workloads use :mod:`gpuviz.run.trace` (``from gpuviz import trace``), not this module.

>>> with span("forward"):   # no tracer running: a no-op
...     pass
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from gpuviz.run import hooks, lines
from gpuviz.run.categories import check_category
from gpuviz.run.meta import collect_meta
from gpuviz.run.watchdog import start_watchdog

MAIN_LANE = 0
COMM_LANE = 1

_tracer: Tracer | None = None  # this process's running tracer (set_tracer)


def _now_us(origin_ns: int) -> float:
    return (time.perf_counter_ns() - origin_ns) / 1000.0


class Tracer:
    """Records one rank's events and writes them to ``rank{R}.jsonl``.

    Made by :func:`init`; workloads use the module functions, not this class.
    """

    def __init__(self, run_dir: str | os.PathLike, rank: int, world_size: int, cuda: bool = False):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.rank, self.world_size = rank, world_size
        self.path = self.run_dir / f"rank{rank}.jsonl"
        #: torchrun's restart count: 0 on the first attempt, then 1, 2... (same rank file)
        self.attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0) or 0)
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        self._fd = self._file.fileno()
        if self._file.tell() > 0 and not _ends_with_newline(self.path):
            self._file.write(b"\n")  # an earlier attempt killed mid-line: keep ours readable
        self._lock = threading.Lock()
        self._events: list[dict | tuple] = []   # tuples: spans, instants, counters (gpuviz.run.lines)
        self._write = lines.writer(rank)
        self._pending_cuda: list[tuple[Any, Any, dict]] = []
        self._open: dict[int, list[tuple[str, str, float]]] = {}  # thread id -> open spans
        self._unwinding: tuple[BaseException | None, list[dict]] = (None, [])  # see span.__exit__
        self.origin_ns = time.perf_counter_ns()
        self.start_time = time.time()
        self.step_index = 0
        self.total_steps: int | None = None
        self.hooks: list[hooks.RankHook] = []  # what topics do on this rank (gpuviz.run.hooks)
        self.cuda = cuda
        self.clock_info: dict = {"clock": "not aligned"}
        self._cuda_ref = None
        self._cuda_ref_us = 0.0
        self.closed = False
        self.started = False  # start() has aligned the clock
        # Opens this process's part of the file: later events belong to this attempt.
        self._emit({"ph": "M", "name": "process_name", "pid": rank,
                    "args": {"name": f"rank {rank}", "attempt": self.attempt,
                             "wall_time": self.start_time}})
        self._write_now()

    # -- recording -----------------------------------------------------------------
    def now(self) -> float:
        """Microseconds since the aligned start."""
        return _now_us(self.origin_ns)

    def _emit(self, event: dict | tuple) -> None:
        self._events.append(event)  # list.append is atomic: safe from comm threads

    def complete(self, name: str, cat: str, ts: float, dur: float, lane: int = MAIN_LANE,
                 step: int | None = None, **args: Any) -> None:
        """Record a finished span that started at ``ts`` and lasted ``dur`` microseconds.

        Kept as a tuple until the step's write makes it an event (:mod:`gpuviz.run.lines`): a
        span ends between the step's kernels, when little of the interpreter is in the CPU's
        caches, so the less it does there the less it costs."""
        self._events.append((name, cat, ts, dur, lane, self.step_index if step is None else step, args))

    def counter(self, name: str, value: float) -> None:
        self._emit((name, self.now(), {name: float(value)}))   # a C event (gpuviz.run.lines)

    def instant(self, name: str, cat: str = "event", **args: Any) -> None:
        self._emit({"ph": "i", "s": "p", "name": name, "cat": cat, "ts": round(self.now(), 3),
                    "pid": self.rank, "tid": MAIN_LANE, "args": args})

    def meta(self, **info: Any) -> None:
        """Record facts about this rank (device, versions...) for ``Run.meta``."""
        self._emit({"ph": "M", "name": "gpuviz_meta", "pid": self.rank, "args": info})

    # -- clocks ----------------------------------------------------------------------
    def align_clock(self) -> None:
        """Set time 0 to the same instant on every rank (see :mod:`gpuviz.run.clock`)."""
        from gpuviz.run import clock

        self.origin_ns, self.clock_info = clock.align()
        self.start_time = self.clock_info["start_time"]
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            self._cuda_ref = torch.cuda.Event(enable_timing=True)
            self._cuda_ref.record()
            self._cuda_ref.synchronize()
            self._cuda_ref_us = self.now()

    def start(self, **info: Any) -> None:
        """Align the clock, answer hang reports, start the registered hooks
        (:mod:`gpuviz.run.hooks`) and record this rank's facts (``info`` too); then step 0
        starts."""
        self.align_clock()
        start_watchdog(self)
        total = info.pop("total_steps", None)
        self.hooks = [h for h in (factory(self) for factory in hooks.RANK_HOOKS) if h is not None]
        for h in self.hooks:
            facts = h.info()
            if facts is not None:
                info[h.name] = facts
        self.meta(**collect_meta(self, total_steps=total), **info, trace_writer=lines.route())
        self._write_now()
        if total:
            self.set_total_steps(total)
        self.instant("tracer started")   # time 0 to here: gpuviz's own start (run.untraced)
        self.started = True
        self._begin_step()

    def _begin_step(self) -> None:
        """A step starts: the hooks act on it (an injected delay, failure or hang...)."""
        if self.total_steps is not None and self.step_index >= self.total_steps:
            return
        for h in self.hooks:
            h.step_begins(self.step_index)

    def set_total_steps(self, total: int) -> None:
        """Record the job's step count; a hook that it rules out raises
        :class:`gpuviz.run.hooks.OptionError` (a failure injected beyond it)."""
        total = int(total)
        for h in self.hooks:
            h.total_steps(total)
        self.total_steps = total
        self.meta(total_steps=total)

    def resume(self, step: int) -> None:
        """Continue the step count at ``step`` (the first step after a checkpoint), which
        then starts (its injections apply)."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step={step!r}: the step to resume at is an integer >= 0")
        if step == self.step_index:
            return
        self.instant("resumed", step=step, from_step=self.step_index, attempt=self.attempt)
        self.step_index = step
        self._write_now()
        self._begin_step()

    # -- CUDA timing -----------------------------------------------------------------
    def cuda_event(self):
        import torch

        ev = torch.cuda.Event(enable_timing=True)
        ev.record()
        return ev

    def complete_cuda(self, start_ev, end_ev, event: dict) -> None:
        """Queue a span timed by two CUDA events; resolved at the next flush."""
        self._pending_cuda.append((start_ev, end_ev, event))

    def _resolve_cuda(self) -> None:
        pending, self._pending_cuda = self._pending_cuda, []
        for start_ev, end_ev, event in pending:
            end_ev.synchronize()
            event["ts"] = round(self._cuda_ref_us + 1000.0 * self._cuda_ref.elapsed_time(start_ev), 3)
            event["dur"] = round(1000.0 * start_ev.elapsed_time(end_ev), 3)
            self._events.append(event)

    # -- writing ---------------------------------------------------------------------
    def _write_now(self, extra: list[dict] | None = None) -> None:
        with self._lock:
            if self.closed:
                return
            if self._pending_cuda:
                self._resolve_cuda()
            # taken from the front, never swapped: a comm thread's event appended meanwhile stays
            events = self._events[:(n := len(self._events))]
            del self._events[:n]
            if extra:
                events.extend(extra)
            # one write a step, not buffered: a killed rank keeps every step before
            self._write(self._fd, events)

    def step(self, **args: Any) -> None:
        """End the current step: mark it and write everything recorded so far.

        ``args`` (a loss, a token count...) go into the ``step_end`` event's ``args``: a
        one-element tensor as its number, an object JSON cannot hold as its repr."""
        for h in self.hooks:
            h.sample()
        self._events.append(("step_end", "step", (time.perf_counter_ns() - self.origin_ns) / 1000.0,
                             MAIN_LANE, self.step_index, args))
        self.step_index += 1
        self._write_now()
        self._begin_step()

    def open_spans(self) -> list[dict]:
        """The spans open right now in every thread, outermost first."""
        now = self.now()
        return [{"name": n, "cat": c, "since_s": round((now - ts) / 1e6, 3), "thread": tid}
                for tid, stack in list(self._open.items()) for n, c, ts in list(stack)]

    def write_open_spans(self, reason: str) -> None:
        """Write the open spans, cut at now and marked ``interrupted``, then flush."""
        for h in self.hooks:
            h.flush()
        now = self.now()
        extra = []
        for tid, stack in list(self._open.items()):
            for name, cat, ts in list(stack):
                extra.append({"ph": "X", "name": name, "cat": cat, "ts": round(ts, 3),
                              "dur": round(now - ts, 3), "pid": self.rank,
                              "tid": MAIN_LANE if tid == threading.main_thread().ident else COMM_LANE,
                              "args": {"step": self.step_index, "interrupted": reason}})
        extra.append({"ph": "i", "s": "p", "name": "stopped", "cat": "event", "ts": round(now, 3),
                      "pid": self.rank, "tid": MAIN_LANE, "args": {"step": self.step_index, "reason": reason}})
        self._write_now(extra)

    def report_where(self) -> None:
        """Write a ``where`` event: open spans and every thread's Python stack (hang report)."""
        frames = sys._current_frames()
        stacks = {str(tid): "".join(traceback.format_stack(f)) for tid, f in frames.items()}
        main = threading.main_thread().ident
        self._emit({"ph": "i", "s": "p", "name": "where", "cat": "event", "ts": round(self.now(), 3),
                    "pid": self.rank, "tid": MAIN_LANE,
                    "args": {"step": self.step_index, "open_spans": self.open_spans(),
                             "main_stack": stacks.get(str(main), "")}})
        self._write_now()

    def error(self, exc: BaseException) -> None:
        """Record an exception with its traceback, and the spans it interrupted."""
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        # The spans the exception left on its way out, else those still open.
        left = self._unwinding[1] if self._unwinding[0] is exc else []
        self._emit({"ph": "i", "s": "p", "name": "error", "cat": "event", "ts": round(self.now(), 3),
                    "pid": self.rank, "tid": MAIN_LANE,
                    "args": {"step": self.step_index, "error": f"{type(exc).__name__}: {exc}",
                             "traceback": tb, "open_spans": self.open_spans() or left}})
        self.write_open_spans("error")

    def close(self) -> None:
        hooks_, self.hooks = self.hooks, []
        for h in hooks_:
            h.close()
        self._write_now()
        with self._lock:
            self.closed = True
            self._file.close()


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


class span:  # noqa: N801 - used like a function: ``with trace.span("forward"):``
    """Time a block as one span on this rank's main lane.

    ``cat`` is one of :data:`gpuviz.run.categories.CATEGORIES`; keyword arguments (``bytes=``,
    ``bucket=``...) go into the event's ``args``. A no-op when no tracer is running.

    >>> with span("forward", cat="compute"):
    ...     pass
    """

    __slots__ = ("name", "cat", "args", "_t", "_ev", "_tid")

    def __init__(self, name: str, cat: str = "compute", **args: Any):
        if cat not in _CATS:
            check_category(cat)
        self.name, self.cat, self.args = name, cat, args

    def __enter__(self):
        t = _tracer
        if t is None:
            return self
        self._tid = tid = threading.get_ident()
        if t.cuda:
            self._ev = _cuda_enter(t)
        # as Tracer.now(), without its calls: a span starts when little of the interpreter is
        # in the CPU's caches (see Tracer.complete)
        self._t = ts = (time.perf_counter_ns() - t.origin_ns) / 1000.0
        stack = t._open.get(tid)
        if stack is None:
            stack = t._open[tid] = []
        stack.append((self.name, self.cat, ts))
        return self

    def __exit__(self, exc_type, exc, tb):
        t = _tracer
        if t is None or not hasattr(self, "_t"):
            return False
        if exc is not None:
            _unwinding(t, exc)
        stack = t._open.get(self._tid)
        if stack:
            stack.pop()
        lane = MAIN_LANE if self._tid == _MAIN_TID else COMM_LANE
        if t.cuda:
            _cuda_exit(t, self, lane)
        else:   # as Tracer.complete, without its call
            t._events.append((self.name, self.cat, self._t,
                              (time.perf_counter_ns() - t.origin_ns) / 1000.0 - self._t, lane,
                              t.step_index, self.args))
        return False


def _unwinding(t: Tracer, exc: BaseException) -> None:
    """Keep the spans open where ``exc`` was raised, for :meth:`Tracer.error`."""
    if t._unwinding[0] is not exc:
        t._unwinding = (exc, t.open_spans())


def _cuda_enter(t: Tracer):
    return t.cuda_event()


def _cuda_exit(t: Tracer, s, lane: int) -> None:
    """A span on a CUDA tracer ends: timed by its two CUDA events at the next flush."""
    event = {"ph": "X", "name": s.name, "cat": s.cat, "ts": 0.0, "dur": 0.0,
             "pid": t.rank, "tid": lane, "args": {"step": t.step_index, **s.args}}
    t.complete_cuda(s._ev, t.cuda_event(), event)


_CATS = frozenset(("compute", "comm", "optimizer", "data", "idle", "io"))
_MAIN_TID = threading.main_thread().ident

#: The span above, in Python: what ``span`` is where the compiled one cannot be built.
python_span = span


def _compiled_span():
    """The compiled span (:mod:`gpuviz.run.lines`' module), set up with this module's
    callbacks; None where it cannot be built."""
    mod = lines.load()
    if mod is None:
        return None
    mod.configure(("compute", _CATS), check_category, _cuda_enter, _cuda_exit, _unwinding,
                  _MAIN_TID)
    return mod


_compiled = _compiled_span()
if _compiled is not None:
    span = _compiled.Span  # noqa: F811 - the same span, its start and end in C


def get_tracer() -> Tracer | None:
    """The running tracer, or None outside a traced job."""
    return _tracer


def set_tracer(tracer: Tracer | None) -> None:
    """Make ``tracer`` the one that spans and steps record to (None: none)."""
    global _tracer
    _tracer = tracer
    if _compiled is not None:
        _compiled.set_tracer(tracer)
