"""trace.span: the compiled span and the Python one record the same events, whatever happens."""

from __future__ import annotations

import json
import threading

import pytest

from gpuviz.run import lines
from gpuviz.run import tracer as tracer_module
from gpuviz.run.tracer import Tracer, set_tracer

ROUTES = ["python", "compiled"]


def _span(route):
    if route == "python":
        return tracer_module.python_span
    if lines.load() is None:
        pytest.skip(lines.why_not())
    return lines.load().Span


def _recorded(tmp_path, route, body, cuda=False):
    """The events ``body(span, tracer)`` records, written and read back, times left out."""
    t = (_FakeCudaTracer if cuda else Tracer)(tmp_path / route, rank=1, world_size=2)
    set_tracer(t)
    try:
        body(_span(route), t)
        t.step()
        t.close()
    finally:
        set_tracer(None)
    out = []
    for line in t.path.read_text().splitlines():
        e = json.loads(line)
        if e["ph"] in ("X", "i") and e["name"] != "step_end":
            assert e.pop("ts") >= 0 and e.pop("dur", 0) >= 0
            e["args"].pop("traceback", None)   # names the route's own frames
            out.append(e)
    return out


def _both(tmp_path, body, cuda=False):
    got = {r: _recorded(tmp_path, r, body, cuda) for r in ROUTES}
    assert got["python"] == got["compiled"]
    return got["compiled"]


def test_nested_spans_their_args_and_categories(tmp_path):
    def body(span, t):
        with span("outer", "data", size=3):
            with span("inner", cat="comm", bytes=2**40, ok=True, note="é"):
                pass
            with span(name="named"):
                pass
        s = span("reused", cat="optimizer")
        for _ in range(2):
            with s:
                pass
        with span("no tracer here") as inside:   # entered with none: nothing at its end
            set_tracer(None)
        set_tracer(t)
        assert inside.name == "no tracer here" and inside.cat == "compute" and inside.args == {}

    ev = _both(tmp_path, body)
    assert [(e["name"], e["cat"], e["tid"]) for e in ev] == [
        ("inner", "comm", 0), ("named", "compute", 0), ("outer", "data", 0),
        ("reused", "optimizer", 0), ("reused", "optimizer", 0)]
    assert ev[0]["args"] == {"bytes": 2**40, "ok": True, "note": "é", "step": 0}
    assert ev[2]["args"] == {"size": 3, "step": 0}


def test_a_span_in_another_thread_is_on_the_comm_lane(tmp_path):
    def body(span, t):
        def work():
            with span("bucket", cat="comm", bucket=0):
                pass
        th = threading.Thread(target=work)
        th.start()
        th.join()

    ev = _both(tmp_path, body)
    assert [(e["name"], e["tid"]) for e in ev] == [("bucket", 1)]


def test_an_exception_keeps_the_spans_it_left_for_the_error_event(tmp_path):
    def body(span, t):
        try:
            with span("outer"), span("inner", cat="comm"):
                assert [s["name"] for s in t.open_spans()] == ["outer", "inner"]
                raise KeyError("boom")
        except KeyError as e:
            assert t.open_spans() == []
            t.error(e)

    ev = _both(tmp_path, body)
    err = [e for e in ev if e["name"] == "error"][0]
    assert [s["name"] for s in err["args"]["open_spans"]] == ["outer", "inner"]
    assert err["args"]["error"] == "KeyError: 'boom'"


@pytest.mark.parametrize("route", ROUTES)
def test_bad_calls_are_clear_errors(route):
    span = _span(route)
    with pytest.raises(ValueError, match="cat='gpu' is not a span category; use one of compute"):
        span("x", cat="gpu")
    with pytest.raises(TypeError, match="multiple values for argument 'cat'"):
        span("x", "comm", cat="comm")
    with pytest.raises(TypeError):
        span()


class _FakeEvent:
    """A CUDA event's timing, on the host clock (no GPU here)."""

    def __init__(self, t):
        self.us = t.now()

    def record(self):
        pass

    def synchronize(self):
        pass

    def elapsed_time(self, other):   # ms, as torch.cuda.Event's
        return (other.us - self.us) / 1000.0


class _FakeCudaTracer(Tracer):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.cuda = True
        self._cuda_ref = _FakeEvent(self)

    def cuda_event(self):
        return _FakeEvent(self)


def test_a_cuda_tracer_times_spans_by_their_events(tmp_path):
    def body(span, t):
        with span("forward", layer=2):
            pass
        assert t._pending_cuda and t._pending_cuda[0][2]["name"] == "forward"

    ev = _both(tmp_path, body, cuda=True)
    assert [(e["name"], e["args"]) for e in ev] == [("forward", {"step": 0, "layer": 2})]


def test_the_tracer_uses_the_compiled_span_where_it_builds():
    if lines.load() is None:
        assert tracer_module.span is tracer_module.python_span
    else:
        from gpuviz.run import trace

        assert trace.span is tracer_module.span is lines.load().Span


@pytest.mark.parametrize("route", ROUTES)
def test_a_span_is_timed_on_the_tracers_clock(tmp_path, route):
    span = _span(route)
    t = Tracer(tmp_path, rank=0, world_size=1)
    set_tracer(t)
    try:
        before = t.now()
        with span("timed"):
            inside = t.now()
        after = t.now()
        (name, cat, ts, dur, lane, step, args), = [e for e in t._events if type(e) is tuple]
    finally:
        set_tracer(None)
        t.close()
    assert (name, cat, lane, step, args) == ("timed", "compute", 0, 0, {})
    assert before <= ts <= inside <= ts + dur <= after


@pytest.mark.parametrize("route", ROUTES)
def test_each_span_has_args_of_its_own(route):
    span = _span(route)
    a, b = span("a"), span("b")
    a.args["note"] = 1
    assert b.args == {} and span("c").args == {}
