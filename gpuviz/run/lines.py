"""A rank's events as JSON lines in its trace file: compiled where it can be built, else orjson.

The tracer keeps spans, instants and counters as tuples while the step runs and writes them
at the step's end (:meth:`gpuviz.run.tracer.Tracer.step`), in one write, so that a killed
rank keeps every step before. That end comes right after the step's kernels, when little of
the interpreter is in the CPU's caches, and every line of Python run there costs several
times what it costs in a loop (``benchmarks/trace_parts.py`` prints it for a span, and what
this module's compiled route saves a step against its Python route). ``trace_lines.c``
writes the tuples' lines in one call instead; it is built with the C compiler on first use
(:mod:`gpuviz.run.compiled`), and where it cannot be, :func:`writer` gives the Python
route, which writes the same events. The compiled route hands anything it does not write
itself (a dict event, a tensor or numpy value, an integer past 64 bits) to the Python
encoder, line by line. The same module holds the compiled ``trace.span``, whose start and
end come right after kernels too (:data:`gpuviz.run.tracer.span`; the Python one,
``python_span``, where it cannot be built).

Tuples: a span ``(name, cat, ts, dur, lane, step, args)`` is the ``X`` event with
``args`` plus ``step``; an instant ``(name, cat, ts, lane, step, args)`` is the ``i``
event with ``step`` then ``args`` (a ``step`` in ``args`` wins, as in a dict); a counter
``(name, ts, args)`` is the ``C`` event.

>>> import os, tempfile
>>> fd, path = tempfile.mkstemp()
>>> write = writer(rank=0)
>>> _ = write(fd, [("forward", "compute", 10.0, 2.5, 0, 3, {}), {"ph": "C", "name": "x", "ts": 1.0}])
>>> os.close(fd); print(open(path).read(), end="")
{"ph":"X","name":"forward","cat":"compute","ts":10.000,"dur":2.500,"pid":0,"tid":0,"args":{"step":3}}
{"ph":"C","name":"x","ts":1.0}
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from gpuviz.run import compiled

SOURCE = Path(__file__).with_name("trace_lines.c")
_module: dict = {}   # "module": the loaded extension, or "why": why it could not be


def _plain(obj: Any) -> Any:
    """A value JSON cannot hold: a one-element tensor or array as its number, else its repr
    (a tracer must not stop the training it records, nor drop the step's events)."""
    item = getattr(obj, "item", None)
    if callable(item):
        try:
            return item()
        except (ValueError, RuntimeError, TypeError):
            pass
    return repr(obj)


_dumps = partial(orjson.dumps, default=_plain, option=orjson.OPT_SERIALIZE_NUMPY)
_json = json.JSONEncoder(separators=(",", ":"), check_circular=False, default=_plain).encode


def event(e: dict | tuple, rank: int) -> dict:
    """The event a span, instant or counter tuple stands for (a dict is returned as it is)."""
    if type(e) is dict:
        return e
    if len(e) == 7:
        name, cat, ts, dur, lane, step, args = e
        return {"ph": "X", "name": name, "cat": cat, "ts": round(ts, 3), "dur": round(dur, 3),
                "pid": rank, "tid": lane, "args": {**args, "step": step}}
    if len(e) == 3:
        name, ts, args = e
        return {"ph": "C", "name": name, "ts": round(ts, 3), "pid": rank, "args": args}
    name, cat, ts, lane, step, args = e
    return {"ph": "i", "s": "p", "name": name, "cat": cat, "ts": round(ts, 3), "pid": rank,
            "tid": lane, "args": {"step": step, **args}}


def encode(events: list[dict]) -> bytes:
    """The events as JSON lines (NaN and infinity become null: JSON has neither)."""
    try:
        return b"\n".join(map(_dumps, events)) + b"\n"
    except TypeError:   # a key that is not a string, an integer past 64 bits: event by event
        return b"".join(encode_one(e) + b"\n" for e in events)


def encode_one(e: dict) -> bytes:
    """One event's JSON, whatever its values hold."""
    try:
        return orjson.dumps(e, default=_plain,
                            option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    except TypeError:   # json's rules (an integer past 64 bits)
        return _json(e).encode()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def python_writer(rank: int) -> Callable[[int, list], None]:
    """The Python route: every event made a dict, encoded by orjson, written in one call."""
    def write(fd: int, events: list) -> None:
        if events:
            _write_all(fd, encode([event(e, rank) for e in events]))
    return write


def load():
    """The compiled writer's module (built on first use), or None with :func:`why_not`."""
    if not _module:
        try:
            _module["module"] = compiled.extension_module(SOURCE, "trace_lines")
        except (compiled.BuildError, ImportError, OSError) as e:
            _module["why"] = f"the compiled trace writer is not available ({e})"
    return _module.get("module")


def why_not() -> str | None:
    """Why :func:`load` returned None (None if it has not failed)."""
    return _module.get("why")


def writer(rank: int) -> Callable[[int, list], object]:
    """``write(fd, events)``: the compiled route where it builds, else :func:`python_writer`."""
    mod = load()
    if mod is None:
        return python_writer(rank)

    def fallback(e):
        return encode_one(event(e, rank)) + b"\n"

    return partial(mod.write_lines, rank, fallback)   # no Python frame at the step's end


def route() -> dict:
    """Which route :func:`writer` takes here, for a rank's metadata."""
    if load() is not None:
        return {"writer": "compiled"}
    return {"writer": "python", "why_python": why_not()}
