"""gpuviz.energy.at_scale: the published tables agree with their sources' own arithmetic, the power-cap
model against a published measurement, bad input, and the two figures."""

from __future__ import annotations

import pandas as pd
import pytest

from gpuviz.energy import at_scale
from gpuviz.energy.carbon import J_PER_KWH
from gpuviz.plot import at_scale as plot_at_scale


@pytest.fixture(scope="module")
def runs():
    return at_scale.published_runs().set_index("model")


def test_runs_reproduce_their_sources_arithmetic(runs):
    # BLOOM: Luccioni et al. estimate energy as GPU-hours x 400 W: 1,082,990 h -> 433,196 kWh
    b = runs.loc["BLOOM 176B"]
    assert b["gpu_hours"] * b["power_w"] / 1e6 == pytest.approx(b["energy_mwh"], rel=1e-6)
    assert not b["energy_derived"]
    # Llama 3 card: 8B + 70B = the stated total, 7.7M GPU-hours and 2290 tCO2eq
    l3 = runs.loc[["Llama 3 8B", "Llama 3 70B"]]
    assert l3["gpu_hours"].sum() == pytest.approx(7.7e6)
    assert l3["tco2e"].sum() == pytest.approx(2290)
    # Llama 3.1 card: 39.3M GPU-hours and 11,390 tCO2eq in all
    l31 = runs.loc[["Llama 3.1 8B", "Llama 3.1 70B", "Llama 3.1 405B"]]
    assert l31["gpu_hours"].sum() == pytest.approx(39.3e6)
    assert l31["tco2e"].sum() == pytest.approx(11390)
    # Llama 2 card: emissions per GPU-hour the same for every size (same clusters, same method)
    l2 = runs.loc[["Llama 2 7B", "Llama 2 13B", "Llama 2 70B"]]
    per_h = l2["tco2e"] / l2["gpu_hours"]
    assert per_h.max() / per_h.min() == pytest.approx(1.0, abs=2e-3)


def test_derived_values_are_labelled(runs):
    meta = runs[runs.index.str.startswith("Llama")]
    assert meta["energy_derived"].all()
    assert meta["energy_basis"].str.contains("derived here").all()
    assert (meta["energy_mwh"] == meta["gpu_hours"] * meta["power_w"] / 1e6).all()
    reported = runs.loc[["GPT-3 175B", "BLOOM 176B"]]
    assert not reported["energy_derived"].any()
    assert reported["energy_basis"].str.startswith("reported").all()
    j = runs["energy_mwh"] * 1e3 * J_PER_KWH / runs["tokens"]
    assert (runs["j_per_token"] == j).all()
    assert runs.loc["GPT-3 175B", "j_per_token"] == pytest.approx(15.444)
    assert runs["url"].str.startswith("https://").all() and runs["source"].str.len().gt(10).all()


def test_gpu_table():
    g = at_scale.gpu_power()
    assert g.loc["A100 SXM", "tdp_w"] == 400 and g.loc["H100 SXM", "tdp_w"] == 700
    assert (g["min_limit_w"] < g["tdp_w"]).all()


def test_cap_model_against_published_measurement():
    """McDonald et al. 2022: 150 W cap (250 W default) -> energy x0.863, time x1.068.
    The model has one unknown, the uncapped draw; fit it to the energy, then the time is a
    prediction (model: time = energy^-1/2), which must land within 1% of the reported one."""
    p = at_scale.published_power_caps().iloc[0]
    draw = p["cap_w"] / p["relative_energy"] ** 1.5          # energy = (cap/draw)^(2/3)
    t, e = at_scale.cap_model(p["cap_w"], draw)
    assert e == pytest.approx(p["relative_energy"], rel=1e-9)
    assert t == pytest.approx(p["relative_time"], rel=0.01)
    assert t != pytest.approx(p["relative_time"], rel=1e-4)   # a prediction, not a copy
    assert draw <= p["default_w"]                              # the GPU drew below its limit


def test_whatif_shape_and_limits():
    w = at_scale.power_cap_whatif("H100 SXM")
    assert w["modelled"].all() and len(w) == 11
    assert w["cap_w"].min() == 200 and w["cap_w"].max() == 700
    top = w.iloc[-1]
    assert top["relative_time"] == 1.0 and top["relative_energy"] == 1.0
    w = w.sort_values("cap_w")
    assert w["relative_time"].is_monotonic_decreasing       # a lower cap is slower ...
    assert w["relative_energy"].is_monotonic_increasing     # ... and uses less energy
    # caps above what the GPU draws change nothing
    w2 = at_scale.power_cap_whatif("A100 SXM", caps_w=[300, 350, 400], draw_w=300)
    assert (w2["relative_time"] == 1.0).all() and (w2["relative_energy"] == 1.0).all()


@pytest.mark.parametrize("kw, match", [
    (dict(gpu="B200"), "gpu='B200' is not in the power table; known: A100 SXM, H100 SXM"),
    (dict(gpu="H100 SXM", caps_w=[800]), "800 W is above the H100 SXM's TDP \\(700 W\\)"),
    (dict(gpu="H100 SXM", caps_w=150), "150 W is below the H100 SXM's lowest power limit \\(200 W\\)"),
    (dict(gpu="A100 SXM", caps_w=[]), "at least one cap"),
    (dict(gpu="A100 SXM", caps_w=[-5]), "caps_w=-5"),
    (dict(gpu="A100 SXM", draw_w=500), "draw_w=500: a A100 SXM cannot draw more than its TDP"),
    (dict(gpu="A100 SXM", draw_w=0), "draw_w=0"),
    (dict(gpu="A100 SXM", n=1), "n=1"),
])
def test_whatif_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        at_scale.power_cap_whatif(**kw)


def test_power_cap_figure():
    fig = plot_at_scale.power_cap()
    model, meas = fig.data
    assert model.line.dash == "dash" and model.name.startswith("model:")
    assert meas.name.startswith("measured:") and meas.mode == "markers"
    assert "model" in fig.layout.title.text
    assert "×" in fig.layout.xaxis.title.text and "×" in fig.layout.yaxis.title.text
    assert "700 W" in model.hovertext[-1]
    with pytest.raises(ValueError, match="power_cap_whatif"):
        plot_at_scale.power_cap(pd.DataFrame({"x": [1]}))


def test_energy_per_token_figure():
    fig = plot_at_scale.energy_per_token({"1 rank": 2.0, "4 ranks": 3.0}, measured=False)
    mine = fig.data[-1]
    assert mine.name == "your run: J per sample (estimated)"
    assert list(mine.x) == [2.0, 3.0]
    assert all(s.line.dash == "dash" for s in fig.layout.shapes)
    assert fig.layout.xaxis.type == "log"
    pub = [t for t in fig.data if t.name.startswith("published")]
    assert sum(len(t.x) for t in pub) == len(at_scale.published_runs())
    solid = plot_at_scale.energy_per_token(1.0, measured=True)
    assert all(s.line.dash == "solid" for s in solid.layout.shapes)
    with pytest.raises(ValueError, match="measured=None"):
        plot_at_scale.energy_per_token(1.0, measured=None)
    with pytest.raises(ValueError, match="must be a number > 0"):
        plot_at_scale.energy_per_token({"a": -1}, measured=True)
    with pytest.raises(ValueError, match="j_per_sample='x'"):
        plot_at_scale.energy_per_token("x", measured=True)


def test_energy_per_token_says_which_unit_yours_are_in():
    from gpuviz.plot.at_scale import energy_per_token

    fig = energy_per_token({"4 ranks": 0.003}, measured=False, unit="token")
    assert fig.data[-1].name == "your run: J per token (estimated)"
    assert fig.layout.xaxis.title.text == "joules per token, log scale"
    with pytest.raises(ValueError, match="unit='byte'"):
        energy_per_token(0.1, measured=True, unit="byte")
