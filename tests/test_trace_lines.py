"""The trace file's lines: the compiled writer and the Python route write the same events."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from gpuviz.run import lines, trace

compiled = pytest.mark.skipif(lines.load() is None, reason=f"no compiled writer: {lines.why_not()}")


def _written(write, tmp_path, events, name):
    path = tmp_path / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        write(fd, events)
    finally:
        os.close(fd)
    return path.read_bytes()


def _same_events(tmp_path, events, rank=3):
    fast = _written(lines.writer(rank), tmp_path, events, "compiled.jsonl")
    slow = _written(lines.python_writer(rank), tmp_path, events, "python.jsonl")
    a = [json.loads(x) for x in fast.splitlines()]
    b = [json.loads(x) for x in slow.splitlines()]
    assert a == b and len(a) == len(events) and fast.endswith(b"\n")
    return a


@compiled
def test_spans_instants_and_dicts_are_written_as_the_python_route_writes_them(tmp_path):
    holed = {"gone": 0, "energy J": 1.0, "kept": 2}   # a dict with a deleted entry before its first
    del holed["gone"]
    awkward = ['say "hi"', "back\\slash", "tab\there", "new\nline", "\x01ctl", "ünï", "日本", ""]
    events = []
    for i, name in enumerate(awkward):
        events.append((name, "compute", 1000.0 * i + 0.0004, 12.3456, i % 2, i, {}))
        events.append(("step_end", "step", 5.5 * i, 0, i, {"loss": 0.25 * i, "note": name}))
    events += [
        ("bucket", "comm", 1.0, 2.0, 1, 0, {"bytes": 2**40, "bucket": 3, "ok": True, "no": False,
                                             "none": None, "f": 1e-7, "big": 1e300, "neg": -0.0}),
        ("nan", "comm", 1.0, 2.0, 1, 0, {"x": float("nan"), "y": float("inf")}),
        # values the compiled writer hands to the Python encoder
        ("np", "compute", 1.0, 2.0, 0, 0, {"a": np.float32(2.5), "b": np.int64(7)}),
        ("tensor", "compute", 1.0, 2.0, 0, 0, {"t": torch.tensor(0.5), "m": torch.nn.Identity()}),
        ("huge", "compute", 1.0, 2.0, 0, 0, {"n": 2**70, "u": 2**64 - 1}),
        ("keys", "compute", 1.0, 2.0, 0, 0, {1: "int key", "nested": {"a": [1, 2]}}),
        ("own step", "compute", 1.0, 2.0, 0, 9, {"step": 4}),
        ("step_end", "step", 1.0, 0, 9, {"step": 4, "tokens": np.int64(3)}),
        (np.str_("np name"), "compute", np.float64(1.0), 2.0, 0, 0, {}),
        ("energy", 12.3456, {"energy J": 3.25}), ("two", 1.0, {"a": 1, "b": 2.5}),
        ("holed", 3.0, holed), ("holed span", "compute", 1.0, 2.0, 0, 1, holed),
        ("empty counter", 3.0, {}), ("int key", 1.0, {1: 2.0}), ("tensor", 1.0, {"v": torch.tensor(1.5)}),
        ("lone \ud800", "compute", 1.0, 2.0, 0, 0, {"s": "\udcff"}), ("c \ud800", 1.0, {"x": 1.0}),
        {"ph": "C", "name": "energy J", "ts": 1.5, "pid": 3, "args": {"energy J": 2.0}},
        {"ph": "M", "name": "gpuviz_meta", "pid": 3, "args": {"world_size": 2}},
    ]
    got = _same_events(tmp_path, events)
    assert got[0] == {"ph": "X", "name": 'say "hi"', "cat": "compute", "ts": 0.0, "dur": 12.346,
                      "pid": 3, "tid": 0, "args": {"step": 0}}
    assert got[1] == {"ph": "i", "s": "p", "name": "step_end", "cat": "step", "ts": 0.0, "pid": 3,
                      "tid": 0, "args": {"step": 0, "loss": 0.0, "note": 'say "hi"'}}
    by_name = {e["name"]: e for e in got}
    assert by_name["nan"]["args"] == {"x": None, "y": None, "step": 0}      # JSON has no NaN
    assert by_name["own step"]["args"]["step"] == 9                          # the tracer's step
    assert by_name["huge"]["args"]["n"] == 2**70
    assert by_name["holed"]["args"] == {"energy J": 1.0, "kept": 2}
    assert by_name["energy"] == {"ph": "C", "name": "energy", "ts": 12.346, "pid": 3,
                                 "args": {"energy J": 3.25}}


@compiled
def test_times_are_rounded_to_the_nanosecond_as_round_does(tmp_path):
    rng = random.Random(0)
    times = [rng.uniform(0, 1e9) for _ in range(2000)] + [0.0005, 0.0015, 2.5e-4, 1e15 + 0.0625]
    # near a half of the last decimal, where x * 1000 rounds by hand only when that is safe
    times += [rng.randrange(10**9) / 1000 + 0.0005 for _ in range(2000)]
    times += [-t for t in times[:500]] + [-0.0, -2.5e-4, 1e12 - 0.0005, 5e-324]
    got = _same_events(tmp_path, [("s", "compute", t, t / 7, 0, 0, {}) for t in times])
    assert [e["ts"] for e in got] == [round(t, 3) for t in times]
    assert [e["dur"] for e in got] == [round(t / 7, 3) for t in times]


@pytest.mark.parametrize("route", ["compiled", "python"])
def test_a_failed_write_is_an_os_error(route):
    if route == "compiled" and lines.load() is None:
        pytest.skip(lines.why_not())
    write = lines.writer(0) if route == "compiled" else lines.python_writer(0)
    r, w = os.pipe()
    os.close(r)
    old = signal.signal(signal.SIGPIPE, signal.SIG_IGN)   # as Python sets it: EPIPE, no signal
    try:
        with pytest.raises(OSError):
            write(w, [("s", "compute", 1.0, 1.0, 0, 0, {})])
    finally:
        signal.signal(signal.SIGPIPE, old)
        os.close(w)


@compiled
def test_the_tracer_writes_through_the_compiled_writer_and_says_so(tmp_path):
    t = trace.Tracer(tmp_path, rank=0, world_size=1)
    trace.set_tracer(t)
    try:
        with trace.span("forward"):
            pass
        trace.step(loss=1.5)
        t.meta(trace_writer=lines.route())
        t.close()
    finally:
        trace.set_tracer(None)
    ev = [json.loads(x) for x in t.path.read_text().splitlines()]
    assert [e["name"] for e in ev] == ["process_name", "forward", "step_end", "gpuviz_meta"]
    assert ev[2]["args"] == {"step": 0, "loss": 1.5}
    assert ev[-1]["args"]["trace_writer"] == {"writer": "compiled"}


@compiled
def test_a_job_says_how_each_rank_wrote_its_events(ddp_run):
    assert ddp_run.meta["trace_writer"] == {r: {"writer": "compiled"} for r in range(ddp_run.world_size)}


def test_with_no_compiler_the_python_route_writes_and_the_reason_is_kept(tmp_path):
    code = ("from gpuviz.run import lines; import os, json; w = lines.writer(0);"
            "fd = os.open(os.environ['OUT'], os.O_WRONLY | os.O_CREAT);"
            "w(fd, [('s', 'compute', 1.0, 2.0, 0, 5, {})]); os.close(fd);"
            "print(json.dumps(lines.route()))")
    env = {**os.environ, "CC": "/nonexistent/cc", "GPUVIZ_NATIVE_CACHE": str(tmp_path / "cache"),
           "OUT": str(tmp_path / "out.jsonl")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60, check=True)
    route = json.loads(done.stdout)
    assert route["writer"] == "python" and "could not run" in route["why_python"]
    ev = json.loads((tmp_path / "out.jsonl").read_text())
    assert ev["name"] == "s" and ev["args"] == {"step": 5} and math.isclose(ev["dur"], 2.0)
