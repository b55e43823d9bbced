"""From energy to CO2: grid carbon intensities and data-centre overheads, each with its source.

Emissions = energy at the plug x grid carbon intensity, where energy at the plug is the
energy of the machines x PUE (power usage effectiveness: everything the site draws divided
by what its IT equipment draws; cooling, power conversion...). All results are estimates:
a yearly average intensity stands in for the hour-by-hour mix the job actually used.

>>> round(co2(kwh=1.0, grid="world"))        # grams of CO2e for one kWh at the world average
481
>>> round(co2(joules=3.6e6, grid="france", pue=PUE["uptime-2023"]["pue"]), 1)
88.5
"""

from __future__ import annotations

import math
from numbers import Real

import pandas as pd

#: Joules in one kilowatt-hour.
J_PER_KWH = 3.6e6

_OWID = "https://ourworldindata.org/grapher/carbon-intensity-electricity?tab=table"
_STATISTA_WORLD = "https://www.statista.com/statistics/943137/global-emissions-intensity-power-sector-by-country/"

#: Grid carbon intensity, grams CO2-equivalent per kWh generated, yearly averages.
#: ``basis`` says what is counted: Ember's figures are lifecycle (upstream methane,
#: supply chain and manufacturing included, all gases as CO2e over 100 years; Ember,
#: Global Electricity Review 2024, "Supporting material", methodology); EIA's and the
#: IEA-based EU figure count the CO2 burnt at the power plant only, so they are lower
#: than a lifecycle figure would be. Compare like with like.
GRIDS: dict[str, dict] = {
    "world": dict(
        name="World average", g_per_kwh=481.0, year=2023, basis="lifecycle CO2e (Ember)",
        # Ember (3 July 2024), "Electricity generation emission intensity in selected
        # countries worldwide in 2023", as charted by Statista: "the global power sector
        # produced 481 grams of carbon dioxide per kilowatt-hour ... in 2023".
        source="Ember, Yearly Electricity Data (2024 release), via Statista chart 943137",
        url=_STATISTA_WORLD),
    "india": dict(
        name="India", g_per_kwh=713.0, year=2023, basis="lifecycle CO2e (Ember)",
        # Same Ember chart ("India's power sector ... produced 713 gCO2/kWh that year") and
        # Our World in Data's table of Ember and Energy Institute data (India, 2023: 713 gCO2).
        source="Ember, Yearly Electricity Data, via Our World in Data and Statista chart 943137",
        url=_OWID),
    "china": dict(
        name="China", g_per_kwh=582.0, year=2023, basis="lifecycle CO2e (Ember)",
        # Our World in Data, "Carbon intensity of electricity generation", table, 2023 column.
        source="Ember and Energy Institute, via Our World in Data (table, 2023)", url=_OWID),
    "germany": dict(
        name="Germany", g_per_kwh=381.0, year=2023, basis="lifecycle CO2e (Ember)",
        # Our World in Data table: Germany 1990 622 gCO2, 2023 381 gCO2.
        source="Ember and Energy Institute, via Our World in Data (table, 2023)", url=_OWID),
    "usa": dict(
        name="United States", g_per_kwh=390.0, year=2022, basis="direct CO2 at the plant (EIA)",
        # US EIA, "How much carbon dioxide is produced per kilowatthour of U.S. electricity
        # generation?", table "U.S. electricity net generation and resulting CO2 emissions by
        # fuel in 2022" (EIA State Electricity Profiles, U.S. Profile, tables 5 and 7): all
        # energy sources, 4,230,672 million kWh and 1,650 million metric tons of CO2,
        # 0.86 lb/kWh; 1,650e12 g / 4,230,672e6 kWh = 390 g/kWh.
        source="US EIA FAQ 'CO2 per kWh', 2022 table (State Electricity Profiles, tables 5, 7)",
        url="https://www.eia.gov/tools/faqs/faq.php?id=74&t=11"),
    "eu": dict(
        name="European Union", g_per_kwh=252.0, year=2020, basis="direct CO2 at the plant (IEA)",
        # SDES (French Ministry for the Ecological Transition), "Key figures on climate:
        # France, Europe and Worldwide", December 2022 edition, "CO2 emissions to produce 1 kWh
        # of electricity in the EU" (based on IEA, 2022): "252 g CO2/kWh in 2020".
        source="SDES 'Key figures on climate' 2022, based on IEA (EU-27, 2020)",
        url=("https://www.statistiques.developpement-durable.gouv.fr/edition-numerique/"
             "chiffres-cles-du-climat-decembre-2022/en/10-ghg-emissions-from-the-energy")),
    "canada": dict(
        name="Canada", g_per_kwh=170.0, year=2023, basis="lifecycle CO2e (Ember)",
        # Our World in Data table, 2023 column: Canada 170 gCO2.
        source="Ember and Energy Institute, via Our World in Data (table, 2023)", url=_OWID),
    "france": dict(
        name="France", g_per_kwh=56.0, year=2023, basis="lifecycle CO2e (Ember)",
        # Our World in Data table: France 1990 104 gCO2, 2023 56 gCO2.
        source="Ember and Energy Institute, via Our World in Data (table, 2023)", url=_OWID),
    "norway": dict(
        name="Norway", g_per_kwh=30.0, year=2023, basis="lifecycle CO2e (Ember)",
        # Statista chart 943137 (Ember): "Norway's power sector ... had a carbon intensity of
        # just 30 gCO2/kWh".
        source="Ember, Yearly Electricity Data (2024 release), via Statista chart 943137",
        url=_STATISTA_WORLD),
}

#: Power usage effectiveness (site energy / IT energy) of real data centres.
PUE: dict[str, dict] = {
    "uptime-2023": dict(
        name="industry average (Uptime Institute survey, 2023)", pue=1.58, year=2023,
        # Uptime Institute Journal, J. Davis, "Large data centers are mostly more efficient,
        # analysis confirms" (7 Feb 2024): "In 2023, industry average PUE stood at 1.58",
        # from the Uptime Institute Global Data Center Survey.
        source="Uptime Institute, Global Data Center Survey 2023 (Journal, 7 Feb 2024)",
        url="https://journal.uptimeinstitute.com/large-data-centers-are-mostly-more-efficient-analysis-confirms/"),
    "google-2021": dict(
        name="Google fleet (Q2 2021)", pue=1.10, year=2021,
        # CNBC (13 Apr 2022), "Google data center goal...": "The most current PUE that Google
        # published was 1.1, for the second quarter of 2021."
        source="Google's published fleet PUE, Q2 2021, as reported by CNBC (13 Apr 2022)",
        url="https://www.cnbc.com/2022/04/13/google-data-center-goal-100percent-green-energy-by-2030.html"),
}


def _number(value, what: str, allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(value):
        raise ValueError(f"{what}={value!r}: give {allowed}")
    return float(value)


def grid_intensity(grid) -> float:
    """Grams CO2e per kWh of ``grid``: a key of :data:`GRIDS` or a number you chose (>= 0).

    >>> grid_intensity("norway"), grid_intensity(100)
    (30.0, 100.0)
    """
    if isinstance(grid, str):
        key = grid.strip().lower()
        if key not in GRIDS:
            raise ValueError(f"grid={grid!r} is not a known grid; use one of "
                             + ", ".join(GRIDS) + " or a number of gCO2e/kWh")
        return GRIDS[key]["g_per_kwh"]
    g = _number(grid, "grid", "a grid name (" + ", ".join(GRIDS) + ") or gCO2e/kWh >= 0")
    if g < 0:
        raise ValueError(f"grid={grid!r}: a carbon intensity cannot be negative (gCO2e/kWh >= 0)")
    return g


def _pue(pue) -> float:
    if isinstance(pue, str):
        if pue not in PUE:
            raise ValueError(f"pue={pue!r} is not a known PUE; use one of {', '.join(PUE)} "
                             "or a number >= 1")
        return PUE[pue]["pue"]
    p = _number(pue, "pue", "a number >= 1 (site energy / IT energy) or one of " + ", ".join(PUE))
    if p < 1:
        raise ValueError(f"pue={pue!r}: PUE is site energy over IT energy, so it is >= 1 "
                         "(1.0 means no overhead)")
    return p


def _kwh(joules, kwh) -> float:
    if (joules is None) == (kwh is None):
        raise ValueError("give exactly one of joules= or kwh= (the energy of the machines)")
    name, value = ("joules", joules) if kwh is None else ("kwh", kwh)
    v = _number(value, name, "an energy >= 0")
    if v < 0:
        raise ValueError(f"{name}={value!r}: energy cannot be negative")
    return v / J_PER_KWH if kwh is None else v


def co2(joules=None, kwh=None, grid="world", pue=1.0) -> float:
    """Grams of CO2e for an energy (``joules`` or ``kwh``) on ``grid``, with site overhead ``pue``.

    grams = kWh x PUE x grid intensity (gCO2e/kWh). ``grid`` is a key of :data:`GRIDS`
    or a number; ``pue`` a number >= 1 or a key of :data:`PUE`. An estimate: yearly-average
    intensity, no embodied emissions of the hardware.

    >>> co2(kwh=2.0, grid="germany", pue=1.5)
    1143.0
    >>> round(co2(joules=1e6, grid="india"), 1)        # 1 MJ, about 0.28 kWh
    198.1
    """
    return _kwh(joules, kwh) * _pue(pue) * grid_intensity(grid)


def grids() -> pd.DataFrame:
    """The grid table: one row per grid, with year, what is counted, source and URL.

    >>> float(grids().loc["france", "g_per_kwh"])
    56.0
    """
    df = pd.DataFrame.from_dict(GRIDS, orient="index")
    df.index.name = "grid"
    return df.sort_values("g_per_kwh", ascending=False)


def co2_table(joules=None, kwh=None, grids=None, pue=1.0) -> pd.DataFrame:
    """One energy on several grids: a DataFrame with grams and kilograms CO2e per grid.

    ``grids`` is a list of keys of :data:`GRIDS` (default: all of them). Every row says
    ``estimated=True`` and carries its source.

    >>> t = co2_table(kwh=1.0, grids=["world", "france"])
    >>> t[["grid", "g_co2e"]].to_dict("records")
    [{'grid': 'world', 'g_co2e': 481.0}, {'grid': 'france', 'g_co2e': 56.0}]
    """
    kwh_it = _kwh(joules, kwh)
    p = _pue(pue)
    names = list(GRIDS) if grids is None else ([grids] if isinstance(grids, str) else list(grids))
    if not names:
        raise ValueError("grids=[]: name at least one grid (" + ", ".join(GRIDS) + ")")
    rows = []
    for g in names:
        if not isinstance(g, str):
            raise ValueError(f"grids: {g!r} is not a grid name; use names from " + ", ".join(GRIDS))
        gi = grid_intensity(g)
        key = g.strip().lower()
        info = GRIDS[key]
        rows.append(dict(grid=key, name=info["name"], year=info["year"], basis=info["basis"],
                         kwh_it=kwh_it, pue=p, kwh_site=kwh_it * p, g_per_kwh=gi,
                         g_co2e=kwh_it * p * gi, kg_co2e=kwh_it * p * gi / 1e3, estimated=True,
                         source=info["source"], url=info["url"]))
    return pd.DataFrame(rows)
