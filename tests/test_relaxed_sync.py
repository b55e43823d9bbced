"""Relaxed synchronisation: sync, gradient accumulation and local SGD, in one process and
on real ranks; the comparison table and its figure."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import gpuviz
from gpuviz.plot import sync as P
from gpuviz.sync import relaxed
from gpuviz.workloads import sync as W

SMALL = {"batch": 16, "dim": 8, "hidden": 32, "layers": 2, "lr": 0.1, "eval_size": 64}
STEPS, K, H = 24, 4, 3


def _same(a, b) -> float:
    return max(float((p - q).detach().abs().max()) for p, q in zip(a.parameters(), b.parameters(), strict=True))


# -- in one process ------------------------------------------------------------------------------

def test_accumulating_one_micro_batch_or_averaging_every_step_is_sync():
    sync = W.simulate("sync", world=4, steps=6, **SMALL)
    assert _same(W.simulate("accumulate", world=4, steps=6, k=1, **SMALL), sync) == 0.0
    # averaging parameters after each plain-SGD step = averaging gradients before it
    assert _same(W.simulate("local_sgd", world=4, steps=6, H=1, **SMALL), sync) < 1e-6
    assert _same(W.simulate("local_sgd", world=4, steps=6, H=3, **SMALL), sync) > 1e-5


def test_sync_period():
    assert [W.sync_period(m, k=5, H=7) for m in W.MODES] == [1, 5, 7]
    assert W.default_eval_every(1) == 4 and W.default_eval_every(3) == 6 and W.default_eval_every(8) == 8


@pytest.mark.parametrize("kwargs, match", [
    ({"mode": "async"}, "mode='async'"),
    ({"mode": "accumulate", "k": 0}, "k=0"),
    ({"mode": "local_sgd", "H": 0}, "H=0"),
    ({"mode": "local_sgd", "H": 2.5}, "H=2.5"),
    ({"mode": "sync", "k": True}, "k=True"),
])
def test_bad_modes_and_periods(kwargs, match):
    with pytest.raises(ValueError, match=match):
        W.train(**kwargs)                               # raised before any collective
    with pytest.raises(ValueError, match=match):
        relaxed.compare_sync(kwargs.pop("mode"), **kwargs)   # raised before launching


def test_compare_sync_checks_its_own_arguments():
    with pytest.raises(ValueError, match="modes"):
        relaxed.compare_sync([])
    with pytest.raises(ValueError, match="steps=0"):
        relaxed.compare_sync(steps=0)


# -- figure ------------------------------------------------------------------------------------------

def _table() -> pd.DataFrame:
    rows = []
    for mode, period, loss_end in (("sync", 1, 0.1), ("local_sgd", 4, 0.12)):
        for s in range(9):
            rows.append({"mode": mode, "period": period, "step": s, "synced": s > 0 and s % period == 0,
                         "step_s": 0.0 if s == 0 else 0.01, "wall_s": 0.01 * s,
                         "comm_s": 0.004 if s > 0 and s % period == 0 else 0.0,
                         "wait_s": 0.001 if s > 0 and s % period == 0 else 0.0,
                         "loss": 0.5 - (0.5 - loss_end) * s / 8 if s % 4 == 0 else np.nan})
    return pd.DataFrame(rows)


def test_relaxed_sync_figure():
    fig = P.relaxed_sync(_table())
    lines = [t for t in fig.data if t.type == "scatter"]
    assert [t.name for t in lines if t.showlegend] == ["sync every step (measured)",
                                                       "local SGD, H = 4 (measured)"]
    assert len(lines) == 4 and all(len(t.x) == 3 for t in lines)        # evaluated steps only
    bars = {t.name: t for t in fig.data if t.type == "bar"}
    assert set(bars) == {"computing (and the rest of the step)", "waiting for the others",
                         "communicating"}
    np.testing.assert_allclose(bars["communicating"].y, [4.0, 1.0])        # ms per step
    assert fig.layout.xaxis.title.text == "training time (s)" and fig.layout.xaxis2.title.text == "step"
    assert "ms" in fig.layout.yaxis3.title.text
    with pytest.raises(ValueError, match="missing columns"):
        P.relaxed_sync(_table().drop(columns=["wall_s"]))


# -- on real ranks ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sync_run(tmp_path_factory):
    """One real 2-rank job: the three modes one after another, each checked against its
    single-process replay."""
    return gpuviz.launch("gpuviz.workloads.sync:compare", nproc=2,
                         args={"steps": STEPS, "k": K, "H": H, "check": True, **SMALL},
                         run_dir=tmp_path_factory.mktemp("sync") / "run", progress=False,
                         stream=False)


@pytest.mark.slow
@pytest.mark.parametrize("mode", W.MODES)
def test_real_ranks_match_the_single_process_replay(sync_run, mode):
    for rank in (0, 1):
        c = json.loads((sync_run.path / f"sync_check_{mode}_rank{rank}.json").read_text())
        assert c["max_change"] > 1e-3                          # training moved the weights
        assert c["max_abs_diff"] < 1e-5 * max(1.0, c["max_change"]), c


@pytest.mark.slow
def test_each_mode_communicates_every_period(sync_run):
    sp = sync_run.spans
    ends = sync_run.events[sync_run.events["name"] == "step_end"]
    mode_of = {(r, s): a["mode"] for r, s, a in zip(ends["rank"], ends["step"], ends["args"],
                                                    strict=True)}
    sp = sp.assign(mode=[mode_of.get((r, s)) for r, s in zip(sp["rank"], sp["step"], strict=True)])
    expect = {"sync": ("all_reduce grads", STEPS), "accumulate": ("all_reduce grads", STEPS // K),
              "local_sgd": ("all_reduce params", STEPS // H)}
    for mode, (name, count) in expect.items():
        for rank in (0, 1):
            s = sp[(sp["mode"] == mode) & (sp["rank"] == rank)]
            comm, wait = s[s["cat"] == "comm"], s[s["cat"] == "idle"]
            assert len(comm) == count and set(comm["name"]) == {name}
            assert len(wait) == count and set(wait["name"]) == {"wait for others"}
            assert (s["name"] == "forward").sum() == STEPS


@pytest.mark.slow
def test_compare_table_and_summary(sync_run):
    df = relaxed.sync_steps(sync_run)
    assert list(dict.fromkeys(df["mode"])) == list(W.MODES)
    assert (df.groupby("mode")["step"].max() == STEPS).all() and (df["ranks"] == 2).all()
    per = df[df["step"] > 0]
    assert (per.loc[~per["synced"], "comm_s"] == 0).all() and (per.loc[per["synced"], "comm_s"] > 0).all()
    assert (per["step_s"] > 0).all() and per.groupby("mode")["wall_s"].is_monotonic_increasing.all()
    assert df.groupby("mode")["period"].first().to_dict() == {"sync": 1, "accumulate": K, "local_sgd": H}
    s = relaxed.sync_summary(df, target=float(df["loss"].max())).set_index("mode")
    assert (s["steps_to_target"] == 12).all()                 # at or below the worst loss: at once
    assert relaxed.sync_summary(df, target=-1.0)["wall_to_target_s"].isna().all()
    assert s["syncs"].to_dict() == {"sync": STEPS, "accumulate": STEPS // K, "local_sgd": STEPS // H}
    first = df[df["step"] == 0].set_index("mode")["loss"]
    assert first.nunique() == 1                                # same model, same held-out batch
    assert (s["final_loss"] < first).all(), s                  # every mode learns
    assert s.loc["local_sgd", "final_loss"] < s.loc["accumulate", "final_loss"]   # more updates
    # the held-out loss is evaluated on sync steps only (lcm(1, 4, 3) = 12)
    assert per.dropna(subset=["loss"])["step"].unique().tolist() == [12, 24]
    fig = P.relaxed_sync(df)
    assert len([t for t in fig.data if t.type == "scatter"]) == 6

