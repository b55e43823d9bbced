"""gpuviz.energy.carbon: kWh -> CO2 on known inputs, the grid and PUE tables, and bad input."""

from __future__ import annotations

import math

import pytest

from gpuviz.energy import carbon


def test_formula_on_known_inputs():
    # grams = kWh x PUE x intensity
    assert carbon.co2(kwh=1.0, grid="world") == pytest.approx(481.0)
    assert carbon.co2(kwh=2.0, grid="germany", pue=1.5) == pytest.approx(2 * 1.5 * 381)
    assert carbon.co2(joules=3.6e6, grid="france") == pytest.approx(carbon.co2(kwh=1.0, grid="france"))
    assert carbon.co2(kwh=10.0, grid=100) == pytest.approx(1000.0)       # a chosen intensity
    assert carbon.co2(kwh=1.0, grid="norway", pue="uptime-2023") == pytest.approx(30 * 1.58)
    assert carbon.co2(kwh=0.0, grid="india") == 0.0
    assert carbon.co2(kwh=1.0, grid=" France ") == 56.0                   # names forgive case/space


def test_grid_table_sources_and_order():
    t = carbon.grids()
    assert {"world", "usa", "eu", "france", "germany", "india", "norway"} <= set(t.index)
    for key, row in t.iterrows():
        assert row["url"].startswith("https://"), key
        assert row["source"] and 2019 <= row["year"] <= 2024, key
        assert 0 < row["g_per_kwh"] < 1000, key
    assert list(t["g_per_kwh"]) == sorted(t["g_per_kwh"], reverse=True)
    # coal-heavy grids above hydro/nuclear ones
    assert t.loc["india", "g_per_kwh"] > t.loc["world", "g_per_kwh"] > t.loc["france", "g_per_kwh"]
    for p in carbon.PUE.values():
        assert p["pue"] >= 1 and p["url"].startswith("https://")


def test_co2_table_rows_match_co2():
    t = carbon.co2_table(joules=7.2e6, grids=["world", "france", "usa"], pue=1.1)
    assert list(t["grid"]) == ["world", "france", "usa"]
    assert t["estimated"].all()
    for _, r in t.iterrows():
        assert r["g_co2e"] == pytest.approx(carbon.co2(joules=7.2e6, grid=r["grid"], pue=1.1))
        assert r["kg_co2e"] == pytest.approx(r["g_co2e"] / 1e3)
        assert r["kwh_site"] == pytest.approx(2.0 * 1.1)
    assert len(carbon.co2_table(kwh=1.0)) == len(carbon.GRIDS)


def test_unknown_grid_lists_known():
    with pytest.raises(ValueError, match="grid='mars'.*world.*france"):
        carbon.co2(kwh=1.0, grid="mars")
    with pytest.raises(ValueError, match="grids: 3"):
        carbon.co2_table(kwh=1.0, grids=[3])
    with pytest.raises(ValueError, match="at least one grid"):
        carbon.co2_table(kwh=1.0, grids=[])


@pytest.mark.parametrize("kw, match", [
    (dict(kwh=-1.0), "kwh=-1.0: energy cannot be negative"),
    (dict(joules=-5), "joules=-5: energy cannot be negative"),
    (dict(joules=1.0, kwh=1.0), "exactly one of joules= or kwh="),
    (dict(), "exactly one of joules= or kwh="),
    (dict(kwh="1"), "kwh='1'"),
    (dict(kwh=math.nan), "kwh=nan"),
    (dict(kwh=1.0, pue=0.9), "pue=0.9: PUE is site energy over IT energy, so it is >= 1"),
    (dict(kwh=1.0, pue="mine"), "pue='mine' is not a known PUE"),
    (dict(kwh=1.0, grid=-3), "grid=-3: a carbon intensity cannot be negative"),
    (dict(kwh=1.0, grid=True), "grid=True"),
])
def test_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        carbon.co2(**kw)
