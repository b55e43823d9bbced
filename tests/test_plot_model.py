"""The cluster model's figures: breakdown, layout heatmap, predicted against measured."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import pytest

import gpuviz
from gpuviz.model import Config, predict
from gpuviz.model_search import search
from gpuviz.model_terms import TIME_TERMS


def test_breakdown_stacks_every_term_hatched_and_says_modelled():
    p = predict(Config("gpt3-175b", gpus=1024, dp=16, tp=8, pp=8, global_batch=1536,
                       recompute="full", gpu="A100 SXM 80GB", inter_link="ib-hdr"))
    fig = gpuviz.plot.model_breakdown(p)
    assert isinstance(fig, go.Figure) and fig.layout.barmode == "stack"
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == len(TIME_TERMS) + 5
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
    names = [t.name for t in fig.data]
    assert "predicted = measured" in names and "±10%" in names and {"ddp", "tp"} <= set(names)
    assert "10.0%" in fig.layout.title.subtitle.text
    with pytest.raises(ValueError, match="no 'measured_ms' column"):
        gpuviz.plot.predicted_vs_measured(table.drop(columns="measured_ms"))
