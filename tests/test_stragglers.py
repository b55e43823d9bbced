"""Stragglers: order statistics (exact, integrated, Monte Carlo), the wait analysis of a
run, the measured wait against the number of ranks, and their figures."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

import gpuviz
from gpuviz.plot import sync as P
from gpuviz.sync import inject
from gpuviz.sync import order_stats as O
from gpuviz.sync import stragglers as S

EXP = {"dist": "exponential", "mean_s": 0.02}
UNI = {"dist": "uniform", "low_s": 0.005, "high_s": 0.03}
NORMAL = {"dist": "normal", "mean_s": 0.01, "std_s": 0.01}       # 16% of draws sleep 0
LOGNORMAL = {"dist": "lognormal", "mean_s": 0.02, "sigma": 0.8}
NS = (1, 2, 3, 8, 100)


# -- order statistics ---------------------------------------------------------------------------

@pytest.mark.parametrize("spec", [EXP, UNI], ids=["exponential", "uniform"])
@pytest.mark.parametrize("n", NS)
def test_integral_equals_the_exact_formula(spec, n):
    assert O.expected_max(spec, n, numeric=True) == pytest.approx(O.expected_max(spec, n), rel=1e-6)


def test_exact_formulas():
    assert O.expected_max(EXP, 4) == pytest.approx(0.02 * (1 + 1 / 2 + 1 / 3 + 1 / 4))
    assert O.expected_wait(EXP, 2) == pytest.approx(0.01)              # mean x (H_2 - 1)
    assert O.expected_max(UNI, 3) == pytest.approx(0.005 + 0.025 * 3 / 4)
    assert O.expected_wait(UNI, 1) == 0.0
    # the exponential's wait grows like log N without bound; the uniform's stops at the range
    assert O.expected_wait(EXP, 1024) > 6 * O.expected_wait(EXP, 2)
    assert O.expected_wait(UNI, 1024) < (0.03 - 0.005) / 2


@pytest.mark.parametrize("spec", [EXP, UNI, NORMAL, LOGNORMAL],
                         ids=["exponential", "uniform", "normal", "lognormal"])
@pytest.mark.parametrize("n", (1, 2, 8, 64))
def test_integral_agrees_with_monte_carlo(spec, n):
    trials = 100_000
    draws = O.monte_carlo_max(spec, n, trials=trials, seed=n)
    # 4 standard errors of the Monte Carlo mean (the max's spread is below its mean x 1.5 here)
    tol = 4 * 1.5 * O.expected_max(spec, n) / math.sqrt(trials)
    assert abs(O.expected_max(spec, n) - draws) < tol


@pytest.mark.parametrize("spec", [NORMAL, LOGNORMAL], ids=["normal", "lognormal"])
def test_integral_with_one_rank_is_the_closed_form_mean(spec):
    # n = 1: the integral is E[X]; inject.mean_delay has it in closed form
    assert O.expected_max(spec, 1) == pytest.approx(inject.mean_delay({"kind": "jitter", **spec}),
                                                    rel=1e-6)
    assert abs(O.expected_wait(spec, 1)) < 1e-9


def test_monte_carlo_draws_like_the_injection():
    """The check's draws have the distribution a run's ranks sleep (inject.Sampler)."""
    for spec in (NORMAL, LOGNORMAL):
        run_like = np.array(inject.sample_delays({"kind": "jitter", **spec}, rank=0, steps=20_000))
        assert run_like.mean() == pytest.approx(O.monte_carlo_max(spec, 1, trials=20_000), rel=0.05)


def test_degenerate_delays():
    assert O.expected_wait({"dist": "normal", "mean_s": 0.01, "std_s": 0.0}, 8) == 0.0
    assert O.expected_max({"dist": "exponential", "mean_s": 0.0}, 8, numeric=True) == 0.0
    assert O.expected_max({"dist": "lognormal", "mean_s": 0.02, "sigma": 0.0}, 8) == 0.02


@pytest.mark.parametrize("spec, n, match", [
    (EXP, 0, "n=0"), (EXP, 2.5, "n=2.5"), (EXP, True, "n=True"),
    ({"dist": "gamma", "mean_s": 1}, 2, "dist='gamma'"),
    ({"dist": "exponential", "mean_s": -0.01}, 2, "mean_s=-0.01"),
    ({"dist": "exponential"}, 2, "mean_s"),
    ({"dist": "uniform", "low_s": 0.02, "high_s": 0.01}, 2, "high_s"),
    (inject.slow_rank(1, 0.05), 2, "kind='slow'"),
    ("exponential", 2, "spec="),
])
def test_bad_inputs_name_the_argument(spec, n, match):
    with pytest.raises(ValueError, match=match):
        O.expected_max(spec, n)


# -- the analysis, on a trace written by hand ----------------------------------------------------

DELAYS = [[0.0, 0.0, 0.0],             # step 0: warm-up
          [0.010, 0.030, 0.020],       # rank 1 last
          [0.040, 0.005, 0.010],       # rank 0 last
          [0.012, 0.001, 0.035]]       # rank 2 last
LATENCY = 0.0005                       # the barrier's own cost


@pytest.fixture
def hand_run(tmp_path):
    """3 ranks, 4 steps: injected delay, barrier (the last arrival waits LATENCY), all_reduce."""
    files = {r: [{"ph": "M", "name": "gpuviz_meta", "pid": r, "args": {"rank": r, "world_size": 3}}]
             for r in range(3)}
    t = 0.0
    for step, d in enumerate(DELAYS):
        last = t + max(d)
        for r in range(3):
            us = [round(v * 1e6, 3) for v in (t, d[r], t + d[r], last + LATENCY - t - d[r],
                                               last + LATENCY, 0.001, last + LATENCY + 0.001)]
            files[r] += [
                {"ph": "X", "name": "injected delay", "cat": "compute", "ts": us[0], "dur": us[1],
                 "pid": r, "tid": 0, "args": {"step": step, "injected": True, "delay_s": d[r]}},
                {"ph": "X", "name": "wait for others", "cat": "idle", "ts": us[2], "dur": us[3],
                 "pid": r, "tid": 0, "args": {"step": step}},
                {"ph": "X", "name": "all_reduce", "cat": "comm", "ts": us[4], "dur": us[5],
                 "pid": r, "tid": 0, "args": {"step": step, "bytes": 4096}},
                {"ph": "i", "s": "p", "name": "step_end", "cat": "step", "ts": us[6], "pid": r,
                 "tid": 0, "args": {"step": step, "warmup": step == 0}}]
        t = last + LATENCY + 0.001
    for r, evs in files.items():
        (tmp_path / f"rank{r}.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evs))
    return gpuviz.load_run(tmp_path)


def test_waiting_names_the_collective_and_skips_warmup(hand_run):
    w = S.waiting(hand_run)
    assert set(w["step"]) == {1, 2, 3}
    assert set(w["name"]) == {"all_reduce"} and set(w["span"]) == {"wait for others"}
    expected = [max(d) - d[r] + LATENCY for d in DELAYS[1:] for r in range(3)]
    got = w.sort_values(["step", "rank"])["wait_s"].to_numpy()
    np.testing.assert_allclose(got, expected, atol=2e-6)
    assert len(S.waiting(hand_run, skip_warmup=False)) == 12


def test_stragglers_and_scores(hand_run):
    st = S.stragglers(hand_run).set_index("step")
    assert st["rank"].to_dict() == {1: 1, 2: 0, 3: 2}
    for step in (1, 2, 3):
        d = sorted(DELAYS[step])
        assert st.loc[step, "lateness_s"] == pytest.approx(d[2] - (d[0] + d[1]) / 2, abs=2e-6)
        assert st.loc[step, "margin_s"] == pytest.approx(d[2] - d[1], abs=2e-6)
        assert st.loc[step, "wait_s"] == pytest.approx(LATENCY, abs=2e-6)
    sc = S.straggler_scores(hand_run).set_index("rank")
    assert sc["slowest_steps"].tolist() == [1, 1, 1] and sc["steps"].tolist() == [3, 3, 3]
    assert sc.loc[0, "mean_lateness_s"] == pytest.approx(0.040 - 0.0075, abs=2e-6)


def test_wait_summary_against_the_drawn_delays(hand_run):
    row = S.wait_summary(hand_run, EXP).iloc[0]
    drawn = np.mean([max(d) - np.mean(d) for d in DELAYS[1:]])
    assert row["floor_ms"] == pytest.approx(LATENCY * 1e3, abs=1e-3)
    assert row["drawn_ms"] == pytest.approx(drawn * 1e3, abs=1e-3)
    assert row["waited_ms"] == pytest.approx(drawn * 1e3, abs=1e-3)
    assert row["predicted_ms"] == pytest.approx(O.expected_wait(EXP, 3) * 1e3)
    with pytest.raises(ValueError, match="give spec="):
        S.wait_summary(hand_run)                 # the hand-made run records no injection


def test_analysis_needs_waits(tmp_path):
    (tmp_path / "rank0.jsonl").write_text(json.dumps(
        {"ph": "X", "name": "forward", "cat": "compute", "ts": 0, "dur": 5, "pid": 0, "tid": 0,
         "args": {"step": 0}}) + "\n")
    with pytest.raises(ValueError, match="idle"):
        S.waiting(gpuviz.load_run(tmp_path))
    with pytest.raises(ValueError, match="run="):
        S.waiting("not a run")


def test_waiting_vs_ranks_checks_before_launching():
    with pytest.raises(ValueError, match="nprocs"):
        S.waiting_vs_ranks(nprocs=[1, 2])
    with pytest.raises(ValueError, match="ranks=None"):
        S.waiting_vs_ranks(spec=inject.jitter("exponential", mean_s=0.01, ranks=[0]))
    with pytest.raises(ValueError, match="dist="):
        S.waiting_vs_ranks(spec={"dist": "pareto", "mean_s": 0.01})


# -- figures --------------------------------------------------------------------------------------

def _summary_frame() -> pd.DataFrame:
    spec = {"kind": "jitter", **EXP, "ranks": None, "seed": 0}
    pred = [O.expected_wait(spec, n) * 1e3 for n in (2, 4, 8)]
    return pd.DataFrame({"nproc": [2, 4, 8], "steps": 100, "wait_ms": [11.0, 22.5, 36.0],
                         "wait_ms_se": [0.8, 0.9, 1.0], "floor_ms": [0.5, 1.0, 2.0],
                         "waited_ms": [10.5, 21.5, 34.0], "drawn_ms": [10.2, 21.0, 34.5],
                         "predicted_ms": pred, "spec": [spec] * 3})


def test_waiting_vs_ranks_figure():
    fig = P.waiting_vs_ranks(_summary_frame())
    measured, predicted, drawn, floor = fig.data
    assert list(measured.x) == [2, 4, 8] and measured.line.dash is None
    assert predicted.line.dash == "dash" and "predicted" in predicted.name
    assert list(predicted.x) == list(range(1, 17))                    # the curve reaches 2 x 8
    assert predicted.y[0] == 0 and predicted.y[1] == pytest.approx(10.0)
    assert "measured" in measured.name and "measured" in floor.name and "drew" in drawn.name
    assert "ms" in fig.layout.yaxis.title.text and fig.layout.title.text
    assert "predicted 10.00 ms" in measured.hovertext[0]
    with pytest.raises(ValueError, match="missing columns"):
        P.waiting_vs_ranks(_summary_frame().drop(columns=["predicted_ms"]))


def test_stragglers_figure_marks_the_last_arrival(hand_run):
    fig = P.stragglers(hand_run)
    marks = next(t for t in fig.data if t.name.startswith("slowest rank"))
    assert len(marks.x) == 3
    # rows: rank r on row r; the marks sit just above the rows of ranks 1, 0, 2
    np.testing.assert_allclose(np.asarray(marks.y) + 0.36, [1, 0, 2])
    assert "rank 1 arrived last" in marks.hovertext[0]
    hatched = next(t for t in fig.data if t.name.startswith("injected delay"))
    assert len(hatched.x) == 12
    part = P.stragglers(hand_run, ranks=[2, 0], steps=[2, 3])
    marks = next(t for t in part.data if t.name.startswith("slowest rank"))
    np.testing.assert_allclose(np.asarray(marks.y) + 0.36, [1, 0])   # rank 0 drawn on row 1


# -- real runs ------------------------------------------------------------------------------------

SLOW = 0.03


@pytest.fixture(scope="module")
def slow_run(tmp_path_factory):
    """2 real ranks: rank 1 sleeps 30 ms every step, and both a little uniform jitter."""
    return gpuviz.launch("gpuviz.workloads.sync:jittered_steps", nproc=2, args={"steps": 30},
                         inject=[inject.slow_rank(1, SLOW),
                                 inject.jitter("uniform", low_s=0.0, high_s=0.004)],
                         run_dir=tmp_path_factory.mktemp("slow") / "run", progress=False,
                         stream=False)


@pytest.mark.slow
def test_a_slow_rank_is_the_straggler(slow_run):
    sc = S.straggler_scores(slow_run).set_index("rank")
    assert sc.loc[1, "slowest_frac"] >= 0.9
    assert sc.loc[1, "mean_lateness_s"] == pytest.approx(SLOW, rel=0.25)
    assert sc.loc[0, "mean_wait_s"] > 0.7 * SLOW > sc.loc[1, "mean_wait_s"]
    w = S.waiting(slow_run)
    assert set(w["name"]) == {"all_reduce"} and len(w) == 2 * 28          # 2 warm-up steps left out
    d = S.injected_delays(slow_run).set_index(["rank", "step"])["delay_s"]
    assert d.loc[1].min() >= SLOW and d.loc[0].max() <= 0.004
    fig = P.stragglers(slow_run)
    marks = next(t for t in fig.data if t.name.startswith("slowest rank"))
    assert len(marks.x) == 28 and "rank 1" in fig.layout.title.subtitle.text


@pytest.mark.slow
def test_measured_wait_follows_the_order_statistics(tmp_path):
    """2 and 4 real ranks with exponential jitter: the wait for the others is the drawn
    delays' max - mean (timing), and near E[max] - E[X] (timing and the luck of the draw)."""
    df = S.waiting_vs_ranks((2, 4), steps=120, run_dir=tmp_path)
    assert df["nproc"].tolist() == [2, 4]
    assert (df["ratio_drawn"] - 1).abs().max() < 0.2, df.drop(columns=["spec"]).to_string()
    assert (df["ratio"] - 1).abs().max() < 0.3, df.drop(columns=["spec"]).to_string()
    assert df["waited_ms"].iloc[1] > 1.5 * df["waited_ms"].iloc[0]   # 2 -> 4 ranks: x 2.17 predicted
    fig = P.waiting_vs_ranks(df)
    assert list(fig.data[0].x) == [2, 4]


@pytest.mark.slow
def test_one_job_measures_every_rank_count_on_a_subgroup(tmp_path):
    df = S.waiting_vs_ranks((2, 4), steps=80, one_job=True, run_dir=tmp_path / "r")
    assert df["nproc"].tolist() == [2, 4] and df["steps"].tolist() == [78, 78]
    assert (df["ratio_drawn"] - 1).abs().max() < 0.2, df.drop(columns=["spec"]).to_string()
    assert df["waited_ms"].iloc[1] > 1.5 * df["waited_ms"].iloc[0]
    run = gpuviz.load_run(tmp_path / "r")
    assert run.world_size == 4 and len(run.spans[run.spans["cat"] == "idle"]) == 2 * 80 + 4 * 80
    with pytest.raises(ValueError, match="ranks=3"):
        S.wait_summary(run, ranks=3)
