"""The planner, headless: built, its controls changed, its figure and numbers follow."""

from __future__ import annotations

import math

import pytest

from gpuviz.plan.terms import TIME_TERMS
from gpuviz.widgets import planner


def test_planner_updates_figure_and_numbers_in_place():
    app = planner()
    before = [t.y[0] for t in app.figure.data[:len(TIME_TERMS)]]
    figure = app.figure
    app.controls["tp"].value = 2
    after = [t.y[0] for t in app.figure.data[:len(TIME_TERMS)]]
    assert app.figure is figure and after != before          # the same figure, new values
    assert "tp=2" in app.figure.layout.title.subtitle.text
    assert "Modelled" in app.numbers.value and "tokens/s" in app.numbers.value
    assert 0 < app.last_update_s < 5 and math.isfinite(app.last_update_s)
    print(f"one update took {app.last_update_s * 1e3:.1f} ms")


def test_the_sliders_offer_only_layouts_that_exist_for_the_gpus():
    app = planner()                       # 64 GPUs, tp=8
    assert max(app.controls["pp"].options) == 8
    app.controls["pp"].value = 8
    app.controls["gpus"].value = 1        # one GPU: tp and pp can only be 1
    assert app.controls["tp"].options == (1,) and app.controls["pp"].options == (1,)
    assert app.controls["tp"].value == 1 and app.controls["pp"].value == 1
    assert "No such layout" not in app.numbers.value and "tp=1" in app.figure.layout.title.subtitle.text
    app.controls["gpus"].value = 16
    assert app.controls["tp"].options == (1, 2, 4, 8)
    app.controls["tp"].value = 4
    assert app.controls["pp"].options == (1, 2, 4)


def test_an_impossible_layout_clears_the_figure_and_a_search_goes_stale():
    app = planner(model="llama3-8b", gpu="A100 SXM 80GB")
    app.find_best()
    assert "Best layout" in app.result.value and len(app.heatmap.data) == 1
    app.controls["gpus"].value = 1024
    app.controls["tp"].value = 1
    app.controls["pp"].value = 64         # more stages than the model's 32 layers
    assert "No such layout" in app.numbers.value
    assert all(list(t.y) == [0] for t in app.figure.data)
    assert "no such layout" in app.figure.layout.title.subtitle.text
    # the best layout was searched for 64 GPUs: no longer shown as the answer
    assert "Best layout" not in app.result.value and "other choices" in app.result.value
    assert len(app.heatmap.data) == 0
    app.controls["gpus"].value = 64
    app.controls["pp"].value = 1
    assert "No such layout" not in app.numbers.value
    compute = [t.y[0] for t in app.figure.data if t.name == "compute"]
    assert len(compute) == 1 and compute[0] > 0      # the bars are back


def test_the_numbers_give_memory_in_the_figures_units_and_the_margin():
    app = planner()
    assert "GiB per GPU" in app.numbers.value and " GB" not in app.numbers.value
    assert "GiB to spare after 1 GiB reserved" in app.numbers.value
    cap = app.figure.layout.annotations[-1].text
    assert cap == "capacity 79.6 GiB"


def test_planner_offers_context_parallelism_and_fp8():
    app = planner()
    app.controls["gpus"].value = 64
    app.controls["tp"].value = 8
    assert max(app.controls["cp"].options) == 8      # tp x pp x cp within the 64 GPUs
    app.controls["cp"].value = 2
    assert "No such layout" not in app.numbers.value
    app.controls["precision"].value = "fp8"
    app.controls["gpu"].value = "A100 SXM 80GB"
    assert "No such layout" in app.numbers.value and "no FP8 peak" in app.numbers.value


def test_planner_offers_expert_parallelism_for_a_mixture_of_experts_only():
    app = planner()                                  # llama3-70b: dense, ep 1 alone
    assert app.controls["ep"].options == (1,) and app.controls["ep_overlap"].disabled
    app.controls["model"].value = "qwen3-30b-a3b"    # 128 experts on 64 GPUs, tp=8
    assert app.controls["ep"].options == (1, 2, 4, 8, 16, 32, 64)
    assert not app.controls["ep_overlap"].disabled
    before = app.figure.data[TIME_TERMS.index("ep_comm")].y[0]
    app.controls["ep"].value = 16
    assert "ep=16" in app.figure.layout.title.subtitle.text
    exposed = app.figure.data[TIME_TERMS.index("ep_comm")].y[0]
    assert exposed > before == 0
    app.controls["ep_overlap"].value = True           # hidden behind another micro-batch's compute
    assert 0 <= app.figure.data[TIME_TERMS.index("ep_comm")].y[0] < exposed
    app.controls["pp"].value = 4                      # 16 GPUs a stage: ep at most 16
    assert max(app.controls["ep"].options) == 16 and app.controls["ep"].value == 16
    app.controls["pp"].value = 8
    assert app.controls["ep"].value == 8              # the largest that still exists
    app.controls["model"].value = "llama3-8b"
    assert app.controls["ep"].options == (1,) and "No such layout" not in app.numbers.value
    assert app.controls["ep_overlap"].disabled


def test_planner_says_why_a_layout_is_impossible_or_does_not_fit():
    app = planner()
    app.controls["gpus"].value = 1024
    app.controls["tp"].value = 1
    app.controls["pp"].value = 128
    assert "more stages than the model's layers=80" in app.numbers.value
    app.controls["pp"].value = 1
    app.controls["model"].value = "llama3-405b"
    app.controls["gpus"].value = 8
    assert "does NOT fit" in app.numbers.value


def test_find_best_layout_shows_reason_and_heatmap():
    app = planner(model="llama3-8b", gpu="A100 SXM 80GB")
    app.controls["gpus"].value = 64
    app.find_best()
    assert "faster than the runner-up" in app.result.value
    assert len(app.heatmap.data) == 1 and app.heatmap.data[0].type == "heatmap"
    assert app.best["fits"].iloc[0]
    assert app.controls["tp"].value == app.best["tp"].iloc[0]


def test_find_best_searches_with_the_all_to_all_overlap_the_checkbox_says():
    app = planner(model="qwen3-30b-a3b")
    app.controls["gpus"].value = 16
    app.controls["ep_overlap"].value = True
    app.find_best()
    assert app.best.attrs["best"].ep_overlap is True and app.best["fits"].iloc[0]


def test_find_best_reports_a_model_that_fits_nowhere():
    app = planner(model="llama3-405b", gpu="A100 SXM 80GB")
    app.controls["gpus"].value = 8
    app.find_best()
    assert "fits nowhere" in app.result.value


@pytest.mark.parametrize("control", ["gpu", "intra", "inter", "zero", "recompute", "micro_batch"])
def test_every_control_triggers_an_update(control):
    app = planner()
    old = app.numbers.value
    c = app.controls[control]
    c.value = [o for o in c.options if o != c.value][-1]
    assert app.numbers.value != old or "No such layout" in app.numbers.value
