"""Loading runs: the spans table, the summary, Perfetto export, damaged trace files."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest

import gpuviz
from gpuviz.run.categories import CATEGORIES
from gpuviz.run.load import SPAN_COLUMNS, _build


def test_spans_table_has_the_documented_columns(mlp_run):
    sp = mlp_run.spans
    assert list(sp.columns[: len(SPAN_COLUMNS)]) == SPAN_COLUMNS
    assert (sp["end"] >= sp["start"]).all() and (sp["dur"] >= 0).all()
    assert set(sp["cat"]) <= set(CATEGORIES)
    assert (sp["start"] >= 0).all()  # times count from the aligned start


def test_meta_names_world_backend_devices_versions_command(mlp_run):
    m = mlp_run.meta
    assert m["world_size"] == 4 and m["backend"] == "gloo"
    assert len(m["devices"]) == 4
    assert m["versions"]["torch"].startswith("2.")
    assert "gpuviz.run.torchrun" in m["command"]  # torchrun, its stores on loopback
    assert m["start_time"] > 1.7e9 and m["total_steps"] == 6


def test_summary_accounts_for_all_wall_time(mlp_run):
    s = mlp_run.summary()
    assert list(s.index) == [0, 1, 2, 3]
    for rank, row in s.iterrows():
        parts = sum(row[c] for c in CATEGORIES) + row["untraced"]
        assert parts == pytest.approx(row["wall"], rel=1e-6), rank
        assert row["compute"] > 0 and row["comm"] > 0 and row["idle"] > 0
    assert (s["overlap"] == 0).all()  # one all-reduce after backward hides nothing


def test_summary_counts_nested_spans_once():
    ev = [{"ph": "X", "name": "step", "cat": "compute", "ts": 0, "dur": 100, "pid": 0, "tid": 0, "args": {"step": 0}},
          {"ph": "X", "name": "wait", "cat": "idle", "ts": 10, "dur": 30, "pid": 0, "tid": 0, "args": {"step": 0}},
          {"ph": "X", "name": "send", "cat": "comm", "ts": 50, "dur": 20, "pid": 0, "tid": 0, "args": {"step": 0}},
          {"ph": "X", "name": "bucket", "cat": "comm", "ts": 80, "dur": 40, "pid": 0, "tid": 1, "args": {"step": 0}}]
    s = _build(__import__("pathlib").Path("."), {0: ev}, []).summary().loc[0]
    assert s["compute"] == pytest.approx(50e-6)  # 100 minus the 30 and 20 inside it
    assert s["idle"] == pytest.approx(30e-6)
    assert s["comm"] == pytest.approx(20e-6) and s["comm_lane"] == pytest.approx(40e-6)
    assert s["overlap"] == pytest.approx(20 / 40)  # bucket 80-120 overlaps compute 80-100


def test_perfetto_export_is_one_chrome_trace(mlp_run, tmp_path):
    out = mlp_run.to_perfetto(tmp_path / "trace.json")
    data = json.loads(out.read_text())
    events = data["traceEvents"]
    assert {e["pid"] for e in events} == {0, 1, 2, 3}
    assert sum(e["ph"] == "X" for e in events) == len(mlp_run.spans)
    names = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    assert names == {"rank 0", "rank 1", "rank 2", "rank 3"}
    assert all(isinstance(e["ts"], (int, float)) for e in events if e["ph"] == "X")


@pytest.fixture
def damaged(mlp_run, tmp_path):
    d = tmp_path / "damaged"
    shutil.copytree(mlp_run.path, d)
    r1 = (d / "rank1.jsonl").read_bytes()
    (d / "rank1.jsonl").write_bytes(r1[: len(r1) - 25])  # cut off mid-line, as a kill would
    lines = (d / "rank2.jsonl").read_text().splitlines(keepends=True)
    lines[5] = '{"ph": "X", "name": garbage\n'
    (d / "rank2.jsonl").write_text("".join(lines))
    (d / "rank3.jsonl").write_text("not json at all\n")
    return d


def test_damaged_trace_loads_what_is_valid_and_says_what_was_dropped(damaged, mlp_run):
    with pytest.warns(gpuviz.TraceWarning) as w:
        run = gpuviz.load_run(damaged)
    text = str(w[0].message)
    assert "rank1.jsonl line" in text and "truncated last line" in text
    assert "rank2.jsonl line 6: unreadable line" in text
    assert "rank3.jsonl: no readable events; rank 3 left out" in text
    assert run.ranks == [0, 1, 2]
    assert len(run.spans[run.spans["rank"] == 0]) == len(mlp_run.spans[mlp_run.spans["rank"] == 0])
    assert len(run.problems) == 4


def test_strict_loading_raises(damaged):
    with pytest.raises(gpuviz.TraceError, match="rank1.jsonl line"):
        gpuviz.load_run(damaged, strict=True)


def test_not_a_run_directory(tmp_path):
    with pytest.raises(gpuviz.TraceError, match="holds no rank"):
        gpuviz.load_run(tmp_path)
    with pytest.raises(gpuviz.TraceError, match="not a run directory"):
        gpuviz.load_run(tmp_path / "nope")
    (tmp_path / "rank0.jsonl").write_text("{{{\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(gpuviz.TraceError, match="no rank file holds a readable event"):
            gpuviz.load_run(tmp_path)


def test_attempts_of_a_restarted_job_share_one_time_axis(tmp_path, monkeypatch):
    """Each elastic attempt appends to the rank file with its own clock; loading shifts each
    by its wall-clock start. A kill mid-line in attempt 0 costs that line only."""
    from gpuviz.run import trace

    for attempt, start in [(0, 1000.0), (1, 1010.0)]:
        monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", str(attempt))
        t = trace.Tracer(tmp_path, rank=0, world_size=1)
        t.meta(start_time=start, pid=100 + attempt)
        t.complete("forward", "compute", ts=1e6, dur=5e5)  # 1 s after the attempt's time 0
        t.step()
        t.close()
        if attempt == 0:
            with open(tmp_path / "rank0.jsonl", "a") as f:
                f.write('{"ph": "X", "name": "cut')  # killed mid-write
    with pytest.warns(gpuviz.TraceWarning, match="rank0.jsonl line .*: unreadable line"):
        run = gpuviz.load_run(tmp_path)
    assert list(run.spans["attempt"]) == [0, 1]
    assert list(run.spans["start"]) == pytest.approx([1.0, 11.0])
    assert list(run.events.loc[run.events["name"] == "step_end", "attempt"]) == [0, 1]
    assert run.meta["restarts"] == 1 and run.meta["start_time"] == 1000.0
    assert [(a["attempt"], a["offset_s"], a["pids"]) for a in run.meta["attempts"]] == [
        (0, 0.0, {0: 100}), (1, 10.0, {0: 101})]
    assert run.steps() == 1  # step 0, done twice
