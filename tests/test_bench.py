"""gpuviz.sharing.bench: collective benchmarks (one real job), alpha-beta fits, figures, CLI, bad input."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from gpuviz import cli
from gpuviz.plan.prediction import ring_allreduce_seconds
from gpuviz.plot import bench as pbench
from gpuviz.run.load import Run
from gpuviz.sharing import bench
from gpuviz.workloads import collectives as worker

OPS5 = ["all_reduce", "all_gather", "reduce_scatter", "broadcast", "all_to_all"]


def synthetic(alpha=5e-5, bw=2e9, worlds=(2, 4), ops=OPS5, noise=0.0, seed=0) -> pd.DataFrame:
    """A result table made from t = alpha + S / bw (times x (1 + noise) at random)."""
    rng = np.random.default_rng(seed)
    rows = [{"op": op, "world": w, "bytes": s,
             "times": list((alpha + s / bw) * (1 + noise * rng.uniform(-1, 1, 3)))}
            for w in worlds for op in ops for s in bench.DEFAULT_SIZES]
    return bench.table(rows, backend="gloo")


# -- one real job: every default op, 2 and 4 ranks, a size that needs padding -------------

@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("bench") / "run"
    with pytest.warns(UserWarning, match="padded") as rec:
        df = bench.collectives(sizes=[1000, 4096, 65536], nproc=[2, 4], warmup=1, iters=3,
                               run_dir=run_dir, progress=False)
    df.attrs["warnings"] = [str(w.message) for w in rec]
    return df


@pytest.mark.slow
def test_one_job_gives_every_op_size_and_world(swept):
    for col in ["op", "bytes", "world", "time", "time_min", "time_max", "algbw", "busbw",
                "padded", "note"]:
        assert col in swept.columns
    assert len(swept) == 5 * 3 * 2
    assert set(swept["op"]) == set(OPS5) and set(swept["world"]) == {2, 4}
    assert (swept["time_min"] <= swept["time"]).all() and (swept["time"] <= swept["time_max"]).all()
    assert (swept["time_min"] > 0).all() and (swept["iters"] == 3).all()
    assert swept.attrs["run"].meta["status"] == "ok"


@pytest.mark.slow
def test_busbw_is_algbw_times_the_nccl_tests_factor(swept):
    assert (swept["algbw"] == swept["bytes"] / swept["time"]).all()
    factor = {"all_reduce": lambda n: 2 * (n - 1) / n, "broadcast": lambda n: 1.0}
    expected = [factor.get(op, lambda n: (n - 1) / n)(n) for op, n in zip(swept["op"], swept["world"], strict=True)]
    assert (swept["busbw"] == swept["algbw"] * expected).all()


@pytest.mark.slow
def test_padding_is_applied_and_said(swept):
    p = swept[swept["padded"]]
    # 1000 B = 250 floats splits over 2 ranks, not over 4: only the 4-rank split ops pad.
    assert set(p["op"]) == {"all_gather", "reduce_scatter", "all_to_all"}
    assert set(p["world"]) == {4} and set(p["bytes"]) == {1008} and set(p["requested"]) == {1000}
    assert p["note"].str.contains("padded from 1000 B to 1008 B").all()
    assert "all_gather on 4 ranks 1000 B -> 1008 B" in swept.attrs["warnings"][0]
    rs = swept[swept["op"] == "reduce_scatter"]
    assert rs["note"].str.contains("gloo: an all-reduce").all()


@pytest.mark.slow
def test_every_timed_call_is_a_comm_span_with_s(swept):
    run = swept.attrs["run"]
    assert isinstance(run, Run)
    comm = run.spans[run.spans["cat"] == "comm"]
    comm = comm.assign(world=[a["world"] for a in comm["args"]])
    counts = comm[comm["rank"] == 0].groupby(["name", "bytes", "world"]).size()
    for r in swept.itertuples():
        assert counts[(r.op, r.bytes, r.world)] == 3  # one span per timed iteration, S as bytes
    assert not comm[(comm["rank"] >= 2) & (comm["world"] == 2)].size  # ranks 2, 3 sat out
    idle = run.spans[(run.spans["rank"] == 3) & (run.spans["cat"] == "idle")]
    assert "not in the 2-rank group" in set(idle["name"])
    assert (run.path / worker.RESULT_FILE).exists()


@pytest.mark.slow
def test_the_run_is_shared_not_copied_by_pandas(swept):
    sub = swept[swept["op"] == "all_reduce"]
    assert sub.attrs["run"] is swept.attrs["run"]


@pytest.mark.slow
def test_cli_prints_an_nccl_tests_table_and_saves_csv(tmp_path, capsys):
    out = tmp_path / "b.csv"
    rc = cli.main(["bench", "collectives", "--ops", "all_reduce", "--sizes", "4K,64K", "--nproc",
                   "2", "--iters", "2", "--warmup", "1", "--csv", str(out), "--run-dir",
                   str(tmp_path / "run"), "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0
    for col in ["size(B)", "count", "type", "op", "world", "time(us)", "algbw(GB/s)", "busbw(GB/s)"]:
        assert col in text.splitlines()[0]
    assert "Avg bus bandwidth" in text
    df = pd.read_csv(out)
    assert list(df["bytes"]) == [4096, 65536] and list(df["count"]) == [1024, 16384]


# -- S as nccl-tests defines it: the buffers each op gets ----------------------------------

@pytest.mark.parametrize("op, numels", [("all_reduce", {1024}), ("broadcast", {1024}),
                                        ("all_gather", {256, 1024}),
                                        ("reduce_scatter", {1024, 256}), ("all_to_all", {1024})])
def test_buffers_follow_nccl_tests_s(monkeypatch, op, numels):
    monkeypatch.setattr(worker.dist, "get_world_size", lambda group=None: 4)
    fn = worker.make_op(op, 4096, torch.float32)
    tensors = [c.cell_contents for c in fn.__closure__ if isinstance(c.cell_contents, torch.Tensor)]
    assert {t.numel() for t in tensors} == numels


# -- statistics, fit and model (no job) -------------------------------------------------------

def test_table_median_min_max_and_factors():
    df = bench.table([{"op": "all_gather", "world": 4, "bytes": 4000, "times": [3e-3, 1e-3, 2e-3]}])
    r = df.iloc[0]
    assert (r.time, r.time_min, r.time_max) == (2e-3, 1e-3, 3e-3)
    assert r.algbw == 4000 / 2e-3 and r.busbw == r.algbw * 0.75 and r["count"] == 1000
    assert [bench.bus_factor(o, 8) for o in OPS5] == [1.75, 0.875, 0.875, 1.0, 0.875]


def test_fit_recovers_alpha_and_beta():
    exact = bench.fit_alpha_beta(synthetic(alpha=5e-5, bw=2e9))
    assert len(exact) == 10
    assert np.allclose(exact["alpha"], 5e-5, rtol=1e-6)
    assert np.allclose(exact["bandwidth"], 2e9, rtol=1e-6)
    assert (exact["err_max"] < 1e-9).all()
    noisy = bench.fit_alpha_beta(synthetic(alpha=3e-4, bw=5e8, noise=0.05))
    assert np.allclose(noisy["alpha"], 3e-4, rtol=0.1) and np.allclose(noisy["beta"], 2e-9, rtol=0.1)
    assert (noisy["err_median"] < 0.05).all() and (noisy["err_max"] >= noisy["err_median"]).all()


def test_fit_keeps_alpha_and_beta_non_negative():
    flat = pd.DataFrame({"op": "broadcast", "world": 2, "bytes": [1e3, 1e6], "time": [2e-3, 1e-3]})
    f = bench.fit_alpha_beta(flat).iloc[0]
    assert f.beta == 0.0 and f.alpha > 0 and f.bandwidth == np.inf
    with pytest.raises(ValueError, match="at least two"):
        bench.fit_alpha_beta(flat.iloc[:1])
    with pytest.raises(ValueError, match="lacks column"):
        bench.fit_alpha_beta(flat.drop(columns="time"))


def test_ring_formulas():
    for p in (2, 4, 8):
        assert bench.ring_seconds("all_reduce", 1e8, p, 1e-5, 1e-9) == pytest.approx(
            ring_allreduce_seconds(1e8, p, 1e9, 1e-5))
        # ring all-reduce = reduce-scatter, then all-gather
        assert bench.ring_seconds("all_reduce", 1e8, p, 1e-5, 1e-9) == pytest.approx(
            bench.ring_seconds("reduce_scatter", 1e8, p, 1e-5, 1e-9)
            + bench.ring_seconds("all_gather", 1e8, p, 1e-5, 1e-9))
    # per-step alpha and link beta back from an all-reduce made by the ring formula
    s = np.array(bench.DEFAULT_SIZES, dtype=float)
    d = pd.DataFrame({"op": "all_reduce", "world": 4, "bytes": s,
                      "time": bench.ring_seconds("all_reduce", s, 4, 2e-5, 1e-9)})
    assert np.allclose(bench.link_alpha_beta(bench.fit_alpha_beta(d)), (2e-5, 1e-9))


def test_sizes_parse_and_sweep():
    assert bench.parse_size("16M") == 16 * 2**20 and bench.parse_size("2 KiB") == 2048
    assert bench.size_range("1K", "16M") == list(bench.DEFAULT_SIZES)
    assert "busbw(GB/s)" in bench.format_table(synthetic(worlds=(4,), ops=["all_reduce"]))


# -- bad input: clear errors before any launch ----------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    ({"ops": ["allreduce"]}, r"unknown op 'allreduce'; known ops: all_reduce, all_gather"),
    ({"sizes": [1024, 0]}, r"sizes=.*each > 0"),
    ({"sizes": [-4]}, r"sizes=.*each > 0"),
    ({"sizes": ["lots"]}, r"size 'lots'"),
    ({"nproc": 1}, r"nproc=1: give a rank count >= 2"),
    ({"nproc": [2, "4"]}, r"nproc="),
    ({"iters": 0}, r"iters=0"),
    ({"dtype": "float128"}, r"dtype='float128': use one of float32"),
    ({"sizes": [2**50]}, r"sizes: all_reduce of .* needs about .* GiB .* left"),
    ({"dtype": "float8_e4m3fn", "backend": "gloo"}, r"backend 'gloo' has no float8 type"),
])
def test_bad_input_is_refused_before_launching(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        bench.collectives(**{"ops": ["all_reduce"], **kwargs}, run_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_an_op_the_backend_refuses_is_a_value_error(tmp_path, monkeypatch):
    """What the workers found unsupported (by trying) comes back as a ValueError."""
    def fake_launch(target, nproc, backend, args, run_dir, **kw):
        run_dir.mkdir(parents=True)
        (run_dir / worker.UNSUPPORTED_FILE).write_text(json.dumps({"all_to_all": "no alltoall"}))
        return Run(path=run_dir, spans=None, counters=None, events=None, meta={})

    monkeypatch.setattr(sys.modules["gpuviz.run.launch"], "launch", fake_launch)
    with pytest.raises(ValueError, match="backend 'gloo' cannot run all_to_all on float32"):
        bench.collectives(["all_to_all"], sizes=[4096], backend="gloo", run_dir=tmp_path / "r")


# -- figures --------------------------------------------------------------------------------

def test_collectives_figure():
    df = synthetic()
    fig = pbench.collectives(df)
    assert isinstance(fig, go.Figure) and "Bus bandwidth" in fig.layout.title.text
    assert len(fig.data) == 10 and fig.layout.xaxis.type == "log"
    assert "GB/s" in fig.layout.yaxis.title.text and "busbw" in fig.data[0].hovertemplate
    assert all(t.line.dash is None for t in fig.data)  # measured: solid
    assert len(pbench.collectives(df, y="time").data) == 10
    with pytest.raises(ValueError, match="y='speed'"):
        pbench.collectives(df, y="speed")


def test_alpha_beta_figure():
    df = synthetic()
    fig = pbench.alpha_beta(df, bench.fit_alpha_beta(df))
    dashes = {t.name.split(",")[0]: t.line.dash for t in fig.data}
    assert dashes == {"measured": None, "α-β fit": "dash", "ring model": "dot"}
    assert len(fig.data) == 5 * 2 * 3 and fig.layout.title.text
    no_model = pbench.alpha_beta(df, bench.fit_alpha_beta(df), ring_from=None)
    assert len(no_model.data) == 5 * 2 * 2
