"""DDP bucketing: the sweep workload, its analysis, the alpha-beta prediction, figure and check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gpuviz
from gpuviz import checks
from gpuviz.plot.bucketing import bucket_sweep as sweep_figure
from gpuviz.run.load import _build
from gpuviz.sharing import bucketing
from gpuviz.workloads.bucketing import check_bucket_mb, gradient_bytes

SIZES = [0.3, 3, 100]
GRAD = sum(gradient_bytes())


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory) -> gpuviz.Run:
    """A real 4-rank sweep over three bucket sizes: 1 warm-up + 2 measured steps each."""
    return bucketing.measure_sweep(SIZES, steps=2, warmup=1, batch=32, progress=False,
                                   run_dir=tmp_path_factory.mktemp("bucketing") / "run")


# -- the real sweep -------------------------------------------------------------------------

@pytest.mark.slow
def test_every_step_reduces_all_gradient_bytes_in_buckets(sweep_run):
    st = bucketing.bucket_steps(sweep_run)
    assert set(st["rank"]) == {0, 1, 2, 3}
    assert sorted(st["bucket_mb"].unique()) == SIZES
    assert (st["grad_bytes"] == GRAD).all()            # every gradient byte, once per step
    assert GRAD == 4 * (152 * (256 * 256 + 256) + 257)  # fp32, the 10 M-parameter MLP
    measured = st[~st["warmup"]]
    assert len(measured) == 4 * 2 * len(SIZES)
    # DDP's first iteration reduces everything in one bucket, then rebuilds the buckets
    assert (st.loc[st["warmup"], "n_buckets"] == 1).all()


@pytest.mark.slow
def test_sweep_table_fewer_buckets_as_they_grow(sweep_run):
    m = bucketing.bucket_sweep(sweep_run)
    assert m["bucket_mb"].tolist() == SIZES and (m["kind"] == "measured").all()
    assert m["n_buckets"].is_monotonic_decreasing and m["n_buckets"].iloc[-1] == 1
    # an explicit bucket_cap_mb caps the first bucket too: DDP packs exactly as predicted
    p = bucketing.predict_bucket_sweep(SIZES, GRAD, 1e-3, 1e-9, 0.1, tensor_bytes=gradient_bytes())
    assert m["n_buckets"].tolist() == p["n_buckets"].tolist()
    assert (m["exposed_ms"] >= 0).all() and m["overlap"].between(0, 1).all()
    assert (m["steps"] == 2).all()
    assert bucketing.sweep_steps(sweep_run, 3) == [4, 5]
    assert bucketing.sweep_steps(sweep_run, 3, include_warmup=True) == [3, 4, 5]
    with pytest.raises(ValueError, match="bucket_mb=7"):
        bucketing.sweep_steps(sweep_run, 7)


@pytest.mark.slow
def test_fit_compare_and_figures_from_the_run(sweep_run):
    m = bucketing.bucket_sweep(sweep_run)
    fit = bucketing.fit_from_buckets(sweep_run)
    assert {"alpha", "beta", "error", "n"} <= set(fit.index) and np.isfinite(fit.to_numpy()).all()
    p = bucketing.predict_bucket_sweep(m["bucket_mb"], GRAD, max(fit["alpha"], 0), max(fit["beta"], 0),
                                       m["backward_ms"].iloc[-1] / 1e3, tensor_bytes=gradient_bytes())
    c = bucketing.compare_sweep(m, p)
    assert c["exposed_ms ratio"].tolist() == pytest.approx((c["exposed_ms"] / c["exposed_ms_predicted"]).tolist())
    fig = sweep_figure(m, p)
    assert fig.layout.xaxis.type == "log" and "MiB" in fig.layout.xaxis.title.text
    assert any("alpha-beta model (estimate)" in t.name and t.line.dash == "dash" for t in fig.data)
    assert "buckets" in fig.data[0].hovertext[0]
    tl = gpuviz.plot.timeline(sweep_run, steps=bucketing.sweep_steps(sweep_run, 3)[:1])
    assert {"compute", "comm", "optimizer"} <= {t.name for t in tl.data}
    # the replay at the measured launch times: same sizes, and the measured column is bucket_sweep's
    r = bucketing.replay_sweep(sweep_run, max(fit["alpha"], 0), max(fit["beta"], 0))
    assert r["bucket_mb"].tolist() == SIZES
    assert r["exposed_ms"].tolist() == pytest.approx(m["exposed_ms"].tolist())
    assert (r["replayed_ms"] >= 0).all() and (r["slowdown"] > 0).all()
    # free all-reduces: only the last launch after the last gradient is exposed, less than with
    # costly ones and than measured; the measured all-reduces took far longer than free ones
    free = bucketing.replay_sweep(sweep_run, 0.0, 1e-15)
    assert (free["replayed_ms"] <= r["replayed_ms"] + 1e-9).all()
    assert (free["replayed_ms"] < free["exposed_ms"]).all() and (free["slowdown"] > 1).all()


# -- analysis on a constructed run ----------------------------------------------------------

def _ev(name, cat, ts, dur, lane=0, step=1, **args):
    return {"ph": "X", "name": name, "cat": cat, "ts": ts * 1e3, "dur": dur * 1e3, "pid": 0,
            "tid": lane, "args": {"step": step, **args}}


def _tiny_run():
    """One rank, one measured step (ms): backward 0-100, last gradient at 80, buckets 10-50, 60-95."""
    ev = [_ev("forward", "compute", -20, 20), _ev("backward", "compute", 0, 100),
          _ev("wait for gradient buckets", "comm", 80, 20),
          _ev("all_reduce bucket 0", "comm", 10, 40, lane=1, bytes=300, bucket=0),
          _ev("all_reduce bucket 1", "comm", 60, 35, lane=1, bytes=700, bucket=1),
          _ev("optimizer step", "optimizer", 100, 10)]
    ends = [{"ph": "i", "name": "step_end", "ts": t, "pid": 0, "args": {"step": s, "bucket_mb": 1.0,
                                                                         "warmup": s == 0}}
            for s, t in ((0, -30e3), (1, 111e3))]
    return _build(Path("tiny"), {0: ev + ends}, [])


def test_bucket_sweep_reads_exposed_comm_and_overlap():
    r = bucketing.bucket_sweep(_tiny_run()).iloc[0]
    assert r["n_buckets"] == 2 and r["grad_bytes"] == 1000
    assert r["exposed_ms"] == pytest.approx(20) and r["backward_ms"] == pytest.approx(80)
    assert r["step_ms"] == pytest.approx(130) and r["other_ms"] == pytest.approx(30)
    assert r["comm_ms"] == pytest.approx(75) and r["overlap"] == pytest.approx(60 / 75)


def test_bucket_sweep_rejects_a_run_without_bucket_tags():
    run = _build(Path("plain"), {0: [_ev("backward", "compute", 0, 1),
                                     {"ph": "i", "name": "step_end", "ts": 2e3, "pid": 0, "args": {"step": 1}}]}, [])
    with pytest.raises(ValueError, match="bucket_mb"):
        bucketing.bucket_sweep(run)


# -- the alpha-beta prediction --------------------------------------------------------------

SWEEP = [0.1, 0.3, 1, 3, 10, 30, 100]


def test_latency_term_and_bucket_count_fall_as_buckets_grow():
    p = bucketing.predict_bucket_sweep(SWEEP, 40e6, alpha=1e-3, beta=2e-9, backward_s=0.1)
    assert p["n_buckets"].is_monotonic_decreasing and p["latency_ms"].is_monotonic_decreasing
    assert p["latency_ms"].tolist() == pytest.approx((p["n_buckets"] * 1.0).tolist())
    assert (p["kind"] == "alpha-beta model (estimate)").all()
    one = p.iloc[-1]                                    # one bucket: nothing overlaps
    assert one["n_buckets"] == 1 and one["exposed_ms"] == pytest.approx(1 + 2e-9 * 40e6 * 1e3)
    assert one["overlap"] == pytest.approx(0, abs=1e-12)


def test_without_latency_small_buckets_overlap_most():
    sizes = [0.125, 0.25, 1, 4, 16, 64]                 # MiB, dividing 64 MiB of gradients
    p = bucketing.predict_bucket_sweep(sizes, 64 * 2**20, alpha=0.0, beta=2e-9, backward_s=0.2)
    assert p["overlap"].idxmax() == 0 and p["exposed_ms"].idxmin() == 0
    assert (np.diff(p["exposed_ms"]) > 0).all() and (np.diff(p["overlap"]) < 0).all()
    # comm (134 ms) is faster than backward (200 ms): only the last bucket is exposed
    assert p["exposed_ms"].tolist() == pytest.approx([2e-9 * s * 2**20 * 1e3 for s in sizes])


def test_without_bandwidth_cost_fewer_buckets_are_better():
    p = bucketing.predict_bucket_sweep(SWEEP, 40e6, alpha=2e-3, beta=0.0, backward_s=0.1)
    assert (np.diff(p["exposed_ms"]) <= 1e-9).all()
    assert p["exposed_ms"].iloc[-1] == pytest.approx(2.0)   # one bucket: one alpha


def test_whole_tensors_are_packed_as_ddp_does():
    mib = 2**20
    # a bucket closes once it holds >= the cap: [0.5], [1], [0.5], [3] | [0.5 1], [0.5 3] | all
    p = bucketing.predict_bucket_sweep([0.5, 1, 5], 1, 0, 0, 0.1, tensor_bytes=[mib / 2, mib, mib / 2, 3 * mib])
    assert p["n_buckets"].tolist() == [4, 2, 1] and (p["grad_bytes"] == 5 * mib).all()
    assert gradient_bytes(width=2, layers=1)[:2] == [4, 8]   # last layer's bias first


def test_backward_time_per_bucket_size():
    one = bucketing.predict_bucket_sweep([1, 100], 40e6, 1e-3, 2e-9, backward_s=0.1)
    each = bucketing.predict_bucket_sweep([1, 100], 40e6, 1e-3, 2e-9, backward_s=[0.1, 0.3])
    assert each["exposed_ms"].iloc[0] == pytest.approx(one["exposed_ms"].iloc[0])
    assert each["backward_ms"].tolist() == pytest.approx([100, 300])
    with pytest.raises(ValueError, match="backward_s"):
        bucketing.predict_bucket_sweep([1, 100], 40e6, 1e-3, 2e-9, backward_s=[0.1, 0.2, 0.3])


@pytest.mark.parametrize("bad", [[], [0], [-1, 10], [float("nan")], ["x"], None])
def test_bad_bucket_sizes_are_refused_naming_the_argument(bad):
    with pytest.raises(ValueError, match="bucket_mb"):
        check_bucket_mb(bad)
    with pytest.raises(ValueError, match="bucket_mb"):
        bucketing.predict_bucket_sweep(bad, 40e6, 1e-3, 1e-9, 0.1)
    with pytest.raises(ValueError, match="bucket_mb"):
        bucketing.measure_sweep(bad)                    # refused before anything is launched


@pytest.mark.parametrize("kw, name", [({"grad_bytes": 0}, "grad_bytes"), ({"alpha": -1}, "alpha"),
                                      ({"beta": "fast"}, "beta"), ({"backward_s": -0.1}, "backward_s")])
def test_bad_model_numbers_are_refused(kw, name):
    args = {"bucket_mb": [1], "grad_bytes": 40e6, "alpha": 1e-3, "beta": 1e-9, "backward_s": 0.1, **kw}
    with pytest.raises(ValueError, match=name):
        bucketing.predict_bucket_sweep(**args)


def test_figure_refuses_unknown_columns():
    m = pd.DataFrame({"bucket_mb": [1.0], "n_buckets": [1], "exposed_ms": [1.0], "step_ms": [2.0]})
    with pytest.raises(ValueError, match="y="):
        sweep_figure(m, y="latency")
    with pytest.raises(ValueError, match="missing columns"):
        sweep_figure(m.drop(columns="step_ms"))


# -- the exercise ---------------------------------------------------------------------------

MEASURED = pd.DataFrame({"bucket_mb": [0.1, 1, 3, 10, 100], "n_buckets": [152, 38, 13, 4, 1],
                         "exposed_ms": [700.0, 175.0, 50.0, 45.0, 120.0],
                         "overlap": [0.2, 0.4, 0.6, 0.7, 0.0]})


def test_check_best_bucket_size_right_answers():
    assert checks.best_bucket_size(10, MEASURED)
    assert checks.best_bucket_size(3, MEASURED)                # within 25% of the best
    assert "nearest" in checks.best_bucket_size(8, MEASURED).message
    assert checks.best_bucket_size(lambda s: float(s.loc[s["exposed_ms"].idxmin(), "bucket_mb"]), MEASURED)


def test_the_labs_solution_passes_the_check():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "labs" / "solutions" / "02_sharing.py"
    spec = importlib.util.spec_from_file_location("solutions02", path)
    solutions = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(solutions)
    assert checks.best_bucket_size(solutions.best_bucket_mb, MEASURED)
    assert solutions.best_bucket_mb(MEASURED) == 10


def test_check_best_bucket_size_says_why_not():
    small, big = checks.best_bucket_size(0.1, MEASURED), checks.best_bucket_size(100, MEASURED)
    assert not small and "Too small" in small.message and "alpha" in small.message
    assert not big and "Too large" in big.message and "overlap" in big.message
    assert not checks.best_bucket_size(3, MEASURED, tolerance=0.05)


@pytest.mark.parametrize("answer, words", [(None, "Replace `None`"), ("ten", "should be a number"),
                                           (-3, "positive number")])
def test_check_best_bucket_size_odd_answers(answer, words):
    r = checks.best_bucket_size(answer, MEASURED)
    assert not r and words in r.message


def test_check_best_bucket_size_needs_a_sweep_table():
    with pytest.raises(ValueError, match="sweep"):
        checks.best_bucket_size(10, MEASURED.drop(columns="exposed_ms"))
    with pytest.raises(ValueError, match="tolerance"):
        checks.best_bucket_size(10, MEASURED, tolerance=-1)
