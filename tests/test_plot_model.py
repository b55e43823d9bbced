"""The cluster model's figures: breakdown, layout heatmap, predicted against measured."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import pytest

import gpuviz
from gpuviz.plan import Config
from gpuviz.plan.prediction import predict
from gpuviz.plan.search import search
from gpuviz.plan.terms import TIME_TERMS


def test_breakdown_stacks_every_term_hatched_and_says_modelled():
    p = predict(Config("gpt3-175b", gpus=1024, dp=16, tp=8, pp=8, global_batch=1536,
                       recompute="full", gpu="A100 SXM 80GB", inter_link="ib-hdr"))
    fig = gpuviz.plot.model_breakdown(p)
    assert isinstance(fig, go.Figure) and fig.layout.barmode == "stack"
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == len(TIME_TERMS) + 6
    assert all(t.marker.pattern.shape == "/" for t in bars)
    assert sum(t.y[0] for t in bars[:len(TIME_TERMS)]) == pytest.approx(p.step_s)
    assert "modelled" in fig.layout.title.subtitle.text
    assert fig.layout.yaxis.title.text and fig.layout.yaxis2.title.text


def test_layout_heatmap_marks_cells_where_nothing_fits():
    t = search("llama3-70b", gpus=64, global_batch=256, gpu="H100 SXM")
    fig = gpuviz.plot.layout_heatmap(t)
    z = fig.data[0].z
    assert fig.data[0].type == "heatmap"
    assert any(v != v for row in z for v in row) or t["fits"].all()
    assert max(v for row in z for v in row if v == v) == pytest.approx(t["tokens_per_s"].iloc[0])
    with pytest.raises(ValueError, match="'speed' is not a column"):
        gpuviz.plot.layout_heatmap(t, value="speed")


def test_predicted_vs_measured_has_diagonal_band_and_strategies():
    table = pd.DataFrame({"label": ["a", "b", "c"], "strategy": ["ddp", "tp", "ddp"],
                          "measured_ms": [10.0, 20.0, 30.0], "predicted_ms": [11.0, 19.0, 33.0]})
    table["error"] = table["predicted_ms"] / table["measured_ms"] - 1
    fig = gpuviz.plot.predicted_vs_measured(table)
    # log axes label every tick with its value (plotly's default prints "2", "5" between decades)
    assert fig.layout.xaxis.tickformat == fig.layout.yaxis.tickformat == "~g"
    names = [t.name for t in fig.data]
    assert "predicted = measured" in names and "±10%" in names and {"ddp", "tp"} <= set(names)
    assert "10.0%" in fig.layout.title.subtitle.text
    with pytest.raises(ValueError, match="no 'measured_ms' column"):
        gpuviz.plot.predicted_vs_measured(table.drop(columns="measured_ms"))


def test_layout_heatmap_tells_no_such_layout_from_does_not_fit():
    t = search("llama3-405b", gpus=128, global_batch=128, gpu="H100 SXM")
    fig = gpuviz.plot.layout_heatmap(t)
    heat = fig.data[0]
    cells = t.groupby(["pp", "tp"])["fits"].any()
    labels = {}
    for a in fig.layout.annotations:
        labels[(heat.y[a.y], heat.x[a.x])] = a.text
    absent = {(str(p), str(tp)) for p in t["pp"].unique() for tp in t["tp"].unique()
              if (p, tp) not in cells.index}
    nofit = {(str(p), str(tp)) for (p, tp), ok in cells.items() if not ok}
    assert absent and nofit                                       # this case has both kinds
    assert {k for k, v in labels.items() if v == "no such layout"} == absent
    assert {k for k, v in labels.items() if v == "does not fit"} == nofit
    for (p, tp), label in labels.items():
        i, j = list(heat.y).index(p), list(heat.x).index(tp)
        assert heat.z[i][j] != heat.z[i][j]                      # no value drawn
        hover = heat.text[i][j]
        if label == "no such layout":
            assert f"tp x pp = {int(tp) * int(p)} does not divide the 128 GPUs" in hover
        else:
            assert "does not fit" in hover and "GiB of 79.6 GiB" in hover
    sub = fig.layout.title.subtitle.text
    assert "no such layout" in sub and "none fits in memory" in sub and "blank" not in sub
    fills = {s.fillcolor for s in fig.layout.shapes}
    assert fills == {gpuviz.plot.plan.NO_LAYOUT_COLOR, gpuviz.plot.plan.NO_FIT_COLOR}


def test_breakdown_subtitle_formats_small_memory_and_says_what_mfu_is_of():
    from gpuviz.plan.calibrate import Calibration, gpt_model

    cal = Calibration(2e9, 1e9, 1e-4, 0.0, 0.0, 0.0, 0.5, 2, gpt_model())
    p = predict(cal.config("ddp", ranks=2, batch=32))
    assert p.memory_per_gpu < 1e9
    sub = gpuviz.plot.model_breakdown(p).layout.title.subtitle.text
    assert "0.0 GB" not in sub and "0.1 GB" not in sub
    assert f"{gpuviz.plot.units.binary_bytes(p.memory_per_gpu)} per GPU" in sub and "MiB" in sub
    assert "of the fitted core rate" in sub and "datasheet" not in sub
    h100 = predict(Config("llama3-70b", gpus=64, dp=8, tp=8, global_batch=512, zero=1))
    sub = gpuviz.plot.model_breakdown(h100).layout.title.subtitle.text
    assert "of the datasheet peak" in sub and "GiB of 79.6 GiB per GPU" in sub
    moe = Config("qwen3-30b-a3b", gpus=16, dp=16, ep=16, global_batch=64, zero=1)
    for overlapped in (False, True):
        p = predict(moe.replace(ep_overlap=overlapped))
        sub = gpuviz.plot.model_breakdown(p).layout.title.subtitle.text
        assert "ep=16" in sub and ("ep=16 overlapped" in sub) == overlapped


def test_the_precomputed_planner_holds_the_search_s_best_layouts():
    from gpuviz.plan.grid import layout_grid
    from gpuviz.plot.planner import precomputed_planner

    grid = layout_grid(["llama3-8b", "llama3-405b"], gpus=[8, 64], global_batch=128)
    assert grid.loc[(grid["model"] == "llama3-405b") & (grid["gpus"] == 8), "why"].str.contains(
        "fits nowhere").all()
    fig = precomputed_planner(grid)
    assert fig.layout.title.subtitle.text.startswith("modelled, precomputed")
    assert [b.label for b in fig.layout.updatemenus[0].buttons] == ["llama3-8b", "llama3-405b"]
    per = len(TIME_TERMS) + 2   # the terms, then memory that fits and memory that does not
    # the model menu shows one model's bars; the slider's step for 64 GPUs holds, for
    # llama3-8b, each (tp, pp)'s fastest fitting layout as search finds it
    assert fig.layout.updatemenus[0].buttons[1].args[0]["visible"] == [False] * per + [True] * per
    step = next(s for s in fig.layout.sliders[0].steps if s.label == "64")
    table = search("llama3-8b", gpus=64, global_batch=128)
    ys, xs = step.args[0]["y"], step.args[0]["x"]
    for i, label in enumerate(ys[0]):
        tp, pp = (int(v.split("=")[1]) for v in label.split())
        fit = table[(table["tp"] == tp) & (table["pp"] == pp) & table["fits"]]
        total = sum(xs[k][i] or 0 for k in range(len(TIME_TERMS)))
        assert total == pytest.approx(fit["step_s"].iloc[0], rel=1e-3), label   # 4 digits each
    # where no layout of a (tp, pp) fits, the grid keeps the one needing the least memory
    big = layout_grid(["llama3-405b"], gpus=[128], global_batch=128)
    every = search("llama3-405b", gpus=128, global_batch=128)
    nofit = big[~big["fits"] & (big["tp"] > 0)]
    assert len(nofit) > 0
    for _, r in nofit.iterrows():
        mine = every[(every["tp"] == r["tp"]) & (every["pp"] == r["pp"])]
        assert r["memory_GiB"] == pytest.approx(mine["memory_GiB"].min())
    with pytest.raises(ValueError, match="max_pp=0"):
        precomputed_planner(grid, max_pp=0)
    with pytest.raises(ValueError, match="grid: give the table"):
        precomputed_planner(pd.DataFrame({"x": [1]}))
