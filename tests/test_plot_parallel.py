"""Figures of the parallel strategies: their structure, on tables and on one real 2-rank run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

import gpuviz
from gpuviz.plot import parallel as pp
from gpuviz.plot import pipeline as ppl

TINY = {"layers": 2, "dim": 32, "heads": 4, "seq_len": 16, "vocab": 32}


def _scaling_table() -> pd.DataFrame:
    rows = []
    for mode, times in (("strong", [100.0, 60.0, 70.0]), ("weak", [100.0, 110.0, 190.0])):
        for strategy, extra in (("ddp", 1.0), ("single", 0.9)):
            for n, t in zip((1, 2, 4), times, strict=True):
                tokens = 1024 * (n if mode == "weak" else 1)
                rows.append({"mode": mode, "strategy": strategy, "ranks": n, "batch": 16,
                             "per_rank_batch": 16 / n, "step_ms": t * extra, "step_ms_lo": t * extra - 1,
                             "step_ms_hi": t * extra + 1, "tokens_per_s": tokens / (t * extra / 1e3),
                             "cores": 2})
    df = pd.DataFrame(rows)
    ref = df.groupby(["mode", "strategy"])["tokens_per_s"].transform("first")
    df["ideal_tokens_per_s"] = ref * df["ranks"]
    df["speedup"] = df["tokens_per_s"] / ref
    df["efficiency"] = df["speedup"] / df["ranks"]
    return df


def test_scaling_draws_measured_solid_and_ideal_dashed():
    df = _scaling_table()
    fig = pp.scaling(df)
    assert isinstance(fig, go.Figure)
    names = [t.name for t in fig.data]
    assert "ddp, strong scaling (same global batch): measured" in names
    assert "every rank alone, no communication (weak): measured" in names
    measured = [t for t in fig.data if t.name.endswith("measured")]
    ideal = [t for t in fig.data if t.name.startswith("ideal")]
    assert all(t.line.dash is None for t in measured) and all(t.line.dash == "dash" for t in ideal)
    assert len(measured) == 8 and len(ideal) == 4          # 2 panels x (2 modes x 2 strategies)
    assert sum(bool(t.showlegend) for t in ideal) == 1
    # the efficiency panel plots exactly the table's efficiencies, as percentages
    eff = [t for t in measured if t.xaxis == "x2" and t.name.startswith("ddp, weak")][0]
    np.testing.assert_allclose(eff.y, df[(df["mode"] == "weak") & (df["strategy"] == "ddp")]["efficiency"])
    assert fig.layout.yaxis2.tickformat == ".0%" and fig.layout.xaxis.type == "log"
    assert "tokens/s" in eff.hovertext[1] and "efficiency 91%" in eff.hovertext[1]
    assert any(s.type == "line" and s.line.dash == "dot" for s in fig.layout.shapes)  # 2 cores
    assert "2 cores" in fig.layout.title.subtitle.text
    one = pp.scaling(df[df["mode"] == "strong"], y="efficiency")
    assert {t.xaxis for t in one.data} == {"x"}


def test_scaling_bad_input():
    with pytest.raises(ValueError, match="y='speed'"):
        pp.scaling(_scaling_table(), y="speed")
    with pytest.raises(ValueError, match=r"missing columns \['efficiency'\]"):
        pp.scaling(_scaling_table().drop(columns="efficiency"))
    with pytest.raises(ValueError, match="non-empty DataFrame"):
        pp.scaling(pd.DataFrame())


def _memory_table(per_rank=False) -> pd.DataFrame:
    rows = []
    for label, state, pred in (("ddp", [4e6, 4e6, 8e6], [4e6, 4e6, 8e6]),
                               ("zero3", [2e6, 2e6, 4e6], [2e6, 2e6, 4e6]),
                               ("1f1b", [2e6, 2e6, 4e6], [np.nan] * 3)):
        for rank in (0, 1) if per_rank else (None,):
            for kind, b, p in zip(("params", "grads", "optimizer", "activations"), [*state, 9e6],
                                  [*pred, np.nan], strict=True):
                rows.append({"label": label, "strategy": label, "ranks": 2, "kind": kind,
                             "bytes": b + (rank or 0) * 1e5, "bytes_min": b, "bytes_max": b,
                             "predicted": p, **({"rank": rank} if per_rank else {})})
    return pd.DataFrame(rows)


def test_memory_stacks_kinds_with_the_formula_as_a_marker():
    fig = pp.memory(_memory_table())
    bars = [t for t in fig.data if t.type == "bar"]
    assert [t.name for t in bars] == ["params", "grads", "optimizer", "activations"]
    assert fig.layout.barmode == "stack" and list(bars[0].x) == ["ddp", "zero3", "1f1b"]
    np.testing.assert_allclose(bars[2].y, np.array([8e6, 4e6, 4e6]) / 2**20)
    marker = fig.data[-1]
    assert marker.type == "scatter" and "predicted" in marker.name
    np.testing.assert_allclose(marker.y[:2], np.array([16e6, 8e6]) / 2**20)
    assert np.isnan(marker.y[2])                              # no formula for the pipeline
    assert "ratio 1.000" in marker.hovertext[0] and "MiB" in fig.layout.yaxis.title.text
    state = pp.memory(_memory_table(), kinds=["params", "grads", "optimizer"])
    assert [t.name for t in state.data][-1].startswith("formula: params + grads + optimizer")
    only = pp.memory(_memory_table(), kinds="activations")
    assert len(only.data) == 1                                # no state kinds: no formula


def test_memory_per_rank_groups_bars_by_strategy():
    fig = pp.memory(_memory_table(per_rank=True))
    x = fig.data[0].x
    assert list(x[0]) == ["ddp", "ddp", "zero3", "zero3", "1f1b", "1f1b"]
    assert list(x[1]) == ["rank 0", "rank 1"] * 3
    assert "rank 1" in fig.data[0].hovertext[1]
    with pytest.raises(ValueError, match="kinds=\\['weights'\\]"):
        pp.memory(_memory_table(), kinds=["weights"])


def test_pipeline_bubble_beside_the_formula():
    df = pd.DataFrame({"schedule": ["gpipe"] * 3 + ["1f1b"] * 3, "stages": 2,
                       "micro_batches": [2, 4, 8] * 2, "measured": [0.4, 0.3, 0.2, 0.38, 0.25, 0.15],
                       "measured_lo": 0.1, "measured_hi": 0.5, "predicted": [1 / 3, 1 / 5, 1 / 9] * 2,
                       "step_ms": 50.0})
    fig = ppl.pipeline_bubble(df)
    measured, formula = fig.data[:2], fig.data[2]
    assert [t.name for t in measured] == ["gpipe: measured", "1f1b: measured"]
    assert all(t.line.dash is None for t in measured) and formula.line.dash == "dash"
    assert "predicted" in formula.name and formula.y[0] == pytest.approx(1 / 3)
    assert formula.y[-1] == pytest.approx(1 / 9) and list(fig.layout.xaxis.tickvals) == [2, 4, 8]
    assert "ratio 1.20" in measured[0].hovertext[0]
    np.testing.assert_allclose(measured[0].error_y.arrayminus, [0.3, 0.2, 0.1])
    with pytest.raises(ValueError, match=r"missing columns \['predicted'\]"):
        ppl.pipeline_bubble(df.drop(columns="predicted"))


# -- on a real run -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def four_run(tmp_path_factory):
    """The four families on 2 ranks, one measured step each: ddp, ZeRO-3, tensor, 1F1B."""
    configs = [{"strategy": s, "steps": 2, "batch": 4, "micro_batches": 4}
               for s in ("ddp", "zero3", "tp", "1f1b")]
    return gpuviz.launch("gpuviz.workloads.parallelism:sweep", nproc=2,
                         args={"configs": configs, "model": TINY},
                         run_dir=tmp_path_factory.mktemp("four") / "run", progress=False, stream=False)


@pytest.mark.slow
def test_pipeline_schedule_labels_every_micro_batch(four_run):
    fig = ppl.pipeline_schedule(four_run)
    boxes = [t for t in fig.data if t.name.startswith(("forward", "backward"))]
    labels = sorted((int(y), s) for t in boxes for y, s in zip(t.y, t.text, strict=True))
    want = sorted((stage, f"{op}{i}") for stage in (0, 1) for op in "FB" for i in range(4))
    assert labels == want
    assert all((np.asarray(t.base) >= -1e-9).all() for t in fig.data)   # ms from the step start
    ticks = list(fig.layout.yaxis.ticktext)
    assert ticks[0].startswith("stage 0 (rank 0)") and "bubble" in ticks[1]
    assert "(p-1)/(m+p-1) = 20%" in fig.layout.title.subtitle.text
    assert any(t.name.startswith("waiting") for t in fig.data)
    from gpuviz.parallel.memory import bubble_sweep

    sweep = bubble_sweep(four_run)
    assert 0.5 < float(sweep["replayed"].iloc[0] / sweep["measured"].iloc[0]) < 1.5  # replayed with its own times
    bub = ppl.pipeline_bubble(sweep)
    assert any("replayed" in t.name for t in bub.data)
    assert bub.data[0].x.tolist() == [4] and 0 < bub.data[0].y[0] < 1
    assert ppl.pipeline_schedule(four_run, step=1).layout.title.subtitle.text.count("step ") == 1
    with pytest.raises(ValueError, match="step=5: configuration 3 has 2 measured steps"):
        ppl.pipeline_schedule(four_run, step=5)
    with pytest.raises(ValueError, match=r"config=0: the pipeline configurations of this run are \[3\]"):
        ppl.pipeline_schedule(four_run, config=0)


@pytest.mark.slow
def test_timelines_stack_one_step_of_each_strategy(four_run):
    fig = pp.timelines(four_run)
    titles = [a.text for a in fig.layout.annotations]
    assert [t.split(":")[0] for t in titles] == ["<b>ddp</b>", "<b>zero3</b>", "<b>tp</b>", "<b>1f1b</b>"]
    assert {t.xaxis for t in fig.data} == {"x", "x2", "x3", "x4"}
    assert fig.layout.xaxis4.title.text.startswith("time from the start of the step")
    # every panel labels its own time axis, in ms
    assert all(fig.layout[f"xaxis{k}"].showticklabels and fig.layout[f"xaxis{k}"].ticksuffix == " ms"
               for k in ("", 2, 3, 4))
    assert fig.layout.xaxis.matches == "x4" or fig.layout.xaxis2.matches == "x4"   # shared axis
    bars = [t for t in fig.data if t.type == "bar"]
    starts = np.concatenate([np.asarray(t.base, float) for t in bars])
    assert starts.min() >= -1e-6 and starts.max() < 60_000                     # ms, shifted
    names = [t.name for t in fig.data if t.showlegend]
    assert len(names) == len(set(names)) and "compute" in names and "comm" in names
    # a dict of runs: one panel each, named by its key
    two = pp.timelines({"first": four_run, "again": four_run}, step=1)
    assert len(two.layout.annotations) == 8
    assert two.layout.annotations[4].text.startswith("<b>again: ddp</b>")
    with pytest.raises(ValueError, match="step=2: ddp has only 2 measured steps"):
        pp.timelines(four_run, step=2)
    with pytest.raises(ValueError, match="give a dict of name -> Run"):
        pp.timelines([four_run])
    # a subset of a sweep's configurations
    picked = pp.timelines(four_run, configs=[1, 3])
    assert [a.text.split(":")[0] for a in picked.layout.annotations] == ["<b>zero3</b>", "<b>1f1b</b>"]
    with pytest.raises(ValueError, match="configs="):
        pp.timelines(four_run, configs=[9])
