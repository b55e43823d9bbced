"""Self-checking exercises of the energy lab .

>>> from gpuviz import checks
>>> checks.co2_grams(481 / 3.6, joules=1e6, grid="world")
Correct! 1e+06 J = 0.2778 kWh; x 481 g/kWh (world) = 133.6 g CO2e.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gpuviz.checks.core import Result, _close, _number, _value


def energy_per_sample(answer: float | Callable, run, config: int, rtol: float = 0.01) -> Result:
    """Joules per sample of configuration ``config`` of a sweep run: the median over its
    measured steps of all member ranks' joules, divided by the samples (``batch``) of a step.
    ``answer``: a number, or ``f(run, config)``."""
    from gpuviz.energy.attribution import config_energy

    df = config_energy(run).set_index("config")
    if config not in df.index:
        raise ValueError(f"config={config!r}: the run's configurations are {list(df.index)}")
    row = df.loc[config]
    got = _value(answer, run, config)
    if (bad := _number(got, "joules per sample")) is not None:
        return bad
    want, got = float(row["joules_per_sample"]), float(got)
    if _close(got, want, rtol):
        return Result(True, f"{row['joules_per_step']:.4g} J per step over {int(row['batch'])} samples: "
                            f"{want * 1e3:.4g} mJ per sample ({'estimated' if row['estimated'] else 'measured'}).")
    if _close(got, want * row["batch"], rtol):
        return Result(False, "That is the energy of a whole step; divide by the samples in it (batch).")
    if row["ranks"] > 1 and _close(got * row["ranks"], want, 0.25):
        return Result(False, "That looks like one rank's joules; add up every member rank's.")
    if _close(got * 1e3, want, rtol):
        return Result(False, "Check the unit: the answer is in joules, not millijoules.")
    return Result(False, f"You gave {got:.4g} J. Take `joules(run, 'step')`, keep config {config}'s "
                         "measured steps (gpuviz.parallel.scaling.step_table), add up the member ranks' joules of "
                         "each step, take the median, and divide by the batch.")


def pareto_configs(answer: Any, df, x: str = "step_s", y: str = "joules_per_sample") -> Result:
    """The configurations (values of ``df["config"]``) on the time-energy Pareto frontier:
    no other one is both at least as fast and at least as cheap, and better in one.
    ``answer``: an iterable of configs, or ``f(df)``."""
    from gpuviz.energy.attribution import pareto_front

    got = _value(answer, df)
    if got is None:
        return Result(False, "Replace `None` with the list of configurations on the frontier.")
    try:
        got = {int(c) for c in got}
    except (TypeError, ValueError):
        return Result(False, f"Give a list of configuration numbers, not {got!r}.")
    want = set(df.loc[pareto_front(df, x, y), "config"].astype(int))
    if got == want:
        return Result(True, f"Configurations {sorted(want)}: each is the fastest for its energy, or "
                            "the cheapest for its time. Every other one is beaten on both.")
    fastest = int(df.loc[df[x].idxmin(), "config"])
    cheapest = int(df.loc[df[y].idxmin(), "config"])
    if got == {fastest, cheapest} and want != got:
        return Result(False, "The fastest and the cheapest are on it, but so is every point that no "
                             "other point beats on both time and energy.")
    extra, missing = sorted(got - want), sorted(want - got)
    why = []
    if extra:
        why.append(f"{extra} {'is' if len(extra) == 1 else 'are'} beaten on both time and energy by another")
    if missing:
        why.append(f"{missing} {'is' if len(missing) == 1 else 'are'} beaten by none")
    return Result(False, "; ".join(why) + ".")


def waiting_joules(answer: float | Callable, run, rtol: float = 0.01) -> Result:
    """Joules all ranks together spent waiting (the ``idle`` category of ``joules(run)``).
    ``answer``: a number, or ``f(run)``."""
    from gpuviz.energy.attribution import joules

    cat = joules(run, "category")
    idle = cat[cat["category"] == "idle"]
    want = float(idle["joules"].sum())
    got = _value(answer, run)
    if (bad := _number(got, "joules spent waiting")) is not None:
        return bad
    got = float(got)
    if _close(got, want, rtol):
        return Result(True, f"{want:.4g} J over {idle['seconds'].sum():.3g} s of waiting, "
                            f"{want / max(idle['seconds'].sum(), 1e-12):.3g} W on average.")
    if _close(got, float(idle["seconds"].sum()), rtol):
        return Result(False, "That is the time spent waiting, in seconds; the question asks for joules.")
    if any(_close(got, j, rtol) for j in idle["joules"]):
        return Result(False, "That is one rank's; add up every rank's idle joules.")
    return Result(False, f"You gave {got:.4g} J. Add up `joules` of the rows with category 'idle'.")


def co2_grams(answer: float | Callable, joules: float, grid: str = "world", rtol: float = 0.01) -> Result:
    """Grams of CO2e for ``joules`` on ``grid`` (:data:`gpuviz.energy.carbon.GRIDS`), PUE 1.
    ``answer``: a number, or ``f(joules, grams_per_kwh)``."""
    from gpuviz.energy.carbon import J_PER_KWH, co2, grid_intensity

    g_per_kwh = grid_intensity(grid)
    want = co2(joules=joules, grid=grid)
    got = _value(answer, joules, g_per_kwh)
    if (bad := _number(got, "grams of CO2e")) is not None:
        return bad
    got = float(got)
    kwh = joules / J_PER_KWH
    if _close(got, want, rtol):
        return Result(True, f"{joules:.4g} J = {kwh:.4g} kWh; x {g_per_kwh:g} g/kWh ({grid}) = {want:.4g} g CO2e.")
    if _close(got, joules * g_per_kwh, rtol):
        return Result(False, "Convert joules to kWh first: 1 kWh = 3.6 million J.")
    if _close(got, want / 1000, rtol):
        return Result(False, "That is in kilograms; give grams.")
    if _close(got, joules / 1000 * g_per_kwh, rtol) or _close(got, joules / 3600 * g_per_kwh, rtol):
        return Result(False, "1 kWh is 1000 W for 3600 s: 3.6 million J.")
    return Result(False, f"You gave {got:.4g} g. Energy in kWh (J / 3.6e6) times the grid's g/kWh.")


# Imported last: gpuviz.checks re-exports this module's checks at its own end, so either
# module can be imported first without a circular-import error.
