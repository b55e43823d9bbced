"""The tracer in one process: event format, flushing, no-op mode, bad categories."""

from __future__ import annotations

import json

import pytest

from gpuviz.run import trace


@pytest.fixture
def tracer(tmp_path):
    t = trace.Tracer(tmp_path, rank=0, world_size=1)
    trace.set_tracer(t)
    yield t
    trace.set_tracer(None)
    if not t.closed:
        t.close()


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_without_a_tracer_everything_is_a_no_op():
    assert trace.get_tracer() is None
    with trace.span("forward"):
        pass
    trace.step()
    trace.counter("power_w", 3.0)


def test_spans_are_chrome_complete_events_written_at_each_step(tracer):
    with trace.span("forward", cat="compute", bytes=12):
        with trace.span("inner", cat="data"):
            pass
    assert len(_lines(tracer.path)) == 1  # only the process name until the step ends
    trace.step(loss=0.5)
    ev = _lines(tracer.path)
    x = [e for e in ev if e["ph"] == "X"]
    assert [e["name"] for e in x] == ["inner", "forward"]
    assert x[1]["args"] == {"step": 0, "bytes": 12} and x[1]["pid"] == 0 and x[1]["tid"] == 0
    assert x[1]["ts"] <= x[0]["ts"] and x[0]["ts"] + x[0]["dur"] <= x[1]["ts"] + x[1]["dur"]
    assert ev[-1]["name"] == "step_end" and ev[-1]["args"] == {"step": 0, "loss": 0.5}


def test_an_event_appended_to_the_list_a_thread_already_holds_is_written(tracer):
    # a comm thread's callback may have looked up the event list just before a step's
    # write; what it appends after that write must go out with the next one
    held = tracer._events
    trace.step()
    held.append({"ph": "i", "s": "p", "name": "late", "ts": 1.0, "pid": 0, "tid": 1, "args": {}})
    trace.step()
    assert "late" in [e["name"] for e in _lines(tracer.path)]


def test_step_values_are_written_as_json_can_hold_them(tracer):
    import numpy as np
    import torch

    with trace.span("forward"):
        pass
    trace.step(loss=float("nan"), grad_norm=np.float32(2.5), tokens=np.int64(7),
               lr=torch.tensor(0.5), model=torch.nn.Linear(1, 1))
    trace.step(per_rank={0: 1.0})
    trace.step(big=2**70, weights=torch.ones(2))
    lines = _lines(tracer.path)
    ends = [e["args"] for e in lines if e["name"] == "step_end"]
    assert ends == [{"step": 0, "loss": None, "grad_norm": 2.5, "tokens": 7, "lr": 0.5,   # NaN: null
                     "model": "Linear(in_features=1, out_features=1, bias=True)"},
                    {"step": 1, "per_rank": {"0": 1.0}},
                    {"step": 2, "big": 2**70, "weights": "tensor([1., 1.])"}]
    assert "forward" in [e["name"] for e in lines]   # the step's events are all written


def test_counter_events(tracer):
    trace.counter("power_w", 42.5)
    trace.step()
    c = [e for e in _lines(tracer.path) if e["ph"] == "C"]
    assert c[0]["name"] == "power_w" and c[0]["args"] == {"power_w": 42.5}


def test_unknown_category_is_a_clear_error():
    with pytest.raises(ValueError, match="cat='gpu'.*compute, comm, optimizer, data, idle, io"):
        trace.span("x", cat="gpu")


def test_open_spans_are_written_when_stopped(tracer):
    with trace.span("stuck", cat="comm"):
        tracer.write_open_spans("terminated")
    ev = _lines(tracer.path)
    cut = [e for e in ev if e["ph"] == "X" and e["args"].get("interrupted")]
    assert cut[0]["name"] == "stuck" and cut[0]["args"]["interrupted"] == "terminated"
    assert ev[-1]["name"] == "stopped" and ev[-1]["args"]["reason"] == "terminated"


def test_error_records_the_traceback(tracer):
    try:
        raise KeyError("boom")
    except KeyError as e:
        tracer.error(e)
    err = [e for e in _lines(tracer.path) if e["name"] == "error"][0]
    assert err["args"]["error"] == "KeyError: 'boom'"
    assert "test_error_records_the_traceback" in err["args"]["traceback"]


def test_init_needs_a_run_dir(monkeypatch):
    monkeypatch.delenv("GPUVIZ_RUN_DIR", raising=False)
    with pytest.raises(ValueError, match="run_dir is not given"):
        trace.init()
